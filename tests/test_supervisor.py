"""The process supervisor behind `hydra up`: taken ports, readiness, and no orphan processes."""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import pytest

from hydra_assets.supervisor import Service, ServiceError, Supervisor, port_is_free

SPAWNER = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
open(sys.argv[1], "w").write(str(child.pid))
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it is dead for our purpose
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" not in status.read_text()


def test_taken_port_is_reported_before_anything_starts(tmp_path):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        assert not port_is_free("127.0.0.1", port)
        marker = tmp_path / "started"
        first = Service("first", [sys.executable, "-c", f"open({str(marker)!r}, 'w')"])
        second = Service("web", [sys.executable, "-c", "pass"], port=port)
        with pytest.raises(ServiceError, match=f"port {port} .* already taken, so web cannot start"):
            Supervisor([first, second], cwd=tmp_path).start_all()
        time.sleep(0.3)
        assert not marker.exists()


def test_stop_leaves_no_orphan_grandchildren(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    service = Service("spawner", [sys.executable, "-c", SPAWNER, str(pid_file)], log_path=tmp_path / "log")
    supervisor = Supervisor([service], cwd=tmp_path)
    supervisor.start_all(ready_timeout=10)
    for _ in range(100):
        if pid_file.exists() and pid_file.read_text():
            break
        time.sleep(0.1)
    grandchild = int(pid_file.read_text())
    child = service.process.pid
    assert _alive(child) and _alive(grandchild)
    supervisor.stop_all()
    time.sleep(0.5)
    assert not _alive(child)
    assert not _alive(grandchild)


def test_service_that_dies_at_start_is_reported(tmp_path):
    service = Service("broken", [sys.executable, "-c", "import sys; sys.exit(3)"],
                      ready_url="http://127.0.0.1:9/", log_path=tmp_path / "broken.log")
    with pytest.raises(ServiceError, match="broken exited at start"):
        Supervisor([service], cwd=tmp_path).start_all(ready_timeout=10)


def test_production_refuses_the_embedded_sqlite_default(hydra_home):
    from click.testing import CliRunner

    from hydra_assets.cli import cli

    result = CliRunner().invoke(cli, ["up", "--production"])
    assert result.exit_code != 0
    assert "--production needs HYDRA_DB_URL pointing at MySQL" in result.output
    assert not hydra_home.home.exists()  # refused before initialising anything


def test_services_listen_on_localhost_and_production_has_no_feeder(hydra_home):
    from hydra_assets.cli.up import build_services

    demo = build_services(hydra_home, host="127.0.0.1", panel_port=1, dagster_port=2, mlflow_port=3, demo=True,
                          feed_interval=5, auth=True)
    production = build_services(hydra_home, host="127.0.0.1", panel_port=1, dagster_port=2, mlflow_port=3,
                                demo=False, feed_interval=5, auth=True)
    assert "demo feeder" in [s.name for s in demo]
    assert "demo feeder" not in [s.name for s in production]
    mlflow = next(s for s in production if s.name == "MLflow UI")
    assert mlflow.command[mlflow.command.index("--host") + 1] == "127.0.0.1"
    pages = next(s for s in production if s.name == "Hydra pages")
    assert "--no-auth" not in pages.command and str(hydra_home.home / "credentials.json") in pages.command


def test_a_one_shot_job_starts_after_the_services_answer_and_its_end_is_no_failure(tmp_path):
    """The demo set-up of `hydra up` runs after the services are ready; finishing is done, not a crash."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    service = Service("web", [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"], port=port,
                      ready_url=f"http://127.0.0.1:{port}/")
    job = Service("set-up", [sys.executable, "-c", "import socket, sys; s = socket.socket(); "
                                                    f"sys.exit(s.connect_ex(('127.0.0.1', {port})) and 3)"],
                  one_shot=True)
    broken = Service("broken set-up", [sys.executable, "-c", "import sys; sys.exit(2)"], one_shot=True)
    supervisor = Supervisor([job, broken, service], cwd=tmp_path)
    try:
        supervisor.start_all()
        deadline = time.monotonic() + 30
        while (job.running or broken.running) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert job.process is not None and job.process.returncode == 0  # the service was already running
        assert not job.failed and broken.failed
        assert supervisor.first_failure() is None  # a job's end is for `hydra up` to report, not a stop
        service.process.kill()
        service.process.wait()
        assert supervisor.first_failure() is service
    finally:
        supervisor.stop_all()


def test_demo_progress_is_written_whole_and_read_back(tmp_path):
    from hydra_assets.demo import ACTIVE, TRAINING, WAITING, progress_done, read_progress, record_progress

    assert read_progress(tmp_path) == {} and not progress_done({})
    record_progress(tmp_path, "CDC_timing", WAITING)
    record_progress(tmp_path, "FCAL_energy", TRAINING, "compact CNN")
    record_progress(tmp_path, "CDC_timing", ACTIVE, "trained in 40 s")
    progress = read_progress(tmp_path)
    assert {k: v["step"] for k, v in progress.items()} == {"CDC_timing": ACTIVE, "FCAL_energy": TRAINING}
    assert progress["FCAL_energy"]["detail"] == "compact CNN" and not progress_done(progress)
    record_progress(tmp_path, "FCAL_energy", ACTIVE)
    assert progress_done(read_progress(tmp_path))
    assert not list(tmp_path.rglob("*.tmp"))
