"""`hydra model challenger | challenger-report | promote`: a plot type's challenger from the command line.

The commands join the `hydra model` group (`cli/models.py` adds them).  Naming, clearing and promoting act as
``cli`` or ``--user NAME`` and need ``activate_models``, like on the Library page; each lands in the audit log.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime

import click

from hydra_assets.catalog import CatalogError
from hydra_assets.cli.common import USER_OPTION, acting_user, database, echo_json, friendly_errors, settings


def parse_since(text: str | None) -> datetime | None:
    """`7d`, `24h`, `90m` back from now, or a date/time (`2026-11-30`, `2026-11-30T06:00`, UTC); None: all."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.strip()).replace(tzinfo=None)
    except ValueError:
        from hydra_assets.cli.results import parse_duration

        return datetime.now(UTC).replace(tzinfo=None) - parse_duration(text)


@click.command("challenger")
@click.argument("plot_type_name", metavar="PLOT_TYPE")
@click.argument("version", required=False)
@click.option("--clear", is_flag=True, help="PLOT_TYPE has no challenger any more (its shadow results stay).")
@USER_OPTION
@friendly_errors
def model_challenger(plot_type_name: str, version: str | None, clear: bool, user_name: str) -> None:
    """Make VERSION the challenger of PLOT_TYPE (it classifies every live chunk in shadow), or --clear it."""
    from hydra_assets.challenger import challenger_of, clear_challenger, set_challenger

    config = settings()
    db = database(config)
    if clear and version:
        raise CatalogError("give either a VERSION or --clear, not both")
    if clear:
        previous = clear_challenger(db, config, plot_type_name, acting_user(db, user_name))
        click.echo(f"{plot_type_name} has no challenger" + (f" (was {previous.key})" if previous else ""))
        return
    if not version:
        from hydra_assets import catalog

        with db.read() as s:
            current = challenger_of(s, catalog.get_plot_type(s, plot_type_name).id)
            click.echo(f"challenger of {plot_type_name}: {current.key if current else 'none'}")
        return
    row = set_challenger(db, config, plot_type_name, version, acting_user(db, user_name))
    click.echo(f"{row.key} is now the challenger of {plot_type_name}: it classifies every new chunk in shadow "
               f"(hydra model challenger-report {plot_type_name})")


def _cell(value: object) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


COLUMNS = ("run", "images", "errors", "alarms_active", "alarms_challenger", "bad_active", "bad_challenger",
           "agreement", "labeled_bad", "bad_recall_active", "bad_recall_challenger", "false_alarms_active",
           "false_alarms_challenger", "ms_active", "ms_challenger")


@click.command("challenger-report")
@click.argument("plot_type_name", metavar="PLOT_TYPE")
@click.option("--since", default=None, help="From when: 7d, 24h, or a UTC date/time like 2026-11-30 (default: all).")
@click.option("--version", default=None, help="Another version than the current challenger (e.g. one promoted since).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@friendly_errors
def model_challenger_report(plot_type_name: str, since: str | None, version: str | None, fmt: str) -> None:
    """The running comparison of PLOT_TYPE's challenger with the live results, per run."""
    from hydra_assets.challenger import running_comparison

    with database().read() as s:
        report = running_comparison(s, plot_type_name, parse_since(since), version)
    if fmt == "json":
        echo_json(asdict(report))
        return
    if report.challenger is None:
        click.echo(f"{plot_type_name} has no challenger: hydra model challenger {plot_type_name} VERSION")
        return
    click.echo(f"challenger {report.challenger}{'' if report.current else ' (no longer the challenger)'} vs "
               f"active {report.active or 'none'}" + (f" since {report.since:%Y-%m-%d %H:%M} UTC" if report.since else ""))
    if report.totals is None:
        click.echo("no images classified by the challenger yet: its results appear after the next chunk")
        return
    click.echo("  ".join(COLUMNS))
    for row in [*report.runs, report.totals]:
        cells = asdict(row)
        cells["run"] = "all" if row.run is None else row.run
        click.echo("  ".join(_cell(cells[c]) for c in COLUMNS))


@click.command("promote")
@click.argument("plot_type_name", metavar="PLOT_TYPE")
@USER_OPTION
@friendly_errors
def model_promote(plot_type_name: str, user_name: str) -> None:
    """The challenger of PLOT_TYPE becomes its active version (MLflow alias challenger -> active)."""
    from hydra_assets.challenger import promote

    config = settings()
    db = database(config)
    row = promote(db, config, plot_type_name, acting_user(db, user_name))
    click.echo(f"{row.key} (the challenger) is now the active model of {plot_type_name}; {plot_type_name} has no "
               "challenger")


CHALLENGER_COMMANDS = [model_challenger, model_challenger_report, model_promote]
