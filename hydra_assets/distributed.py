"""Distributed mode: the chunk job's steps on Celery workers that share only the databases, the broker and
the image storage (deploy/README.md, "Distributed mode").

Why RabbitMQ and not Redis as the broker: AMQP hands an unacknowledged message back to the queue the moment
its consumer's connection drops.  With late acknowledgement (`task_acks_late`), one message per worker
(`worker_prefetch_multiplier=1`) and `task_reject_on_worker_lost`, a step whose worker is SIGKILLed goes to
another worker at once; with Redis it waits for the visibility timeout (an hour by default) and a short one
re-delivers long steps that are still running.  Every step is idempotent (one image per digest, one
inference per image and model version, one decision per inference), so running a step again is safe.

Why a queue per code version: a worker takes only steps of the code it runs.  The deployment's version is
recorded in Dagster's instance storage (shared by every machine) by `hydra up --production`; a worker on
other code refuses to start with a message, and even one started by hand listens on its own version's
queue, so it never executes another version's step.

Pure where possible: the version, the queue, the Celery settings, the messages and the back-off are plain
functions; only `broker_problem` and the recorded version touch the outside.  The Dagster face
(hydra_assets/jobs/ingest.py) and the command line (`hydra worker`) put them to use.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import socket
import time
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from hydra_assets.settings import HydraSettings

HYDRA_ROOT = Path(__file__).resolve().parent  # the hydra_assets package
VERSION_KEY = "hydra/code_version"  # key of the deployment's version in Dagster's key-value storage

# What makes a killed worker lose nothing (see the module docstring); dagster-celery's own defaults for the
# rest (priorities, a 0.5-s publish retry).
CELERY_OPTIONS: dict[str, Any] = {
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_prefetch_multiplier": 1,
    "broker_connection_retry_on_startup": True,
    "broker_connection_max_retries": None,  # a worker keeps trying a broker that went away
    "worker_send_task_events": False,
    "task_send_sent_event": False,
}


class BrokerUnavailable(RuntimeError):
    """The broker did not answer within the time allowed."""


class VersionMismatch(RuntimeError):
    """This machine runs other Hydra code than the deployment."""


# ---- code version and queue --------------------------------------------------------------------------------


def code_fingerprint(root: Path = HYDRA_ROOT) -> str:
    """A digest of the Hydra package's Python sources by content: the same on every machine that has the
    same code (the predictor's and the warm launcher's fingerprints use mtimes, which differ per checkout)."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:12]


@cache
def code_version() -> str:
    """This process's Hydra code version (computed once)."""
    return code_fingerprint()


def queue_name(prefix: str, version: str) -> str:
    """The Celery queue of one code version's steps."""
    return f"{prefix}.{version}"


def celery_config(broker: str, backend: str, queue: str) -> dict[str, Any]:
    """The celery executor's config (dagster-celery's `broker`, `backend`, `config_source`)."""
    return {"broker": broker, "backend": backend,
            "config_source": {**CELERY_OPTIONS, "task_default_queue": queue}}


def settings_celery_config(config: HydraSettings, version: str | None = None) -> dict[str, Any]:
    return celery_config(config.celery_broker, config.celery_backend,
                         queue_name(config.celery_queue, version or code_version()))


