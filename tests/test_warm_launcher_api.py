"""The private Dagster API hydra_assets.warm_launcher depends on, exactly as its docstring lists it.

A Dagster upgrade that moves or reshapes one of these names fails here, naming it, instead of failing the
daemon's first run launch (or every run's start) in a live installation.  Fast: imports and signatures only.
"""

from __future__ import annotations

import importlib
import inspect

import dagster as dg
import pytest

# module, name, why warm_launcher needs it
PRIVATE_NAMES = [
    ("dagster._core.launcher", "LaunchRunContext", "launch_run's argument"),
    ("dagster._core.launcher", "CheckRunHealthResult", "the answer of check_run_worker_health"),
    ("dagster._core.launcher", "WorkerStatus", "RUNNING / FAILED in that answer"),
    ("dagster._serdes", "ConfigurableClassData", "inst_data of a class configured in dagster.yaml"),
    ("dagster._cli.api", "_execute_run_command_body", "the run worker each fork runs"),
    ("dagster._core.instance.ref", "InstanceRef", "the instance reference handed to the fork"),
    ("dagster._utils.interrupts", "capture_interrupts", "SIGINT as a clean run stop in the fork"),
]


def _private(module: str, name: str, why: str) -> object:
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as error:
        pytest.fail(f"Dagster {dg.__version__} moved {module}.{name} ({why}), which "
                    f"hydra_assets/warm_launcher.py imports: {error}. Update the launcher and its docstring.")


def _parameters(function: object) -> list[str]:
    return list(inspect.signature(function).parameters)  # type: ignore[arg-type]


@pytest.mark.parametrize(("module", "name", "why"), PRIVATE_NAMES, ids=[f"{m}.{n}" for m, n, _ in PRIVATE_NAMES])
def test_private_name_still_importable(module, name, why):
    _private(module, name, why)


def test_the_docstring_lists_every_private_name_the_launcher_imports():
    import hydra_assets.warm_launcher as launcher

    source = inspect.getsource(launcher)
    doc = launcher.__doc__ or ""
    for module, name, _why in PRIVATE_NAMES:
        assert f"{module}.{name}" in doc or f"`{name}`" in doc, f"{module}.{name} missing from the module note"
        assert name in source.split('"""', 2)[2], f"{name} listed but no longer used: update PRIVATE_NAMES"
    imported = {line.split()[1] for line in source.splitlines() if line.strip().startswith("from dagster._")}
    assert imported <= {module for module, _name, _why in PRIVATE_NAMES}, imported


def test_signatures_and_attributes_the_launcher_uses():
    context = _private("dagster._core.launcher", "LaunchRunContext", "launch_run's argument")
    assert "dagster_run" in _parameters(context), "LaunchRunContext no longer carries dagster_run"

    result = _private("dagster._core.launcher", "CheckRunHealthResult", "health check answer")
    status = _private("dagster._core.launcher", "WorkerStatus", "health check status")
    assert {"RUNNING", "FAILED"} <= set(status.__members__)  # type: ignore[attr-defined]
    answer = result(status.FAILED, "gone", run_worker_id="12")  # type: ignore[attr-defined,operator]
    assert answer.status == status.FAILED and answer.msg == "gone" and answer.run_worker_id == "12"  # type: ignore[attr-defined]

    data = _private("dagster._serdes", "ConfigurableClassData", "inst_data")
    assert _parameters(data)[:3] == ["module_name", "class_name", "config_yaml"]

    body = _private("dagster._cli.api", "_execute_run_command_body", "the run worker")
    assert _parameters(body) == ["run_id", "instance", "write_stream_fn", "set_exit_code_on_failure"], (
        f"_execute_run_command_body is now {inspect.signature(body)}")  # type: ignore[arg-type]

    ref = _private("dagster._core.instance.ref", "InstanceRef", "instance reference")
    assert _parameters(dg.DagsterInstance.from_ref)[:1] == ["instance_ref"]
    assert isinstance(ref, type)

    capture = _private("dagster._utils.interrupts", "capture_interrupts", "SIGINT in the fork")
    with capture():  # type: ignore[operator]
        pass


def test_default_run_launcher_internals_the_launcher_extends():
    launcher = dg.DefaultRunLauncher()
    assert isinstance(launcher._run_ids, set), "DefaultRunLauncher._run_ids (runs it launched) is gone"
    assert isinstance(inspect.getattr_static(dg.DefaultRunLauncher, "_instance"), property)
    assert isinstance(inspect.getattr_static(dg.DefaultRunLauncher, "has_instance"), property)
    assert _parameters(dg.DefaultRunLauncher.__init__) == ["self", "inst_data"]
    for method in ("launch_run", "terminate", "dispose", "check_run_worker_health", "config_type",
                   "from_config_value"):
        assert callable(getattr(dg.DefaultRunLauncher, method, None)), f"DefaultRunLauncher.{method} is gone"
    for method in ("add_run_tags", "report_run_canceling", "get_run_by_id", "get_ref"):
        assert callable(getattr(dg.DagsterInstance, method, None)), f"DagsterInstance.{method} is gone"
    assert "job_code_origin" in dg.DagsterRun._fields  # type: ignore[attr-defined]
