"""`hydra worker`: a Celery worker that executes the chunk job's steps (distributed mode, deploy/README.md).

A worker shares only the Hydra database, Dagster's storage (MariaDB), the broker and the image folders with
the rest of the deployment; everything else (its working directory, model cache, logs) is its own, so it
can run on another machine.  Before it takes any step it checks the broker (down: says so and retries with
back-off; nothing is lost, steps wait in the queue and files in the incoming folder) and the deployment's
code version (another version: refused with a message, exit 3).
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from hydra_assets.cli.common import EXIT_REFUSED, friendly_errors, settings
from hydra_assets.settings import HydraSettings
from hydra_assets.supervisor import Service

if TYPE_CHECKING:
    import celery

REPO = Path(__file__).resolve().parents[2]
DEPLOY_DAGSTER_YAML = REPO / "deploy" / "dagster-mysql.yaml"


def _err(line: str) -> None:
    click.echo(f"hydra worker: {line}", err=True)


def ensure_dagster_yaml(dagster_home: Path) -> None:
    """A worker's Dagster home holds the deployment's instance config: deploy/dagster-mysql.yaml unless given."""
    target = dagster_home / "dagster.yaml"
    if not target.exists():
        dagster_home.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(DEPLOY_DAGSTER_YAML, target)


def worker_app(config: HydraSettings, version: str) -> celery.Celery:
    """The Celery app a `hydra worker` runs: dagster-celery's app and step task with our settings, each step
    executed against this worker's own Dagster home.

    Why its own home: the task carries the run's instance reference, which names the head's folders for step
    logs and artifacts (an absolute path on the head); storage settings in it are `{env: …}` references and
    resolve the same here.  With the worker's reference the logs stay in its folder and nothing is written to
    a path of another machine.  Private Dagster names used (as dagster-celery itself does): `ExecuteStepArgs`,
    `InstanceRef.from_dir`, `pack_value`/`unpack_value`, `dagster._record.copy`.
    """
    import celery
    from dagster._core.instance.ref import InstanceRef
    from dagster._grpc.types import ExecuteStepArgs
    from dagster._record import copy
    from dagster._serdes import pack_value, unpack_value
    from dagster_celery.config import DEFAULT_CONFIG, dict_wrapper
    from dagster_celery.make_app import make_app
    from dagster_celery.tasks import create_task

    from hydra_assets.distributed import settings_celery_config

    own = InstanceRef.from_dir(str(config.dagster_home))

    class OwnHomeStep(celery.Task):
        def __call__(self, *args: object, **kwargs: object) -> object:
            packed = kwargs.get("execute_step_args_packed")
            if isinstance(packed, dict):
                step = unpack_value(packed, as_type=ExecuteStepArgs)
                kwargs["execute_step_args_packed"] = pack_value(copy(step, instance_ref=own))
            return super().__call__(*args, **kwargs)

    settings = settings_celery_config(config, version)
    app = make_app({"broker": settings["broker"], "backend": settings["backend"], "include": [],
                    "config_source": dict_wrapper({**DEFAULT_CONFIG, **settings["config_source"]})})
    create_task(app, base=OwnHomeStep)
    return app


# ---- `hydra up --production --workers N` -------------------------------------------------------------------


def prepare_head(config: HydraSettings) -> HydraSettings:
    """Settings of a head with workers: the chunk job on Celery, no predictor service here (the workers
    classify), Dagster's storage from deploy/dagster-mysql.yaml unless the Dagster home has its own."""
    os.environ["HYDRA_EXECUTOR"] = "celery"  # the daemon's, webserver's and runs' environment
    os.environ.setdefault("HYDRA_PREDICTOR", "inprocess")
    ensure_dagster_yaml(config.dagster_home)
    return settings()


def start_head(config: HydraSettings, echo: Callable[[str], None]) -> str:
    """Before any service starts: Dagster's storage must be shared, the broker must answer (waits, saying
    so: files wait in the incoming folder meanwhile), and the deployment's code version is recorded (returned)."""
    import dagster as dg

    from hydra_assets import distributed

    with dg.DagsterInstance.from_config(str(config.dagster_home)) as instance:
        problem = distributed.shared_storage_problem(instance.run_storage)
        if problem is not None:
            raise click.ClickException(f"--workers: {problem}")
        distributed.wait_for_broker(config.celery_broker, echo=lambda line: echo(f"waiting: {line}"))
        distributed.record_deployment_version(instance.run_storage)
    return distributed.code_version()


