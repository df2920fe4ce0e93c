"""The warm predictor service: classifies Predict's batches in a process that keeps the models loaded.

Why a service: Dagster starts every run in a fresh process (the code server spawns it).  Importing
TensorFlow costs ~4 s there and loading + first call of a model ~1 s more — more than everything else a
chunk needs.  The predictor is one long-lived process per Hydra home that keeps TensorFlow imported and
the active models loaded (the model cache of `hydra_assets.ml.active`, keyed by model version); runs send
it a uint8 batch over an authenticated Unix socket and get the weights back (and each image's novelty
score with the version's limit, when the version has a novelty reference), with GradCAM overlays written
for Bad classifications.  It starts on first use (the file sensor starts it as soon as files arrive, so it
warms up while the run launches), stops after a quiet period, and a run that cannot reach it classifies
in-process — slower, same result.  On Kubernetes or Celery workers nothing changes in the code: each
worker simply starts its own service or classifies in-process.

Activation is read from the Hydra database on every batch, so a newly activated version is used at once.
The service's address includes a hash of the Hydra code, so after a code change a new service starts and
the old one idles out.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path
from typing import Any

import numpy as np

from hydra_assets.db.engine import DatabaseUnavailable, HydraDB, is_outage
from hydra_assets.ingest.classifier import BatchPrediction, InProcessClassifier, InputSizeMismatch, warm_up
from hydra_assets.processes import MARK, supervisor_gone
from hydra_assets.settings import HydraSettings, load_settings

log = logging.getLogger(__name__)
IDLE_SECONDS = 1800.0
PROTOCOL = 2  # 2: replies carry novelty and novelty_limit


class PredictorUnavailable(RuntimeError):
    """The predictor service cannot be reached or failed on its side."""


# ---- the service ---------------------------------------------------------------------------------------


def _code_version() -> str:
    """Changes when the code that classifies changes, so a stale service is never used."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha1(PROTOCOL.to_bytes(2, "big"))
    for folder in ("ingest", "ml"):
        for path in sorted((root / folder).glob("*.py")):
            info = path.stat()
            digest.update(f"{path.name}:{info.st_size}:{info.st_mtime_ns}".encode())
    return digest.hexdigest()[:10]


_VERSION: str | None = None


def code_version() -> str:
    global _VERSION
    if _VERSION is None:
        _VERSION = _code_version()
    return _VERSION


def _identity(config: HydraSettings) -> str:
    return hashlib.sha1(f"{config.home}|{config.db_url}|{code_version()}".encode()).hexdigest()[:16]


def service_address(config: HydraSettings) -> str:
    """An abstract Unix socket (Linux): no file to go stale, no path length limit; the key guards it."""
    return f"\0hydra-predictor-{os.getuid()}-{_identity(config)}"


