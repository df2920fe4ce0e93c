"""`hydra model backtest` and `hydra model backtest-report`: what a version would have done on stored runs.

The backtest goes through Dagster: an asset backfill over the runs' partitions when the Dagster daemon
runs (follow it in the UI's Backfills), else — and always with ``--wait`` — each run's partition executed
in this process against the same Dagster instance, so the runs show in the UI all the same.
"""

from __future__ import annotations

import os
import time

import click

from hydra_assets.cli.common import USER_OPTION, acting_user, database, echo_json, friendly_errors, settings


def dagster_instance(config):  # type: ignore[no-untyped-def]
    """The Hydra Dagster instance (``DAGSTER_HOME``), as `hydra train` uses it."""
    import dagster as dg

    config.dagster_home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("DAGSTER_HOME", str(config.dagster_home))
    return dg.DagsterInstance.from_config(str(config.dagster_home))


@click.command("backtest")
@click.argument("plot_type_name", metavar="PLOT_TYPE")
@click.argument("version")
@click.option("--runs", "runs", required=True, metavar="A-B", help="Stored runs to classify again, e.g. 1200-1250.")
@click.option("--wait", is_flag=True, help="Run here and print the report (otherwise the Dagster daemon runs it "
                                          "when it is up).")
@USER_OPTION
@friendly_errors
def model_backtest(plot_type_name: str, version: str, runs: str, wait: bool, user_name: str) -> None:
    """Classify every stored image of runs A-B with VERSION in shadow and compare with the active version."""
    from hydra_assets.backtest import claim, describe_backtest, fail, report_lines, request_backtest, set_backfill_id
    from hydra_assets.db.models import Backtest
    from hydra_assets.jobs.backtest import BACKTEST_JOB, TAG, daemon_running, launch_backfill, run_in_process

    config = settings()
    db = database(config)
    request = request_backtest(db, config, plot_type_name, version, runs, acting_user(db, user_name))
    click.echo(f"backtest {request.id}: {request.candidate} vs {request.active or '(no active model)'} on "
               f"{request.n_images} images of {len(request.runs)} runs ({request.first_run}-{request.last_run})")
    instance = dagster_instance(config)
    if not wait and daemon_running(instance):
        claim(db, request.id, backfill_id="", how="launching the Dagster backfill")
        backfill_id = launch_backfill(instance, request.id, request.runs)
        set_backfill_id(db, request.id, backfill_id, f"Dagster backfill {backfill_id} over {len(request.runs)} runs")
        click.echo(f"Dagster backfill {backfill_id} launched ({len(request.runs)} runs): follow it in the Dagster "
                   f"UI (Backfills); the report: hydra model backtest-report {plot_type_name} {version}")
        return
    why = "--wait" if wait else "no Dagster daemon is running"
    claim(db, request.id, backfill_id="", how=f"in the command's process ({why})")
    click.echo(f"running the {len(request.runs)} partitions in this process ({why}): job {BACKTEST_JOB}, "
               f"tag {TAG}={request.id}")
    started = time.perf_counter()
    result = run_in_process(instance, config, request.id, request.runs)
    seconds = time.perf_counter() - started
    if result.failed:
        fail(db, request.id, "; ".join(result.failed[:5]))
    with db.read() as s:
        shown = describe_backtest(s, s.get(Backtest, request.id))
    click.echo(f"{len(result.run_ids)} Dagster runs in {seconds:.1f} s; backtest {request.id} {shown['status']}: "
               f"{shown['message']}")
    for line in report_lines(shown["report"]):
        click.echo(line)
    if shown["status"] != "done":
        raise SystemExit(1)


@click.command("backtest-report")
@click.argument("plot_type_name", metavar="PLOT_TYPE")
@click.argument("version")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@friendly_errors
def model_backtest_report(plot_type_name: str, version: str, fmt: str) -> None:
    """The latest backtest of VERSION: status, progress and its report."""
    from hydra_assets.backtest import describe_backtest, find_candidate, latest_backtest, report_lines
    from hydra_assets.catalog import CatalogError

    with database().read() as s:
        model = find_candidate(s, plot_type_name, version)
        backtest = latest_backtest(s, model.id)
        if backtest is None:
            raise CatalogError(f"{model.key} has no backtest yet: hydra model backtest {plot_type_name} {version} "
                               "--runs A-B")
        shown = describe_backtest(s, backtest)
    if fmt == "json":
        echo_json(shown)
        return
    done, total = shown["progress"]
    click.echo(f"backtest {shown['id']} ({shown['status']}, {done}/{total} images): {shown['message']}")
    for line in report_lines(shown["report"]):
        click.echo(line)
