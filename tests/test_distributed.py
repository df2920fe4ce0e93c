"""Distributed mode (deploy/README.md): Dagster's storage and the Hydra database on MariaDB, the chunk job's
steps on `hydra worker` processes over RabbitMQ, each worker in its own folder with its own Hydra and Dagster
home, sharing only the databases, the broker and the image folders, as separate machines would.

Each test has a Celery queue of its own (HYDRA_CELERY_QUEUE) on the shared broker and two fresh MariaDB
databases, so tests and engineers running at once never take each other's steps.  Under CI a MariaDB or
RabbitMQ that does not answer fails the test.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hydra_assets import distributed
from tests.distributed_support import RABBITMQ, Output, Site, Worker, WorkerLog, broker_url, make_site, pid_of
from tests.faults.fault_support import (
    VENV_BIN,
    Daemon,
    RestartableProxy,
    all_kept,
    counts,
    drop_many,
    runs_by_status,
    runs_settled,
    wait_until,
)

HYDRA = str(VENV_BIN / "hydra")


# ---- the pure parts ----------------------------------------------------------------------------------------


def test_code_version_is_by_content_and_names_the_queue(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("x = 1\n")
    first = distributed.code_fingerprint(tmp_path)
    os.utime(tmp_path / "a.py", (1, 1))  # another checkout: other mtimes, same code
    assert distributed.code_fingerprint(tmp_path) == first
    (tmp_path / "a.py").write_text("x = 2\n")
    assert distributed.code_fingerprint(tmp_path) != first
    assert distributed.queue_name("hydra", "abc") == "hydra.abc"


def test_celery_settings_make_a_killed_worker_lose_nothing() -> None:
    config = distributed.celery_config("pyamqp://u:p@mq//", "rpc://", "hydra.abc")
    source = config["config_source"]
    assert source["task_acks_late"] and source["task_reject_on_worker_lost"]
    assert source["worker_prefetch_multiplier"] == 1 and source["task_default_queue"] == "hydra.abc"
    assert distributed.redact("pyamqp://hydra:secret@mq:5672//") == "pyamqp://hydra:***@mq:5672//"


def test_chunk_job_with_celery_uses_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYDRA_CELERY_BROKER", "pyamqp://guest:guest@mq.example//")
    monkeypatch.setenv("HYDRA_CELERY_QUEUE", "site")
    from hydra_assets.jobs.ingest import chunk_executor

    executor = chunk_executor("celery")
    assert executor.name == "celery"
    from hydra_assets.settings import load_settings

    applied = distributed.settings_celery_config(load_settings())  # what chunk_executor configured
    assert applied["broker"] == "pyamqp://guest:guest@mq.example//"
    assert applied["config_source"]["task_default_queue"] == f"site.{distributed.code_version()}"


def test_broker_wait_says_why_and_backs_off() -> None:
    said: list[str] = []
    slept: list[float] = []
    answers = iter(["ConnectionRefusedError: [Errno 111]"] * 4 + [None])
    failures = distributed.wait_for_broker("pyamqp://u:pw@mq:5672//", echo=said.append, sleep=slept.append,
                                           problem=lambda url: next(answers))
    assert failures == 4 and slept == [1.0, 2.0, 4.0, 8.0]
    assert "pyamqp://u:***@mq:5672//" in said[0] and "Errno 111" in said[0] and "nothing is lost" in said[0]
    assert "answers now" in said[-1]
    with pytest.raises(distributed.BrokerUnavailable, match="did not answer within 5 s"):
        distributed.wait_for_broker("pyamqp://mq//", echo=said.append, sleep=lambda s: None, wait_s=5,
                                    problem=lambda url: "down")
    assert list(zip(range(7), distributed.backoff(1, 30), strict=False))[-1] == (6, 30)


def test_version_check_messages() -> None:
    record = distributed.version_record("aaa", host="head", now=dt.datetime(2026, 12, 1, tzinfo=dt.UTC))
    assert distributed.version_problem("aaa", record) is None
    problem = distributed.version_problem("bbb", record)
    assert "runs Hydra code version bbb" in problem and "deployment runs aaa" in problem and "head" in problem
    assert "start the head first" in distributed.version_problem("bbb", None)
    assert json.loads(record)["at"].startswith("2026-12-01")


def test_readme_distributed_block_is_what_the_tests_run() -> None:
    from tests.test_readme_production import readme_block

    commands = readme_block("### Distributed mode")
    assert commands == [["./hydra", "init"], ["./hydra", "up", "--production", "--workers", "2"],
                        ["./hydra", "worker"]]


# ---- a site on MariaDB and RabbitMQ ---------------------------------------------------------------------------


def _rabbitmq_problem() -> str | None:
    return distributed.broker_problem(broker_url(), timeout=3.0)


@pytest.fixture
def site(tmp_path: Path, mysql_server: str, monkeypatch: pytest.MonkeyPatch):
    problem = _rabbitmq_problem()
    if problem:
        message = f"RabbitMQ at {RABBITMQ[0]}:{RABBITMQ[1]} unreachable: {problem}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    made = make_site(tmp_path, mysql_server, monkeypatch)
    yield made
    made.close()


def _record_head_version(site: Site, version: str | None = None) -> None:
    import dagster as dg

    with dg.DagsterInstance.from_config(str(site.dagster_home)) as instance:
        distributed.record_deployment_version(instance.run_storage, version)


def _database(site: Site):  # type: ignore[no-untyped-def]
    from hydra_assets.db.engine import HydraDB

    return HydraDB(site.env["HYDRA_DB_URL"])


def _assert_exactly_once(site: Site, files: int) -> None:
    db = _database(site)
    try:
        c = counts(db, site.incoming)
    finally:
        db.dispose()
    assert (c.files_left, c.registered, c.distinct_files, c.quarantined) == (0, files, files, 0), c
    assert (c.inferences, c.images_with_inference) == (files, files), c
    assert (c.keep_decisions, c.inferences_with_decision) == (files, files), c
    assert c.duplicates == 0


def _wait_all_kept(site: Site, files: int, timeout: float, alive=lambda: True) -> float:  # type: ignore[no-untyped-def]
    db = _database(site)
    try:
        return wait_until(lambda: all_kept(db, site.incoming, files), timeout, every=2.0, alive=alive)
    finally:
        db.dispose()


@pytest.mark.mysql
@pytest.mark.distributed
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_worker_on_other_code_is_refused(site: Site) -> None:
    _record_head_version(site, "0123456789ab")  # the head runs other code than this checkout
    worker = Worker(site, 1)
    try:
        worker.start()
        assert worker.process is not None
        worker.process.wait(timeout=120)
        text = worker.text()
        assert worker.process.returncode == 3, text
        assert "refused: this worker runs Hydra code version " + distributed.code_version() in text
        assert "the deployment runs 0123456789ab" in text
        assert "Task execute_plan" not in text and " ready." not in text
    finally:
        worker.stop()


@pytest.mark.mysql
@pytest.mark.distributed
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sigkilled_worker_loses_nothing_and_doubles_nothing(site: Site, tmp_path: Path) -> None:
    """Two workers; one is SIGKILLed (its whole process group) while it executes a step of a chunk: the
    broker hands that step to the other worker, which completes the chunk; no run fails."""
    _record_head_version(site)
    workers = [Worker(site, n) for n in (1, 2)]
    daemon = Daemon(site.dagster_home, tmp_path / "daemon.log", env=site.env)
    files = 240
    try:
        for worker in workers:
            worker.start()
        wait_until(lambda: all(w.ready() for w in workers), 180, every=0.5,
                   alive=lambda: all(w.process.poll() is None for w in workers))
        daemon.start()
        drop_many(site.incoming, files, runs=4)
        victim = workers[0]
        # mid-chunk: after it finished two steps, while it executes another
        wait_until(lambda: victim.steps_done() >= 2 and victim.busy(), 300, every=0.1,
                   alive=lambda: daemon.process.poll() is None)
        killed_at = dt.datetime.now()
        victim.kill(signal.SIGKILL)
        killed_after = victim.steps_done()
        task = victim.unfinished_task()
        assert task is not None
        handed_over = wait_until(lambda: workers[1].received_at(task) is not None, 120, every=0.2)
        _wait_all_kept(site, files, 420, alive=lambda: daemon.process.poll() is None)
        wait_until(lambda: runs_settled(site.dagster_home), 120, every=2.0)
        _assert_exactly_once(site, files)
        statuses = runs_by_status(site.dagster_home)
        assert statuses.get("FAILURE", 0) == 0 and statuses.get("SUCCESS", 0) >= 4, statuses
        assert workers[1].steps_done() > 0
        assert task in workers[1].finished_tasks()  # the killed step, executed again by the other worker
        # each worker wrote its step logs in its own Dagster home, none in the head's (another machine's path)
        assert list((site.root / "worker-2" / "dagster" / "storage").rglob("compute_logs/*.err"))
        assert not list((site.dagster_home / "storage").rglob("compute_logs/*"))
        delay = (workers[1].received_at(task) - killed_at).total_seconds()
        print(f"victim finished {killed_after} steps before the kill; its step {task} reached the other worker "
              f"{delay:.1f} s after the kill (seen in {handed_over:.1f} s); the other did "
              f"{workers[1].steps_done()} steps; runs {statuses}")
    finally:
        daemon.stop()
        for worker in workers:
            worker.stop()


@pytest.mark.mysql
@pytest.mark.distributed
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_hydra_up_production_workers_with_the_broker_down_at_start(site: Site, tmp_path: Path) -> None:
    """`hydra up --production --workers 2` (README, "Distributed mode") with the broker down at start: it says
    so and retries; files dropped meanwhile wait; once the broker answers, both workers classify every file
    exactly once, although worker 1 is SIGKILLed mid-chunk (the supervisor starts it again); Ctrl-C stops
    every process."""
    from tests.test_readme_production import readme_block
    from tests.ui.pages_server import free_port, processes_of

    proxy = RestartableProxy(upstream=RABBITMQ)  # "the broker", down until proxy.up()
    env = {**site.env, "HYDRA_CELERY_BROKER": broker_url(proxy.port)}
    init, up_args = ([HYDRA, *args[1:]] for args in readme_block("### Distributed mode")[:2])
    subprocess.run(init, env=env, cwd=tmp_path, check=True, capture_output=True, timeout=180)
    command = [*up_args, "--panel-port", str(free_port()), "--dagster-port", str(free_port()),
               "--mlflow-port", str(free_port())]
    files = 200
    up = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, start_new_session=True)
    output = Output(up)
    try:
        alive = lambda: up.poll() is None  # noqa: E731
        output.wait_for(rf"the Celery broker at pyamqp://guest:\*\*\*@127.0.0.1:{proxy.port}// is unreachable",
                        120, times=2, alive=alive)
        assert "retrying in" in output.text() and "nothing is lost" in output.text()
        drop_many(site.incoming, files, runs=5)
        proxy.up()
        broker_back = time.monotonic()
        output.wait_for("all services up", 300, alive=alive)
        # a worker SIGKILLed mid-chunk under `hydra up`: restarted by the supervisor, nothing lost or doubled
        first = WorkerLog(site.head / "logs" / "worker-1.log")
        wait_until(lambda: first.steps_done() >= 1 and first.busy(), 300, every=0.1, alive=alive)
        victim = pid_of("worker", "--workdir", str(site.head / "workers" / "1"))
        assert victim is not None
        os.killpg(victim, signal.SIGKILL)  # its own process group: the Celery main process and its pool
        output.wait_for(r"worker 1 exited \(killed by SIGKILL\); restarting in", 60, alive=alive)
        wait_until(lambda: first.ready(times=2), 180, every=0.5, alive=alive)
        _wait_all_kept(site, files, 480, alive=alive)
        took = time.monotonic() - broker_back
        wait_until(lambda: runs_settled(site.dagster_home), 120, every=2.0)
        _assert_exactly_once(site, files)
        statuses = runs_by_status(site.dagster_home)
        assert statuses.get("FAILURE", 0) == 0, statuses
        logs = site.head / "logs"
        done = [len(distributed_steps(logs / f"worker-{n}.log")) for n in (1, 2)]
        assert all(done), f"steps per worker: {done}"
        print(f"{files} files classified {took:.0f} s after the broker came back (a worker killed and restarted on "
              f"the way); steps per worker {done}; "
              f"runs {statuses}")
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
            try:
                up.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(up.pid, signal.SIGKILL)
        proxy.down()
    assert up.returncode == 0, output.text()[-3000:]
    print("\n".join(line for line in output.lines if "broker" in line))
    assert processes_of(site.head) == []


def distributed_steps(log: Path) -> list[str]:
    from tests.distributed_support import STEP_DONE

    return STEP_DONE.findall(log.read_text(errors="replace")) if log.exists() else []


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))
