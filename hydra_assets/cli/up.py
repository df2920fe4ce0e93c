"""`hydra up`: the main job — initialise, start and supervise every service, and prepare the demo experiment.

The services come first: on a fresh home the demo's labeled history and its six models (minutes on two
cores) are made afterwards by a supervised background job (`hydra demo-setup`), whose progress `hydra up`
prints and the Status page shows; each plot type's Run cards fill in as its model is activated.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import click

from hydra_assets import logins
from hydra_assets.cli.common import friendly_errors, settings
from hydra_assets.home import initialise, open_database
from hydra_assets.settings import HydraSettings
from hydra_assets.supervisor import RunRecord, Service, ServiceError, Supervisor

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    """A console script of this environment (dagster-webserver, mlflow, hydra…)."""
    candidate = BIN / name
    return str(candidate) if candidate.exists() else name


def build_services(
    config: HydraSettings,
    *,
    host: str,
    panel_port: int,
    dagster_port: int,
    mlflow_port: int,
    demo: bool,
    feed_interval: float,
    auth: bool,
    demo_setup: Sequence[str] | None = None,
) -> list[Service]:
    """The platform's processes, in start order; every one writes its log under HYDRA_HOME/logs.

    `demo_setup` (the arguments of `hydra demo-setup`) adds the demo's background set-up, a one-shot job.
    """
    logs = config.home / "logs"
    env = {"DAGSTER_HOME": str(config.dagster_home), "HYDRA_HOME": str(config.home),
           "HYDRA_DAGSTER_URL": f"http://{host}:{dagster_port}", "HYDRA_MLFLOW_URL": f"http://{host}:{mlflow_port}",
           "PYTHONUNBUFFERED": "1"}
    workspace = ["-w", str(REPO / "workspace.yaml")] if (REPO / "workspace.yaml").exists() else [
        "-m", "hydra_assets.definitions"]
    mlflow_env = {**env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # GenAI job runners: 8 idle processes
    services = [
        Service("MLflow UI", [_tool("mlflow"), "server", "--backend-store-uri", config.mlflow_tracking_uri,
                              "--default-artifact-root", str(config.mlflow_artifact_root),
                              "--host", host, "--port", str(mlflow_port), "--workers", "1"],
                env=mlflow_env, port=mlflow_port, host=host, ready_url=f"http://{host}:{mlflow_port}/health",
                url=f"http://{host}:{mlflow_port}", log_path=logs / "mlflow.log"),
        Service("Dagster daemon", [_tool("dagster-daemon"), "run", *workspace], env=env, log_path=logs / "daemon.log",
                restart=True),
        Service("Dagster UI", [_tool("dagster-webserver"), "-h", host, "-p", str(dagster_port), *workspace],
                env=env, port=dagster_port, host=host, ready_url=f"http://{host}:{dagster_port}/server_info",
                url=f"http://{host}:{dagster_port}", log_path=logs / "dagster-webserver.log"),
        Service("Hydra pages", [_tool("hydra"), "pages", "--address", host, "--port", str(panel_port),
                                *(["--credentials", str(logins.credentials_path(config))] if auth else
                                  ["--no-auth"])],
                env=env, port=panel_port, host=host, ready_url=f"http://{host}:{panel_port}/",
                url=f"http://{host}:{panel_port}/run", log_path=logs / "pages.log"),
    ]
    if demo:
        services.append(Service("demo feeder", [_tool("hydra"), "demo-feed", "--interval", str(feed_interval)],
                                env=env, log_path=logs / "demo-feeder.log"))
    if demo and demo_setup is not None:
        services.append(Service("demo set-up", [_tool("hydra"), "demo-setup", *demo_setup], env=env,
                                log_path=logs / "demo-setup.log", one_shot=True))
    return services


def demo_setup_args(config: HydraSettings, *, per_label: int, epochs: int | None) -> list[str] | None:
    """Arguments of `hydra demo-setup` when a demo plot type still lacks its model, else None (cached).

    Creates the plot types and users now (a second), so the pages have them from the start, and marks
    every plot type the set-up will work on as waiting.
    """
    from hydra_assets.demo import WAITING, plot_types_without_model, read_progress, record_progress, seed_data

    db = open_database(config)
    try:
        seed_data(db, config, per_label=per_label, echo=click.echo, history=False)
        missing = plot_types_without_model(db)
    finally:
        db.dispose()
    if not missing:
        return None
    known = read_progress(config.home)
    for name in missing:
        if known.get(name, {}).get("step") != WAITING:
            record_progress(config.home, name, WAITING, "labeled history and model to come")
    return ["--per-label", str(per_label), *(["--epochs", str(epochs)] if epochs else [])]


class ProgressEcho:
    """Prints each change of the demo set-up's progress file once (`plot type: step (detail)`)."""

    def __init__(self, config: HydraSettings) -> None:
        self.home = config.home
        self.seen: dict[str, tuple[str, str]] = {}

    def __call__(self) -> None:
        from hydra_assets.demo import read_progress

        for name, state in read_progress(self.home).items():
            now = (state.get("step", ""), state.get("detail", ""))
            if self.seen.get(name) != now:
                self.seen[name] = now
                _say(f"  demo {name}: {now[0]}" + (f" ({now[1]})" if now[1] else ""))