def runtime_dir(config: HydraSettings) -> Path:
    folder = config.home / "run"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def authkey(config: HydraSettings) -> bytes:
    """The shared secret of this Hydra home (created once, readable by its owner only)."""
    path = runtime_dir(config) / "predictor.key"
    with contextlib.suppress(FileNotFoundError):
        return path.read_bytes()
    partial = path.with_name(f".predictor.key.{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(os.urandom(32))
    try:
        os.link(partial, path)  # atomic: whoever links first wins, everyone reads the same key
    except FileExistsError:
        pass
    finally:
        partial.unlink(missing_ok=True)
    return path.read_bytes()


def _connect(config: HydraSettings) -> Connection:
    try:
        return Client(service_address(config), family="AF_UNIX", authkey=authkey(config))
    except (OSError, EOFError) as error:
        raise PredictorUnavailable(f"predictor service not reachable: {error}") from error


class ServiceClassifier:
    """Sends batches to the warm predictor service of this Hydra home."""

    def __init__(self, config: HydraSettings, *, timeout_s: float = 300.0) -> None:
        self.config, self.timeout_s = config, timeout_s
        self._connection: Connection | None = None  # kept for the run: one handshake, not one per plot type

    def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        for attempt in (1, 2):
            fresh = self._connection is None
            if fresh:
                self._connection = _connect(self.config)
            try:
                self._connection.send(request)
                if not self._connection.poll(self.timeout_s):
                    self.close()
                    raise PredictorUnavailable(f"predictor service gave no answer within {self.timeout_s:.0f} s")
                return self._connection.recv()
            except (OSError, EOFError) as error:
                self.close()
                if fresh or attempt == 2:  # a kept connection may have gone stale: one fresh try
                    raise PredictorUnavailable(f"predictor service connection lost: {error}") from error
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(OSError):
                self._connection.close()
            self._connection = None

    def ping(self) -> dict[str, Any]:
        return self._call({"op": "ping"})

    def classify(
        self, plot_type: str, images: np.ndarray, gradcam_paths: Sequence[str | None], *,
        expected_key: str | None = None,
    ) -> BatchPrediction | None:
        reply = self._call({"op": "classify", "plot_type": plot_type, "images": np.ascontiguousarray(images, np.uint8),
                            "gradcam_paths": list(gradcam_paths), "expected_key": expected_key})
        self._raise_for(reply)
        fields = reply.get("prediction")
        return None if fields is None else BatchPrediction(**fields)

    def shadow_scorer(self, db: HydraDB, config: HydraSettings, model_id: int) -> Any:
        """A `hydra_assets.shadow.Scorer` for any model version, run in the service (the challenger's live
        step: no TensorFlow import and model load in every Dagster run)."""
        from hydra_assets.shadow import Scored

        def score(batch: np.ndarray) -> Scored:
            reply = self._call({"op": "shadow", "model_id": int(model_id),
                                "images": np.ascontiguousarray(batch, np.uint8)})
            self._raise_for(reply)
            return Scored(**reply["scores"])

        return score

    @staticmethod
    def _raise_for(reply: dict[str, Any]) -> None:
        """The service's error reply as the exception the in-process classifier would have raised."""
        error = reply.get("error")
        if error == "ModelLoadError":
            from hydra_assets.ml.active import ModelLoadError

            raise ModelLoadError(reply["message"])
        if error == "InputSizeMismatch":
            raise InputSizeMismatch(tuple(reply["size"]))
        if error == "DatabaseUnavailable":
            raise DatabaseUnavailable(f"predictor service: {reply.get('message')}")
        if error:
            raise PredictorUnavailable(f"predictor service failed: {error}: {reply.get('message')}")


def start_service(config: HydraSettings, *, idle_s: float = IDLE_SECONDS) -> subprocess.Popen[bytes]:
    """Start the service detached from the caller (a run process ends long before it)."""
    log_path = runtime_dir(config) / "predictor.log"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    with log_path.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "hydra_assets.ingest.predictor", "--home", str(config.home),
             "--db-url", str(config.db_url), "--idle", str(idle_s)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env,
        )


_spawned: dict[str, subprocess.Popen[bytes]] = {}  # service address -> the process this one started


def ensure_service(config: HydraSettings, *, wait_s: float = 90.0, spawn: bool = True) -> ServiceClassifier | None:
    """A client of a running service, starting one if needed; None if it is not up within `wait_s`."""
    client = ServiceClassifier(config)
    with contextlib.suppress(PredictorUnavailable):
        client.ping()
        return client
    if spawn:
        # one service per Hydra home and code version: a service started here for another home is no substitute
        address = service_address(config)
        process = _spawned.get(address)
        if process is None or process.poll() is not None:
            _spawned[address] = start_service(config)
    deadline, restarts = time.monotonic() + wait_s, 0
    while time.monotonic() < deadline:
        time.sleep(0.2)
        with contextlib.suppress(PredictorUnavailable):
            client.ping()
            return client
        process = _spawned.get(service_address(config))
        if spawn and restarts < 3 and process is not None and process.poll() not in (None, 0):
            # ours crashed while starting (0 = another service of this home is up): start it again
            restarts += 1
            log.warning("predictor service exited with %s while starting; starting it again", process.returncode)
            _spawned[service_address(config)] = start_service(config)
    return None


