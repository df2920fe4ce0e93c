"""The process supervisor behind `hydra up`: taken ports, readiness, and no orphan processes."""

from __future__ import annotations

import os
import socket
import subprocess
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


# --- restart policy ------------------------------------------------------------------------------------

def _watch_until(supervisor: Supervisor, done, timeout: float) -> Service | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        failed = supervisor.watch()
        if done(failed):
            return failed
        time.sleep(0.05)
    raise AssertionError(f"not done in {timeout} s")


def test_a_service_that_may_restart_is_restarted_with_backoff_then_given_up(tmp_path):
    lines: list[str] = []
    service = Service("flaky", [sys.executable, "-c", "import sys, time; time.sleep(0.3); sys.exit(3)"],
                      log_path=tmp_path / "flaky.log", restart=True, max_restarts=2, backoff_s=0.2)
    supervisor = Supervisor([service], cwd=tmp_path, say=lines.append)
    try:
        supervisor.start_all(ready_timeout=10)
        first_pid = service.process.pid
        failed = _watch_until(supervisor, lambda failed: failed is not None, timeout=30)
    finally:
        supervisor.stop_all()
    assert failed is service and service.gave_up
    assert lines == ["flaky exited (code 3); restarting in 0.2 s, 1st restart",
                     "flaky exited (code 3); restarting in 0.4 s, 2nd restart",
                     "flaky exited (code 3) after 2 restarts within 600 s; not restarting it again"]
    assert service.process.pid != first_pid
    log = (tmp_path / "flaky.log").read_text()
    assert log.count("--- hydra up: started again") == 2 and "1st restart" in log


def test_restarts_older_than_the_window_do_not_count(tmp_path):
    lines: list[str] = []
    service = Service("flaky", [sys.executable, "-c", "import sys, time; time.sleep(0.5); sys.exit(1)"],
                      restart=True, max_restarts=1, restart_window_s=0.3, backoff_s=0.05)
    supervisor = Supervisor([service], cwd=tmp_path, say=lines.append)
    try:
        supervisor.start_all(ready_timeout=10)
        _watch_until(supervisor, lambda failed: len(lines) >= 3 or failed is not None, timeout=30)
    finally:
        supervisor.stop_all()
    assert supervisor.first_failure() is None and not service.gave_up
    assert lines == ["flaky exited (code 1); restarting in 0.05 s, 1st restart"] * 3


def test_a_service_without_restart_is_a_failure_at_once(tmp_path):
    lines: list[str] = []
    service = Service("once", [sys.executable, "-c", "import time; time.sleep(0.3)"])
    supervisor = Supervisor([service], cwd=tmp_path, say=lines.append)
    try:
        supervisor.start_all(ready_timeout=10)
        assert _watch_until(supervisor, lambda failed: failed is not None, timeout=10) is service
    finally:
        supervisor.stop_all()
    assert lines == []


# --- pid file, parent-death signal, sweep --------------------------------------------------------------