def redact(url: str) -> str:
    """A broker URL without its password, fit for a message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


# ---- the broker ----------------------------------------------------------------------------------------------


def broker_problem(url: str, timeout: float = 3.0) -> str | None:
    """None when the broker accepts a connection, else why not (one attempt)."""
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=timeout) as connection:
            connection.ensure_connection(max_retries=1, timeout=timeout)
    except Exception as error:  # kombu/amqp/socket errors: all mean "not reachable now"
        return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return None


def backoff(first: float = 1.0, most: float = 30.0) -> Iterator[float]:
    """Waits between attempts: doubling from `first` up to `most`, then `most` for ever."""
    delay = first
    while True:
        yield delay
        delay = min(delay * 2, most)


def broker_down_message(url: str, problem: str, retry_in: float) -> str:
    return (f"the Celery broker at {redact(url)} is unreachable ({problem}); retrying in {retry_in:.0f} s. "
            "Start RabbitMQ or fix HYDRA_CELERY_BROKER; nothing is lost meanwhile: files wait in the "
            "incoming folder and queued runs wait for the broker.")


def wait_for_broker(url: str, *, echo: Callable[[str], None], wait_s: float | None = None,
                    problem: Callable[[str], str | None] = broker_problem,
                    sleep: Callable[[float], None] = time.sleep, first: float = 1.0, most: float = 30.0) -> int:
    """Block until the broker answers, saying so with back-off; returns the failed attempts.

    `wait_s` None waits for ever (a service under a supervisor); otherwise BrokerUnavailable after it.
    """
    started = time.monotonic()
    for failures, delay in enumerate(backoff(first, most)):
        why = problem(url)
        if why is None:
            if failures:
                echo(f"the Celery broker at {redact(url)} answers now (after {failures} failed attempts)")
            return failures
        if wait_s is not None and time.monotonic() - started + delay > wait_s:
            raise BrokerUnavailable(f"the Celery broker at {redact(url)} did not answer within {wait_s:.0f} s "
                                    f"({why}); start RabbitMQ or fix HYDRA_CELERY_BROKER")
        echo(broker_down_message(url, why, delay))
        sleep(delay)
    raise AssertionError("unreachable")  # backoff() never ends


# ---- the deployment's code version ---------------------------------------------------------------------------


def version_record(version: str, *, host: str | None = None, now: dt.datetime | None = None) -> str:
    """What `hydra up --production` writes: the version, where and when."""
    return json.dumps({"version": version, "host": host or socket.gethostname(),
                       "at": (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")})


def version_problem(own: str, record: str | None) -> str | None:
    """Why a worker with code `own` must not serve a deployment whose record is `record`; None if it may."""
    if record is None:
        return ("no deployment has recorded its Hydra code version in Dagster's storage yet: start the head "
                "first (`hydra up --production --workers N` records it), then this worker")
    try:
        recorded = json.loads(record)
    except ValueError:
        recorded = {"version": record}
    if recorded.get("version") == own:
        return None
    return (f"this worker runs Hydra code version {own}, but the deployment runs {recorded.get('version')} "
            f"(recorded by {recorded.get('host', '?')} at {recorded.get('at', '?')}); install the deployment's "
            "code on this machine (same commit, no local edits) or restart the head with this code")


class KeyValues(Protocol):
    """Dagster's run storage (`instance.run_storage`): its key-value table is shared by every machine."""

    def get_cursor_values(self, keys: set[str]) -> Any: ...

    def set_cursor_values(self, pairs: dict[str, str]) -> None: ...


def record_deployment_version(run_storage: KeyValues, version: str | None = None) -> str:
    """Record this code's version as the deployment's."""
    record = version_record(version or code_version())
    run_storage.set_cursor_values({VERSION_KEY: record})
    return record


def deployment_version(run_storage: KeyValues) -> str | None:
    return run_storage.get_cursor_values({VERSION_KEY}).get(VERSION_KEY)


def shared_storage_problem(run_storage: object) -> str | None:
    """Workers on other machines must see the same runs: Dagster's storage has to be a server's."""
    kind = type(run_storage).__name__
    if kind.startswith(("MySQL", "Postgres")):
        return None
    return (f"Dagster's run storage here is {kind}, which other machines cannot share: use "
            "deploy/dagster-mysql.yaml as $DAGSTER_HOME/dagster.yaml (HYDRA_DAGSTER_MYSQL_* variables)")


__all__ = [
    "BrokerUnavailable", "VersionMismatch", "celery_config", "code_version", "deployment_version",
    "record_deployment_version", "queue_name", "settings_celery_config", "version_problem", "wait_for_broker",
]
