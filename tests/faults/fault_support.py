"""Helpers for the fault tests and scripts: a Hydra home + Dagster instance in a folder, files dropped in
bulk, the real `dagster-daemon run` as a subprocess, a sensor iteration killed at a chosen point (Dagster's
own debug-crash flags), and the counts that prove nothing was lost or doubled.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from hydra_assets.db.engine import HydraDB  # noqa: E402
from hydra_assets.db.models import Image, Inference, KeepDecision  # noqa: E402

VENV_BIN = Path(sys.executable).parent
PLOT = "RF_FDC"


@dataclass
class Counts:
    """What the Hydra database and the folders say after a scenario."""

    files_left: int
    registered: int
    distinct_files: int
    quarantined: int
    inferences: int
    images_with_inference: int
    keep_decisions: int
    inferences_with_decision: int

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)

    @property
    def duplicates(self) -> int:
        return (self.registered - self.distinct_files) + (self.inferences - self.images_with_inference) + (
            self.keep_decisions - self.inferences_with_decision)


def counts(db: HydraDB, input_dir: Path) -> Counts:
    with db.read() as s:
        def one(query) -> int:  # type: ignore[no-untyped-def]
            return int(s.scalar(query) or 0)

        registered = Image.status == "registered"
        return Counts(
            files_left=sum(1 for p in input_dir.iterdir() if p.is_file()) if input_dir.exists() else 0,
            registered=one(select(func.count(Image.id)).where(registered)),
            distinct_files=one(select(func.count(func.distinct(Image.file_name))).where(registered)),
            quarantined=one(select(func.count(Image.id)).where(Image.status == "quarantined")),
            inferences=one(select(func.count(Inference.id))),
            images_with_inference=one(select(func.count(func.distinct(Inference.image_id)))),
            keep_decisions=one(select(func.count(KeepDecision.id))),
            inferences_with_decision=one(select(func.count(func.distinct(KeepDecision.inference_id)))),
        )


def drop_many(folder: Path, n: int, *, runs: int = 5, first_run: int = 121000, seed: int = 0, age: float = 30.0
              ) -> list[str]:
    """`n` small distinct PNGs spread over `runs` run numbers, written then renamed, `age` s old."""
    from test_ingest_support import drop, png_bytes

    names = []
    for i in range(n):
        name = f"{PLOT}-{first_run + i % runs}-{i // runs + 1:04d}.png"
        drop(folder, name, png_bytes(seed * 1_000_000 + i, size=(16, 16)), age=age)
        names.append(name)
    return names


def dagster_home(folder: Path, yaml: Path | None = None) -> Path:
    """A Dagster home with the repository's dagster.yaml (queued runs, threaded sensors)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(yaml or REPO / "dagster.yaml", folder / "dagster.yaml")
    from dagster import DagsterInstance

    with DagsterInstance.from_config(str(folder)):  # create the storage now, not racing the daemon for it
        pass
    return folder


@dataclass
class ScratchHome:
    """A Hydra home, its database and a Dagster home in one temporary folder, for the by-hand scripts."""

    root: Path
    settings: "HydraSettings"  # noqa: F821 - imported lazily, after the environment is set
    db: HydraDB
    dagster: Path


def scratch_home(prefix: str, *, plot_types: tuple[str, ...] = (PLOT,), collect_percent: float = 5.0,
                 db_url: str | None = None, predictor: str = "inprocess", model_weights=(0.9, 0.1)) -> ScratchHome:
    """Set the environment to a fresh temporary home, migrate its database (SQLite unless `db_url`) and
    register a constant Good/Bad model for each plot type; the Dagster home gets the repo's dagster.yaml."""
    import tempfile

    root = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ.update(HYDRA_HOME=str(root / "home"), DAGSTER_HOME=str(root / "dagster"), HYDRA_PREDICTOR=predictor)
    for key in ("HYDRA_DB_URL", "MLFLOW_TRACKING_URI", "HYDRA_INPUT_DIR"):
        os.environ.pop(key, None)
    if db_url:
        os.environ["HYDRA_DB_URL"] = db_url
    from test_ingest_support import SIZE, constant_model

    from hydra_assets import catalog
    from hydra_assets.db.migrate import upgrade
    from hydra_assets.ml.active import register_local_model
    from hydra_assets.settings import load_settings

    settings = load_settings()
    settings.ensure_folders()
    upgrade(settings.db_url)
    db = HydraDB(settings.db_url)
    model = constant_model(root / "m.keras", list(model_weights))
    for name in plot_types:
        db.write(lambda s, n=name: catalog.add_plot_type(s, n, "Good,Bad", "Bad", collect_percent=collect_percent,
                                                          input_size=SIZE))
        register_local_model(db, name, model, ["Good", "Bad"], input_size=SIZE)
    return ScratchHome(root, settings, db, dagster_home(root / "dagster"))


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "HYDRA_PREDICTOR": "inprocess", "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.update(extra or {})
    return env


