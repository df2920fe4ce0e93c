"""The install check: Dagster packages agree on one release, configured integrations import, the lock holds."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from hydra_assets.install_check import (
    check_installation,
    classes_named_in,
    core_release,
    import_problems,
    installed_dagster_versions,
    release_mismatches,
)

ROOT = Path(__file__).resolve().parent.parent


def test_integration_versions_map_to_their_core_release():
    assert core_release("dagster", "1.13.27") == "1.13.27"
    assert core_release("dagster-mysql", "0.29.27") == "1.13.27"
    assert core_release("dagster-webserver", "1.13.27") == "1.13.27"


def test_the_resolution_that_broke_a_fresh_machine_is_refused():
    # what pip picked on a fresh machine: the newest dagster with a 2021 dagster-mysql
    problems = release_mismatches({"dagster": "1.13.29", "dagster-webserver": "1.13.28",
                                   "dagster-mysql": "0.11.14"})
    assert any(p.startswith("dagster-mysql 0.11.14") for p in problems)
    assert any(p.startswith("dagster-webserver 1.13.28") for p in problems)
    assert release_mismatches({"dagster": "1.13.27", "dagster-mysql": "0.29.27", "dagster-celery": "0.29.27"}) == []


def test_configuration_modules_are_read_and_a_missing_one_is_named(tmp_path):
    config = tmp_path / "dagster.yaml"
    config.write_text("run_launcher:\n  module: hydra_no_such_module.launcher\n  class: Launcher\n"
                      "storage:\n  mysql:\n    x: 1\nrun_coordinator:\n  module: dagster._core.run_coordinator\n"
                      "  class: QueuedRunCoordinator\n")
    pairs = classes_named_in([config])
    assert pairs == {("hydra_no_such_module.launcher", "Launcher"),
                     ("dagster._core.run_coordinator", "QueuedRunCoordinator")}
    problems = import_problems(pairs)
    assert len(problems) == 1 and "hydra_no_such_module" in problems[0]
    assert import_problems({("dagster._core.run_coordinator", "NoSuchCoordinator")}) == [
        "dagster._core.run_coordinator has no NoSuchCoordinator"]
    # an optional integration that is not installed is skipped, an installed one is checked
    assert import_problems({("hydra_no_such_module.x", "")}, optional={"hydra_no_such_module"}) == []


def test_this_installation_passes_the_check():
    assert check_installation(ROOT) == []
    versions = installed_dagster_versions()
    assert {"dagster", "dagster-webserver", "dagster-graphql", "dagster-mysql"} <= set(versions)


def test_the_check_runs_as_the_hydra_script_runs_it():
    done = subprocess.run([sys.executable, "-m", "hydra_assets.install_check"], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "install check ok: dagster 1.13." in done.stdout


def _locked() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower()] = version.split(";")[0].strip()
    return pins


def test_the_lock_agrees_with_pyproject_and_holds_the_verified_stack():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    locked = _locked()
    for requirement in requirements:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==([\w.]+)", requirement)
        if match:  # every exact pin in pyproject is what the lock says
            assert locked[match.group(1).lower()] == match.group(2), requirement
    dagster_family = {name: version for name, version in locked.items() if name.startswith("dagster")}
    assert release_mismatches(dagster_family) == []
    for name in ("tensorflow-cpu", "keras", "mlflow", "panel", "bokeh", "numpy"):
        assert name in locked, f"{name} is not locked"
    # what is installed is what is locked, for the packages that matter most
    from importlib import metadata

    for name in ("dagster", "dagster-mysql", "tensorflow-cpu", "keras", "mlflow", "panel"):
        assert metadata.version(name) == locked[name], name