def worker_services(config: HydraSettings, count: int, *, log_dir: Path) -> list[Service]:
    """`count` workers as separate processes, each in its own folder under HYDRA_HOME/workers/<n> with its
    own Hydra and Dagster home, sharing with the head only the databases, the broker and the image folders
    (what a worker on another machine shares)."""
    hydra = Path(sys.executable).parent / "hydra"  # this environment's, as `hydra up` runs its own tools
    shared = {"HYDRA_DB_URL": config.db_url, "MLFLOW_TRACKING_URI": config.mlflow_tracking_uri,
              "HYDRA_MLFLOW_ARTIFACT_ROOT": str(config.mlflow_artifact_root), "HYDRA_INPUT_DIR": str(config.input_dir),
              "HYDRA_IMAGES_DIR": str(config.images_dir), "HYDRA_KEPT_DIR": str(config.kept_dir),
              "HYDRA_QUARANTINE_DIR": str(config.quarantine_dir), "HYDRA_GRADCAM_DIR": str(config.gradcam_dir),
              "HYDRA_EXECUTOR": "celery", "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    services = []
    for number in range(1, count + 1):
        folder = config.home / "workers" / str(number)
        (folder / "dagster").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(config.dagster_home / "dagster.yaml", folder / "dagster" / "dagster.yaml")
        env = {**shared, "HYDRA_HOME": str(folder), "DAGSTER_HOME": str(folder / "dagster")}
        services.append(Service(f"worker {number}", [str(hydra) if hydra.exists() else "hydra", "worker", "--workdir", str(folder),
                                                     "--name", f"worker-{number}@{socket.gethostname()}"],
                                env=env, log_path=log_dir / f"worker-{number}.log", restart=True))
    return services


@click.command()
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="This worker's own folder (working directory); default $HYDRA_HOME/worker.")
@click.option("--concurrency", type=click.IntRange(min=1), default=1, show_default=True,
              help="Steps this worker executes at once (one process each).")
@click.option("--name", default=None, help="Worker name shown in Dagster's event log; default worker-<pid>@host.")
@click.option("--broker-wait", type=float, default=None,
              help="Give up when the broker has not answered after this many seconds (default: keep trying).")
@friendly_errors
def worker(workdir: Path | None, concurrency: int, name: str | None, broker_wait: float | None) -> None:
    """Execute chunk-job steps from the Celery broker (HYDRA_CELERY_BROKER) for this code version.

    Start the head first (`hydra up --production --workers N` records the deployment's code version), then
    any number of workers, here or on other machines with the same code, database and shared folders."""
    os.environ.setdefault("HYDRA_PREDICTOR", "inprocess")  # this process stays: it is the warm one
    config = settings()
    from hydra_assets import distributed

    workdir = (workdir or config.home / "worker").expanduser().resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    os.chdir(workdir)
    version = distributed.code_version()
    queue = distributed.queue_name(config.celery_queue, version)
    _err(f"code version {version}, queue {queue}, broker {distributed.redact(config.celery_broker)}, "
         f"working directory {workdir}")

    try:
        distributed.wait_for_broker(config.celery_broker, echo=_err, wait_s=broker_wait)
    except distributed.BrokerUnavailable as error:
        raise click.ClickException(str(error)) from error

    import dagster as dg

    ensure_dagster_yaml(config.dagster_home)
    with dg.DagsterInstance.from_config(str(config.dagster_home)) as instance:
        problem = distributed.shared_storage_problem(instance.run_storage) or distributed.version_problem(
            version, distributed.deployment_version(instance.run_storage))
    if problem is not None:
        click.echo(f"refused: {problem}", err=True)
        sys.exit(EXIT_REFUSED)
    _err(f"shared folders: incoming {config.input_dir}, images {config.images_dir}, kept {config.kept_dir}")

    import hydra_assets.definitions  # noqa: F401 - imported once here, inherited by every pool process

    app = worker_app(config, version)
    app.worker_main(["worker", "--queues", queue, "--concurrency", str(concurrency), "--pool", "prefork",
                     "--hostname", name or f"worker-{os.getpid()}@{socket.gethostname()}",
                     "--loglevel", "INFO", "--without-gossip", "--without-mingle"])