# ---- a sensor iteration killed at a chosen point (as dagster's test_sensor_failure_recovery does) -------


def _iteration_child(home: str, crash_at: str | None, env: dict[str, str]) -> None:
    os.environ.update(env)
    from dagster import DagsterInstance
    from dagster._core.test_utils import create_test_daemon_workspace_context
    from dagster._core.workspace.load_target import WorkspaceFileTarget
    from dagster._daemon.sensor import execute_sensor_iteration

    flags = {"incoming_images": {crash_at: signal.SIGKILL}} if crash_at else None
    # the workspace the real daemon loads: the same code location, so run keys match across the restart
    os.chdir(REPO)
    target = WorkspaceFileTarget(paths=[str(REPO / "workspace.yaml")])
    with DagsterInstance.from_config(home) as instance:
        with create_test_daemon_workspace_context(target, instance) as workspace:
            list(execute_sensor_iteration(workspace, logging.getLogger("fault"), None, None,
                                          debug_crash_flags=flags))


def sensor_iteration(home: Path, crash_at: str | None, *, timeout: float = 180.0) -> int | None:
    """One daemon sensor iteration in a fresh process, SIGKILLed at `crash_at`; returns its exit code."""
    context = multiprocessing.get_context("spawn")
    process = context.Process(target=_iteration_child, args=(str(home), crash_at, child_env()))
    process.start()
    process.join(timeout)
    if process.is_alive():
        process.kill()
        process.join()
        raise TimeoutError(f"sensor iteration did not finish in {timeout}s")
    return process.exitcode


# ---- the real daemon ------------------------------------------------------------------------------------