def _say(line: str, *, err: bool = False) -> None:
    """Print, unless the terminal is gone (`| tee` + Ctrl-C: a broken pipe; a closed terminal: EIO): cleanup
    must still run. A dead stream is pointed at /dev/null, so that no later print, nor Python's flush at exit,
    raises again."""
    try:
        click.echo(line, err=err)
    except OSError:
        stream = sys.stderr if err else sys.stdout
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stream.fileno())
            os.close(devnull)


def ensure_admin_login(config: HydraSettings) -> None:
    """Without any admin login the pages cannot be administered (a fresh production home): make one, once."""
    db = open_database(config)
    try:
        made = logins.ensure_first_admin(db, config)
    except logins.LoginError as error:
        raise click.ClickException(str(error)) from error
    finally:
        db.dispose()
    if made is not None:
        name, password = made
        click.echo(f"first admin login (shown once, kept in {logins.credentials_path(config)}): "
                   f"{name} / {password}")


def prepare_dagster_storage(config: HydraSettings) -> None:
    """Create Dagster's storages here, once, before its webserver, daemon and the demo's training job start.

    Two processes opening a fresh SQLite schedule storage together both stamp its schema version; every later
    Dagster job then fails with "alembic_version has more than one head".
    """
    import dagster as dg

    with dg.DagsterInstance.from_config(str(config.dagster_home)) as instance:
        instance.get_runs(limit=1)  # run storage
        instance.all_instigator_state()  # schedule storage: sensor state and ticks
        instance.fetch_materializations(dg.AssetKey("hydra"), limit=1)  # event log storage


def start_predictor(config: HydraSettings) -> None:
    """Warm the predictor service (TensorFlow + active models) now, so the first chunk is classified quickly."""
    from hydra_assets.ingest.predictor import ensure_service

    if config.predictor != "inprocess":  # inprocess: no service wanted (e.g. the workers classify)
        ensure_service(config, wait_s=0.0)


def predictor_pids(config: HydraSettings) -> list[int]:
    """Predictor services of this Hydra home, found by command line (their socket name changes with the code)."""
    wanted = ["-m", "hydra_assets.ingest.predictor", "--home", str(config.home)]
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if all(part in argv for part in wanted):
            pids.append(int(proc.name))
    return pids