class _Server:
    def __init__(self, config: HydraSettings, *, idle_s: float) -> None:
        self.config, self.idle_s = config, idle_s
        self.supervisor = os.environ.get(MARK, "")  # set when `hydra up` started it (however deep)
        self.db = HydraDB(config.db_url)
        self.classifier = InProcessClassifier(self.db, config)
        # This process exists to keep every active model warm: a Hall with 80+ plot types must not cycle
        # models through the small default cache of hydra_assets.ml.active.
        from hydra_assets.ml import active

        active.CACHE_SIZE = max(active.CACHE_SIZE, config.predictor_models)  # HYDRA_PREDICTOR_MODELS
        self.started = time.time()
        self.last_request = time.monotonic()
        self.busy = 0
        self.requests = 0
        self.state = threading.Lock()

    def warm_up(self) -> list[str]:
        """Import TensorFlow and load (and call once) the active models, before the first chunk asks."""
        import keras  # noqa: F401 - the import is the point
        from sqlalchemy import select

        from hydra_assets.db.models import Model, PlotType
        from hydra_assets.ml import active as active_models
        from hydra_assets.ml.active import load_active_model

        try:
            with self.db.read() as s:
                names = list(s.scalars(select(PlotType.name).join(Model, Model.plot_type_id == PlotType.id)
                                       .where(Model.active.is_(True), PlotType.enabled.is_(True))
                                       .order_by(Model.activated_at.desc()).limit(active_models.CACHE_SIZE)))
        except Exception as error:  # e.g. the database restarting: serve anyway, models load on first use
            log.warning("warm-up skipped: cannot list the active models: %s", error)
            return []
        warmed = []
        for name in names:
            try:
                active = load_active_model(self.db, self.config, name)
            except Exception as error:  # a broken model must not stop the service
                log.warning("warm-up of %s failed: %s", name, error)
                continue
            if active is not None:
                warm_up(active)  # traces the graph (with the embedding when the version has novelty)
                self.classifier._active[name] = active
                warmed.append(active.key)
        return warmed

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "ping":
            return {"pid": os.getpid(), "version": code_version(), "started": self.started, "requests": self.requests}
        if op not in ("classify", "shadow"):
            return {"error": "BadRequest", "message": f"unknown op {op!r}"}
        from hydra_assets.ml.active import ModelLoadError

        try:
            if op == "shadow":
                return {"scores": self.shadow_scores(int(request["model_id"]), request["images"])}
            prediction = self.classifier.classify(request["plot_type"], request["images"], request["gradcam_paths"],
                                                  expected_key=request.get("expected_key"))
        except ModelLoadError as error:
            return {"error": "ModelLoadError", "message": str(error)}
        except InputSizeMismatch as error:
            return {"error": "InputSizeMismatch", "size": list(error.size)}
        except Exception as error:  # reported to the caller, who falls back or fails
            if is_outage(error):  # the caller's step waits for the database, as it would in-process
                log.warning("classify: database unavailable: %s", error)
                return {"error": "DatabaseUnavailable", "message": str(error)}
            log.exception("classify failed")
            return {"error": type(error).__name__, "message": str(error)}
        if prediction is None:
            return {"prediction": None}
        prediction.where = f"service pid {os.getpid()}"
        return {"prediction": dict(vars(prediction))}  # plain types: the client unpickles no class of ours

    def shadow_scores(self, model_id: int, images: np.ndarray) -> dict[str, Any]:
        """Any version's output for a batch (`hydra_assets.shadow.Scored` as plain types), the version cached."""
        from hydra_assets.shadow import local_scorer

        with self.classifier._lock:  # one forward pass at a time, as for Predict's batches
            scored = local_scorer(self.db, self.config, model_id)(images)
        return dict(vars(scored))

    def serve_connection(self, connection: Connection) -> None:
        with self.state:
            self.busy += 1
        try:
            while True:
                try:
                    request = connection.recv()
                except (EOFError, OSError):
                    return
                self.requests += 1
                connection.send(self.handle(request))
        finally:
            connection.close()
            with self.state:
                self.busy -= 1
                self.last_request = time.monotonic()

    def watchdog(self) -> None:
        while True:
            time.sleep(min(5.0, self.idle_s))
            with self.state:
                idle = self.busy == 0 and time.monotonic() - self.last_request > self.idle_s
            if idle:
                log.info("idle for %.0f s, stopping", self.idle_s)
                os._exit(0)
            if self.supervisor and supervisor_gone(self.supervisor):
                log.info("the `hydra up` that started this home's services is gone, stopping")
                os._exit(0)


def serve(config: HydraSettings, *, idle_s: float = IDLE_SECONDS, warm: bool = True) -> None:
    """Run the service until idle; a second service of the same home and code exits at once."""
    lock_path = runtime_dir(config) / f"predictor-{_identity(config)}.lock"
    lock = lock_path.open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log.info("a predictor service for this home is already running")
        return
    server = _Server(config, idle_s=idle_s)
    listener = Listener(service_address(config), family="AF_UNIX", authkey=authkey(config))
    if warm:
        started = time.perf_counter()
        warmed = server.warm_up()
        log.info("warm in %.1f s: %s", time.perf_counter() - started, ", ".join(warmed) or "no active models")
    threading.Thread(target=server.watchdog, daemon=True).start()
    log.info("predictor service pid %d ready (code %s)", os.getpid(), code_version())
    while True:
        try:
            connection = listener.accept()
        except Exception as error:  # a client failing authentication must not stop us
            log.warning("refused a connection: %s", error)
            continue
        threading.Thread(target=server.serve_connection, args=(connection,), daemon=True).start()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Hydra predictor service: keeps the active models warm.")
    parser.add_argument("--home")
    parser.add_argument("--db-url")
    parser.add_argument("--idle", type=float, default=IDLE_SECONDS, help="seconds without requests before exiting")
    parser.add_argument("--no-warm", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s predictor %(levelname)s %(message)s")
    overrides = {k: v for k, v in {"home": args.home, "db_url": args.db_url}.items() if v}
    serve(load_settings(**overrides), idle_s=args.idle, warm=not args.no_warm)


if __name__ == "__main__":
    main()