class Daemon:
    """`dagster-daemon run` on the repository's workspace, in its own process group."""

    def __init__(self, home: Path, log: Path, env: Mapping[str, str] | None = None) -> None:
        self.home, self.log = home, log
        self.env = child_env({"DAGSTER_HOME": str(home), **(env or {})})
        self.process: subprocess.Popen | None = None

    def start(self) -> "Daemon":
        handle = self.log.open("a")
        self.process = subprocess.Popen(
            [str(VENV_BIN / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")], cwd=REPO, env=self.env,
            stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the daemon's whole process group (daemon, code server, launched runs)."""
        signal_group(self.process, sig)

    def stop(self) -> None:
        stop_group(self.process)  # run workers launched by the code server live in the same group

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def signal_group(process: subprocess.Popen | None, sig: int) -> None:
    """Signal a child's whole process group and wait for the child; SIGKILL it after 30 s."""
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def stop_group(process: subprocess.Popen | None) -> None:
    """SIGTERM a child's process group and wait for the child, then SIGKILL whatever of the group is left."""
    signal_group(process, signal.SIGTERM)
    if process is not None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_until(predicate: Callable[[], bool], timeout: float, *, every: float = 1.0,
               alive: Callable[[], bool] = lambda: True) -> float:
    """Seconds it took `predicate` to hold; raises TimeoutError after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        if not alive():
            raise RuntimeError("the process under test died")
        time.sleep(every)
    raise TimeoutError(f"condition not met within {timeout:.0f}s")


def runs_by_status(home: Path) -> dict[str, int]:
    from collections import Counter

    from dagster import DagsterInstance

    with DagsterInstance.from_config(str(home)) as instance:
        return dict(Counter(r.status.value for r in instance.get_runs()))


BUSY_RUNS = {"QUEUED", "NOT_STARTED", "STARTING", "STARTED"}


def runs_settled(home: Path) -> bool:
    """No run queued or running (a run reports its end a moment after writing its last rows)."""
    return not set(runs_by_status(home)) & BUSY_RUNS


def all_kept(db: HydraDB, folder: Path, files: int) -> bool:
    """Every file taken from `folder` and decided on; False while the database cannot answer (restarting)."""
    try:
        c = counts(db, folder)
    except Exception:  # the pool's connections died with the server
        return False
    return c.files_left == 0 and c.keep_decisions >= files


def sensor_ticks(home: Path, limit: int = 1000):  # type: ignore[no-untyped-def]
    from dagster import DagsterInstance

    with DagsterInstance.from_config(str(home)) as instance:
        states = [s for s in instance.all_instigator_state() if s.name == "incoming_images"]
        if not states:
            return []
        state = states[0]
        return list(instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=limit))


# ---- a run worker killed mid-chunk, and Dagster's retry of it ---------------------------------------------

KILL_POINTS = {
    # module whose write helper is wrapped, the write it watches, kill before or after it commits
    "feeder_registered": ("hydra_assets.ingest.feeder", "register images", "after"),
    "predict_written": ("hydra_assets.ingest.predict", "record inferences", "after"),
    "keeper_before_commit": ("hydra_assets.ingest.keeper", "keep decisions", "before"),
}


def ingest_job():  # type: ignore[no-untyped-def]
    """The real `ingest_chunk` job, reconstructable (what the run launcher hands a run worker)."""
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    repo = ReconstructableRepository.for_module("hydra_assets.definitions", "defs", working_directory=str(REPO))
    return repo.get_reconstructable_job("ingest_chunk")


def _worker_child(home: str, run_config: dict, tags: dict, partition: str, kill_at: str, env: dict) -> None:
    os.environ.update(env)
    import importlib

    import dagster as dg

    module_name, what_prefix, when = KILL_POINTS[kill_at]
    module = importlib.import_module(module_name)
    original = module.write_resolving_conflicts

    def wrapped(db, work, *, what, **kwargs):  # type: ignore[no-untyped-def]
        if what.startswith(what_prefix) and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        out = original(db, work, what=what, **kwargs)
        if what.startswith(what_prefix):
            os.kill(os.getpid(), signal.SIGKILL)
        return out

    module.write_resolving_conflicts = wrapped
    with dg.DagsterInstance.from_config(home) as instance:
        dg.execute_job(ingest_job(), instance, run_config=run_config,
                       tags={**tags, "dagster/partition": partition})


def killed_worker(home: Path, run_config: dict, tags: dict, partition: str, kill_at: str,
                  *, timeout: float = 300.0) -> int | None:
    context = multiprocessing.get_context("spawn")
    process = context.Process(target=_worker_child,
                              args=(str(home), run_config, tags, partition, kill_at, child_env()))
    process.start()
    process.join(timeout)
    if process.is_alive():
        process.kill()
        process.join()
        raise TimeoutError("the run worker neither finished nor died")
    return process.exitcode


# ---- a database server that can be "restarted" without touching the shared one ----------------------------


def _hang_up(sock: socket.socket) -> None:
    """Shut a socket down before closing it.  `close()` alone is not a hang-up while another thread is
    blocked in `recv()` on it (Linux keeps the socket open until that call returns): the peer, MariaDB,
    never hears of it and keeps the session and its open transaction's locks, which stalled a test's
    `DROP DATABASE` for 8 minutes."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # not connected, or already shut down
    try:
        sock.close()
    except OSError:
        pass


class RestartableProxy:
    """A TCP forwarder in front of the MariaDB server, to restart "the server" in CI without stopping the
    server other tests use.  `down()` closes the listening socket and every open connection, so clients see
    exactly what a server restart shows them — lost connections mid-query (2013), then refused connects
    (2003); `up()` listens again on the same port.  The URL points at the proxy, not at the server."""

    def __init__(self, upstream: tuple[str, int] = ("127.0.0.1", 3306)) -> None:
        self.upstream = upstream
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._listener = None
        self._open: set = set()
        self._lock = threading.Lock()

    def up(self) -> "RestartableProxy":
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def down(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            for sock in list(self._open):
                _hang_up(sock)
            self._open.clear()

    def _accept(self, listener) -> None:  # type: ignore[no-untyped-def]
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by down()
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:  # went down meanwhile
                    client.close()
                    server.close()
                    return
                self._open.update((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source, target) -> None:  # type: ignore[no-untyped-def]
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            # one side left (a client killed mid-transaction): hang up the other side too, so the server
            # ends that session and rolls back its transaction
            for sock in (source, target):
                _hang_up(sock)
            with self._lock:
                self._open.discard(source)
                self._open.discard(target)

    def url(self, server_url: str) -> str:
        """`server_url` (…@127.0.0.1:3306/db…) pointed at the proxy."""
        host, port = self.upstream
        return server_url.replace(f"@{host}:{port}", f"@127.0.0.1:{self.port}", 1)
