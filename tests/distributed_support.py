"""Helpers of the distributed-mode tests: a site on MariaDB (Hydra database and Dagster storage, two fresh
databases), a Celery queue of its own on the shared RabbitMQ, `hydra worker` processes with their own
folders, and the counts that prove every file was classified exactly once.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import signal
import subprocess
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ENV_KEYS, fresh_mysql_database
from tests.faults.fault_support import VENV_BIN, signal_group, stop_group, wait_until

REPO = Path(__file__).resolve().parents[1]
DEPLOY_YAML = REPO / "deploy" / "dagster-mysql.yaml"
RABBITMQ = ("127.0.0.1", 5672)
STEP_DONE = re.compile(r"Task execute_plan\[[0-9a-f-]+\] (succeeded|failed|raised)")
STEP_RECEIVED = re.compile(r"Task execute_plan\[[0-9a-f-]+\] received")
TASK_RECEIVED = re.compile(r"^\[([0-9-]+ [0-9:,]+): INFO/MainProcess\] Task execute_plan\[([0-9a-f-]+)\] received", re.M)
TASK_DONE = re.compile(r"Task execute_plan\[([0-9a-f-]+)\] succeeded")


def broker_url(port: int = RABBITMQ[1]) -> str:
    return f"pyamqp://guest:guest@127.0.0.1:{port}//"


@dataclass
class Site:
    """One deployment in a folder: the head's home, shared image folders, the two MariaDB databases."""

    root: Path
    env: dict[str, str]  # the head's environment (also set in this process by `make_site`)
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    @property
    def head(self) -> Path:
        return self.root / "head"

    @property
    def dagster_home(self) -> Path:
        return self.head / "dagster"

    @property
    def incoming(self) -> Path:
        return self.root / "shared" / "incoming"

    def worker_env(self, number: int, **extra: str) -> dict[str, str]:
        """What a worker on another machine has: its own Hydra and Dagster homes, the shared rest."""
        folder = self.root / f"worker-{number}"
        return {**self.env, "HYDRA_HOME": str(folder / "home"), "DAGSTER_HOME": str(folder / "dagster"), **extra}

    def close(self) -> None:
        for cleanup in reversed(self.cleanups):
            try:
                cleanup()
            except Exception as error:  # every cleanup runs; the first failure is reported by the test
                print(f"cleanup failed: {error!r}")


def make_site(root: Path, mysql_server: str, monkeypatch: pytest.MonkeyPatch, *, broker: str | None = None,
              plot: str = "RF_FDC") -> Site:
    """A fresh site with plot type `plot` and a constant Good/Bad model; its environment is set here too."""
    from test_ingest_support import SIZE, constant_model

    hydra_url, drop_hydra = fresh_mysql_database(mysql_server, prefix="hydra_dist")
    dagster_url, drop_dagster = fresh_mysql_database(mysql_server, prefix="hydra_dist_dg")
    site = Site(root, {})
    site.cleanups += [drop_hydra, drop_dagster]
    shared = root / "shared"
    env = {key: value for key, value in os.environ.items() if key not in ENV_KEYS}
    env.update({
        "HYDRA_HOME": str(site.head), "DAGSTER_HOME": str(site.dagster_home), "HYDRA_DB_URL": hydra_url,
        "MLFLOW_TRACKING_URI": f"sqlite:///{shared / 'mlflow.db'}", "HYDRA_MLFLOW_ARTIFACT_ROOT": str(shared / "ml"),
        **{f"HYDRA_{role.upper()}_DIR": str(shared / role) for role in ("input", "images", "kept", "quarantine",
                                                                        "gradcam")},
        "HYDRA_DAGSTER_MYSQL_HOST": "127.0.0.1", "HYDRA_DAGSTER_MYSQL_USER": "root",
        "HYDRA_DAGSTER_MYSQL_PASSWORD": "", "HYDRA_DAGSTER_MYSQL_DB": dagster_url.rsplit("/", 1)[1].split("?")[0],
        "HYDRA_CELERY_BROKER": broker or broker_url(),
        "HYDRA_CELERY_QUEUE": f"hydra_test_{uuid.uuid4().hex[:8]}",  # tests in parallel never share tasks
        "HYDRA_EXECUTOR": "celery", "HYDRA_PREDICTOR": "inprocess", "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3",
    })
    env["HYDRA_INPUT_DIR"] = str(site.incoming)
    site.env = env
    site.cleanups.append(lambda: delete_queue(env["HYDRA_CELERY_BROKER"], env["HYDRA_CELERY_QUEUE"]))
    for key, value in env.items():
        if os.environ.get(key) != value:
            monkeypatch.setenv(key, value)

    from hydra_assets import catalog
    from hydra_assets.db.engine import HydraDB
    from hydra_assets.home import initialise
    from hydra_assets.ml.active import register_local_model
    from hydra_assets.settings import load_settings

    site.dagster_home.mkdir(parents=True)
    shutil.copyfile(DEPLOY_YAML, site.dagster_home / "dagster.yaml")
    config = load_settings()
    initialise(config)
    import dagster as dg

    with dg.DagsterInstance.from_config(str(site.dagster_home)) as instance:  # migrate Dagster's tables now
        instance.get_runs(limit=1)
    db = HydraDB(config.db_url)
    try:
        model = constant_model(shared / "m.keras", [0.9, 0.1])
        db.write(lambda s: catalog.add_plot_type(s, plot, "Good,Bad", "Bad", collect_percent=5.0, input_size=SIZE))
        register_local_model(db, plot, model, ["Good", "Bad"], input_size=SIZE)
    finally:
        db.dispose()
    return site