STUBBORN = ("import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "open(sys.argv[1], 'w').write('deaf'); time.sleep(600)")
ESCAPER = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
open(sys.argv[1], "w").write(str(child.pid))
time.sleep(600)
"""
SUPERVISOR = """
import sys, time
from pathlib import Path
from hydra_assets.supervisor import RunRecord, Service, Supervisor
record = RunRecord(Path(sys.argv[1]))
record.claim()
services = [Service("stubborn", [sys.executable, "-c", sys.argv[2], sys.argv[5]]),
            Service("escaper", [sys.executable, "-c", sys.argv[3], sys.argv[4]])]
Supervisor(services, cwd=Path.cwd(), record=record).start_all(ready_timeout=10)
print(" ".join(str(s.process.pid) for s in services), flush=True)
time.sleep(600)
"""


@pytest.fixture
def marked(monkeypatch):
    """RunRecord.claim marks this process's environment; undo it after the test."""
    from hydra_assets.supervisor import MARK

    monkeypatch.setenv(MARK, "")
    return MARK


def _wait_for_file(path: Path, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return path.read_text()


def _wait_dead(pids, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in pids if _alive(p)]


def test_a_killed_supervisors_leftovers_are_stopped_by_the_next_claim(tmp_path, marked):
    """SIGKILL: the parent-death signal stops a child that obeys SIGTERM; the next claim stops the rest (a child
    that ignores SIGTERM, found by its process group; a grandchild in another session, found by its mark)."""
    from hydra_assets.supervisor import RunRecord

    pid_file, escaped, deaf = tmp_path / "run" / "up.pid", tmp_path / "escaped.pid", tmp_path / "deaf"
    dead = subprocess.Popen([sys.executable, "-c", SUPERVISOR, str(pid_file), STUBBORN, ESCAPER, str(escaped),
                             str(deaf)],
                            cwd=Path(__file__).resolve().parents[1], stdout=subprocess.PIPE, text=True)
    started: list[int] = []
    try:
        stubborn, escaper = (int(pid) for pid in dead.stdout.readline().split())
        grandchild = int(_wait_for_file(escaped))
        started += [stubborn, escaper, grandchild]
        assert _wait_for_file(deaf) == "deaf"  # it ignores SIGTERM from now on
        dead.kill()
        dead.wait()
        assert _wait_dead([escaper]) == []  # parent-death signal (SIGTERM)
        assert _alive(stubborn) and _alive(grandchild)
        previous, stopped = RunRecord(pid_file).claim(grace=1.0)
        assert previous["pid"] == dead.pid
        assert {int(line.split()[0]) for line in stopped} == {stubborn, grandchild}
        assert _wait_dead([stubborn, grandchild], timeout=5) == []
    finally:
        if dead.poll() is None:
            dead.kill()
        for pid in (p for p in started if _alive(p)):
            os.kill(pid, 9)


def test_a_live_supervisor_of_the_same_home_is_refused(tmp_path, marked):
    from hydra_assets.supervisor import AlreadyRunning, RunRecord

    first = RunRecord(tmp_path / "run" / "up.pid")
    first.claim()
    try:
        with pytest.raises(AlreadyRunning, match=rf"already running for this Hydra home \(pid {os.getpid()}, since"):
            RunRecord(tmp_path / "run" / "up.pid").claim()
        assert first.read()["pid"] == os.getpid()
    finally:
        first.release()
    assert not (tmp_path / "run" / "up.pid").exists()
    second = RunRecord(tmp_path / "run" / "up.pid")
    assert second.claim() == ({}, [])  # a clean stop leaves nothing to clean
    second.release()


def test_a_recycled_pid_or_another_boot_is_never_taken_for_a_leftover(tmp_path):
    from hydra_assets.processes import boot_id as _boot_id
    from hydra_assets.processes import leftovers, start_time

    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        started = start_time(stranger.pid)
        record = {"boot": _boot_id(), "mark": "not-its-mark",
                  "children": [{"name": "x", "pgid": stranger.pid, "start": started}]}
        assert stranger.pid in leftovers(record)  # the very process recorded
        record["children"][0]["start"] = started - 1  # same pid, another process: recycled
        assert stranger.pid not in leftovers(record)
        assert leftovers({**record, "boot": "another boot"}) == []
    finally:
        stranger.kill()
        stranger.wait()


def test_close_stops_what_escaped_the_process_groups(tmp_path, marked):
    from hydra_assets.supervisor import RunRecord

    record = RunRecord(tmp_path / "run" / "up.pid")
    record.claim()
    escaped = tmp_path / "escaped.pid"
    service = Service("escaper", [sys.executable, "-c", ESCAPER, str(escaped)])
    supervisor = Supervisor([service], cwd=tmp_path, record=record)
    supervisor.start_all(ready_timeout=10)
    grandchild = int(_wait_for_file(escaped))
    try:
        assert [c["name"] for c in record.read()["children"]] == ["escaper"]
        swept = supervisor.close(grace=2.0)
        assert [int(line.split()[0]) for line in swept] == [grandchild]
        assert _wait_dead([grandchild, service.process.pid], timeout=5) == []
        assert not (tmp_path / "run" / "up.pid").exists()
    finally:
        if _alive(grandchild):
            os.kill(grandchild, 9)


def test_a_detached_service_knows_when_its_hydra_up_is_gone(tmp_path):
    import subprocess

    from hydra_assets.processes import start_time, supervisor_gone

    assert not supervisor_gone(f"{os.getpid()}-{start_time(os.getpid())}-1")  # this process: alive
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    started = start_time(ended.pid)
    ended.wait()
    assert supervisor_gone(f"{ended.pid}-{started}-1")
    assert supervisor_gone(f"{os.getpid()}-{(start_time(os.getpid()) or 0) + 1}-1")  # a recycled pid: not it
    assert not supervisor_gone("not a mark")
