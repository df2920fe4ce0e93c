"""The warm run launcher: runs forked from a warm worker, through the real sensor daemon code path."""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy import func, select
from test_ingest_support import PLOT, activate, drop, home, model_files, png_bytes  # noqa: F401

from hydra_assets.db.models import Inference
from hydra_assets.warm_launcher import PID_TAG, WarmRunLauncher, code_fingerprint

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def test_fingerprint_follows_the_code(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    before = code_fingerprint(tmp_path)
    assert code_fingerprint(tmp_path) == before
    (tmp_path / "a.py").write_text("x = 22\n")
    assert code_fingerprint(tmp_path) != before


def test_launcher_is_configured_in_the_shipped_dagster_yaml(tmp_path):
    import shutil

    shutil.copyfile(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    assert isinstance(instance.run_launcher, WarmRunLauncher)
    assert instance.run_launcher.preload_modules == ["hydra_assets.definitions"]
    instance.dispose()


def test_a_dagster_home_made_before_the_move_still_loads_the_launcher(tmp_path):
    """Homes copied dagster.yaml when the launcher was hydra_assets.ingest.launcher; hydra init keeps them."""
    text = (REPO / "dagster.yaml").read_text()
    assert "module: hydra_assets.warm_launcher" in text
    (tmp_path / "dagster.yaml").write_text(text.replace("hydra_assets.warm_launcher", "hydra_assets.ingest.launcher"))
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    assert isinstance(instance.run_launcher, WarmRunLauncher)
    instance.dispose()


@pytest.mark.usefixtures("home")
def test_sensor_runs_are_forked_from_the_warm_worker(home, sqlite_db, model_files, monkeypatch):
    from dagster._core.storage.dagster_run import DagsterRunStatus
    from dagster._core.test_utils import create_test_daemon_workspace_context, instance_for_test
    from dagster._core.workspace.load_target import ModuleTarget
    from dagster._daemon.sensor import execute_sensor_iteration

    monkeypatch.setenv("HYDRA_PREDICTOR", "inprocess")  # no service process in this test
    activate(sqlite_db, model_files["good"])
    target = ModuleTarget(module_name="hydra_assets.definitions", attribute=None, working_directory=str(REPO),
                          location_name="hydra")
    overrides = {"run_launcher": {"module": "hydra_assets.warm_launcher", "class": "WarmRunLauncher"},
                 "run_coordinator": {"module": "dagster._core.run_coordinator", "class": "DefaultRunCoordinator"}}
    with instance_for_test(overrides=overrides) as instance:
        with create_test_daemon_workspace_context(target, instance) as workspace:
            for round_ in range(2):  # the second run reuses the warm worker
                drop(home.input_dir, f"{PLOT}-60-{round_:04d}.png", png_bytes(round_))
                list(execute_sensor_iteration(workspace, logging.getLogger("test"), None, None))
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    runs = instance.get_runs()
                    if len(runs) == round_ + 1 and all(r.is_finished for r in runs):
                        break
                    time.sleep(0.5)
                time.sleep(5.5)  # the next daemon loop may tick again
            runs = instance.get_runs()
            assert [r.status for r in runs] == [DagsterRunStatus.SUCCESS] * 2
            pids = [int(r.tags[PID_TAG]) for r in runs]
            assert len(set(pids)) == 2 and os.getpid() not in pids
            zygote = instance.run_launcher._zygote.process
            assert zygote is not None and zygote.poll() is None
            os.kill(zygote.pid, signal.SIGTERM)  # a dead worker is replaced on the next launch
            zygote.wait(timeout=30)
            assert not instance.run_launcher.terminate(runs[0].run_id)  # finished runs cannot be stopped
            instance.run_launcher.dispose()
    with sqlite_db.read() as s:
        assert s.scalar(select(func.count(Inference.id))) == 2


def test_health_check_sees_a_killed_worker_even_before_it_is_reaped(tmp_path):
    """Run monitoring asks the launcher; a SIGKILLed worker (a zombie until reaped) must answer FAILED."""
    import socket
    import subprocess

    from dagster._core.launcher import WorkerStatus

    from hydra_assets.warm_launcher import HOST_TAG, worker_alive

    launcher = WarmRunLauncher()
    here = socket.gethostname()
    worker = subprocess.Popen(["sleep", "60"])
    try:
        def status(**tags: str) -> WorkerStatus:
            return launcher.check_run_worker_health(dg.DagsterRun(job_name="ingest_chunk", tags=tags)).status

        assert launcher.supports_check_run_worker_health
        assert status(**{PID_TAG: str(worker.pid), HOST_TAG: here}) == WorkerStatus.RUNNING
        worker.kill()
        time.sleep(0.5)  # not waited for: a zombie, as a forked run is until the warm worker reaps it
        assert not worker_alive(worker.pid)
        assert status(**{PID_TAG: str(worker.pid), HOST_TAG: here}) == WorkerStatus.FAILED
        # not ours to judge: launched by the default launcher, a retry not forked yet (pid blanked), elsewhere
        assert status() == WorkerStatus.RUNNING
        assert status(**{PID_TAG: "", HOST_TAG: here}) == WorkerStatus.RUNNING
        assert status(**{PID_TAG: str(worker.pid), HOST_TAG: "another-host"}) == WorkerStatus.RUNNING
    finally:
        worker.kill()
        worker.wait()