def delete_queue(broker: str, prefix: str) -> None:
    """The site's step queue outlives its workers (durable): delete it, so the shared broker keeps none."""
    from kombu import Connection

    from hydra_assets.distributed import code_version, queue_name

    with Connection(broker, connect_timeout=3) as connection:
        connection.default_channel.queue_delete(queue_name(prefix, code_version()))


class WorkerLog:
    """What a `hydra worker`'s output says about the steps it took (Celery's INFO lines)."""

    def __init__(self, log: Path) -> None:
        self.log = log

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def steps_done(self) -> int:
        return len(STEP_DONE.findall(self.text()))

    def busy(self) -> bool:
        """Executing a step now (received more than it finished)."""
        text = self.text()
        return len(STEP_RECEIVED.findall(text)) > len(STEP_DONE.findall(text))

    def unfinished_task(self) -> str | None:
        """The id of the step it received last, if it never finished it."""
        received = TASK_RECEIVED.findall(self.text())
        return received[-1][1] if received and received[-1][1] not in self.finished_tasks() else None

    def finished_tasks(self) -> set[str]:
        return set(TASK_DONE.findall(self.text()))

    def received_at(self, task: str) -> dt.datetime | None:
        for stamp, seen in TASK_RECEIVED.findall(self.text()):
            if seen == task:
                return dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f")
        return None

    def ready(self, times: int = 1) -> bool:
        return self.text().count(" ready.") >= times


class Worker(WorkerLog):
    """`hydra worker` in its own process group and folder, its output in a log file."""

    def __init__(self, site: Site, number: int, **env: str) -> None:
        self.number = number
        self.folder = site.root / f"worker-{number}"
        self.folder.mkdir(parents=True, exist_ok=True)
        super().__init__(self.folder / "worker.log")
        self.env = site.worker_env(number, **env)
        self.process: subprocess.Popen | None = None

    def start(self) -> Worker:
        with self.log.open("a") as handle:
            self.process = subprocess.Popen(
                [str(VENV_BIN / "hydra"), "worker", "--workdir", str(self.folder), "--name",
                 f"worker-{self.number}@test"], cwd=self.folder, env=self.env, stdout=handle,
                stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (the Celery main process and its pool processes)."""
        signal_group(self.process, sig)

    def stop(self) -> None:
        stop_group(self.process)  # and anything its pool left behind


class Output:
    """A child's stdout read line by line in a thread, so a test can wait for a line without blocking."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen) -> None:
        assert process.stdout is not None
        for line in iter(process.stdout.readline, ""):
            self.lines.append(line.rstrip("\n"))

    def text(self) -> str:
        return "\n".join(self.lines)

    def count(self, pattern: str) -> int:
        return len(re.findall(pattern, self.text()))

    def wait_for(self, pattern: str, timeout: float, *, times: int = 1,
                 alive: Callable[[], bool] = lambda: True) -> None:
        try:
            wait_until(lambda: self.count(pattern) >= times, timeout, every=0.3, alive=alive)
        except (TimeoutError, RuntimeError) as error:
            raise AssertionError(f"{pattern!r} not seen {times}x: {error}\n{self.text()[-4000:]}") from error


def pid_of(*argv_parts: str) -> int | None:
    """The pid of a live process whose command line has every one of `argv_parts` (a service's)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
            if (proc / "stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z":
                continue
        except OSError:
            continue
        if all(part in argv for part in argv_parts):
            return int(proc.name)
    return None