def stop_predictor(config: HydraSettings, *, grace: float = 10.0) -> None:
    """Stop this home's predictor services: they run detached from the runs that start them."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        pids = predictor_pids(config)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while pids and time.monotonic() < deadline:
            pids = [pid for pid in pids if _alive(pid)]
            time.sleep(0.2)
        if not pids:
            return


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().split(")")[-1].split()[0] != "Z"  # a zombie is dead for us
    except OSError:
        return False


@click.command()
@click.option("--no-demo", is_flag=True, help="Start the services only: no demo plot types, training or feeder.")
@click.option("--production", is_flag=True,
              help="Use the configured MySQL / tracking-server settings (HYDRA_DB_URL, MLFLOW_TRACKING_URI…); "
                   "implies --no-demo and refuses the embedded SQLite defaults.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface every service listens on.")
@click.option("--panel-port", type=int, default=5006, show_default=True)
@click.option("--dagster-port", type=int, default=3000, show_default=True)
@click.option("--mlflow-port", type=int, default=5000, show_default=True)
@click.option("--feed-interval", type=float, default=20.0, show_default=True,
              help="Seconds between demo chunks (one image per plot type each).")
@click.option("--per-label", type=int, default=100, show_default=True,
              help="Labeled demo images per label and plot type used to train the demo models.")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Training epochs of the demo models (default: the topology's).")
@click.option("--no-auth", is_flag=True, help="Serve the pages without login (local development only).")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="With --production: also start this many Celery workers (`hydra worker`, own folders under "
                   "HYDRA_HOME/workers) and run the chunk job's steps on them (deploy/README.md).")
@friendly_errors
def up(no_demo: bool, production: bool, host: str, panel_port: int, dagster_port: int, mlflow_port: int,
       feed_interval: float, per_label: int, epochs: int | None, no_auth: bool, workers: int) -> None:
    """Bring up the whole platform: Dagster (UI + daemon, sensors on), the Hydra pages, the MLflow UI and,
    unless --no-demo, a live demo experiment with trained models.  Ctrl-C stops everything."""
    config = settings()
    if production:
        no_demo = True
        if config.db_url.startswith("sqlite"):
            raise click.ClickException("--production needs HYDRA_DB_URL pointing at MySQL (see README: production)")
    head = bool(workers) or (production and config.executor == "celery")  # workers here or on other machines
    if head:
        from hydra_assets.cli.worker import prepare_head, start_head, worker_services

        if not production:
            raise click.ClickException("--workers needs --production (MariaDB for Hydra's and Dagster's storage)")
        config = prepare_head(config)
    record = RunRecord(config.home / "run" / "up.pid")  # one `hydra up` per home; what a killed one left is stopped
    try:
        previous, stopped = record.claim()
    except ServiceError as error:
        raise click.ClickException(str(error)) from error
    atexit.register(record.release)  # an error before the services start; after, `supervisor.close` releases it
    if stopped:
        click.echo(f"stopped {len(stopped)} process{'es' if len(stopped) > 1 else ''} left running by a `hydra up` "
                   f"of this home that did not stop (pid {previous.get('pid', '?')}): {', '.join(stopped)}")
    stopping = {"now": False, "starting": True}

    def _stop(signum: int, _frame: object) -> None:
        stopping["now"] = True
        if stopping["starting"]:
            raise KeyboardInterrupt  # still setting up: unwind through the cleanup

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGHUP, _stop)  # the terminal closed: the children, in their own sessions, get no SIGHUP
    probe = Supervisor(build_services(config, host=host, panel_port=panel_port, dagster_port=dagster_port,
                                      mlflow_port=mlflow_port, demo=False, feed_interval=feed_interval,
                                      auth=not no_auth), cwd=REPO)
    try:
        probe.check_ports()  # fail before any set-up, not after
    except ServiceError as error:
        raise click.ClickException(str(error)) from error

    click.echo(f"Hydra home: {config.home}")
    initialise(config)  # schema, folders, Dagster home, MLflow store — once, before any child touches them
    prepare_dagster_storage(config)
    if head:
        _say(f"deployment code version {start_head(config, _say)} recorded (every worker must run it); "
             f"starting {workers} workers here")
    setup = None if no_demo else demo_setup_args(config, per_label=per_label, epochs=epochs)
    services = build_services(config, host=host, panel_port=panel_port, dagster_port=dagster_port,
                              mlflow_port=mlflow_port, demo=not no_demo, feed_interval=feed_interval,
                              auth=not no_auth, demo_setup=setup)
    if workers:
        services += worker_services(config, workers, log_dir=config.home / "logs")
    supervisor = Supervisor(services, cwd=REPO, record=record, say=_say)
    if not no_auth:
        ensure_admin_login(config)

    click.echo("starting services…")
    try:  # from here on, every ending (signal, broken stdout, crash) goes through the cleanup below
        start_predictor(config)
        try:
            supervisor.start_all()
        except ServiceError as error:
            raise click.ClickException(str(error)) from error
        stopping["starting"] = False
        _say("all services up:")
        for service in services:
            if service.url:
                _say(f"  {service.name:<14} {service.url}")
        if not no_auth:
            count = len(logins.read_logins(logins.credentials_path(config)))
            _say(f"  logins         {logins.credentials_path(config)} ({count}; add one: hydra user add NAME)")
        _say(f"  incoming       {config.input_dir}")
        _say(f"  logs           {config.home / 'logs'}")
        demo_job = next((s for s in services if s.one_shot), None)
        if demo_job is not None:
            pages = next(s for s in services if s.name == "Hydra pages")
            _say(f"demo: generating the labeled history and training {len(read_demo_progress(config))} models "
                 f"in the background; progress below and on {pages.url.rsplit('/', 1)[0]}/status "
                 "(each plot type's Run cards fill in as its model is activated)")
        _say("Ctrl-C stops everything.")
        echo_progress = ProgressEcho(config)
        while not stopping["now"]:
            failed = supervisor.watch()  # restarts the services that may be restarted
            if failed is not None:
                _say(f"error: {failed.name} stopped unexpectedly; see {failed.log_path}", err=True)
                break
            if demo_job is not None:
                echo_progress()
                if demo_job.failed:
                    _say(f"error: the demo set-up failed; see {demo_job.log_path}", err=True)
                    demo_job = None
                elif not demo_job.running:
                    _say("demo ready: every demo model is trained and active")
                    demo_job = None
            time.sleep(1.0)
    finally:
        stopping["starting"] = False  # a second Ctrl-C must not cut the cleanup short
        _say("stopping services…")
        try:
            stop_predictor(config)
        finally:
            supervisor.close()  # the services, then anything else carrying this `hydra up`'s mark
        _say("stopped.")
    if not stopping["now"]:
        sys.exit(1)


def read_demo_progress(config: HydraSettings) -> dict[str, dict[str, str]]:
    from hydra_assets.demo import read_progress

    return read_progress(config.home)


__all__ = ["build_services", "up"]
