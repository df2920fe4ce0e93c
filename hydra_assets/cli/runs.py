"""`hydra runs`: runs as Hydra knows them, and their conditions imported from CSV, JSON or a URL."""

from __future__ import annotations

from typing import Any

import click
from sqlalchemy import select

from hydra_assets import catalog
from hydra_assets.cli.common import (
    EXIT_FAILED,
    EXIT_REFUSED,
    EXIT_USAGE,
    USER_OPTION,
    acting_user,
    database,
    echo_json,
    friendly_errors,
)
from hydra_assets.db.models import Run
from hydra_assets.run_conditions import RunConditionsError, import_conditions


@click.group()
def runs() -> None:
    """Runs and their conditions (beam energy, target, trigger, run type, …); docs/run-conditions.md."""


@runs.command("import")
@click.argument("source")
@click.option("--skip-unknown", is_flag=True,
              help="Leave out runs Hydra has not seen yet (default: create them, conditions first, images later).")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default=None,
              help="Format of SOURCE (default: from the file name, or JSON for a URL).")
@click.option("--timeout", type=click.FloatRange(min=0.1, max=300), default=10.0, show_default=True,
              help="Seconds to wait for a URL's answer.")
@USER_OPTION
@friendly_errors
def runs_import(source: str, skip_unknown: bool, fmt: str | None, timeout: float, user_name: str) -> None:
    """Merge run conditions from a CSV/JSON FILE or a URL answering JSON into the runs.

    Exit 0 when every row was imported, 1 when some rows or values were refused (listed on stderr; the rest
    is imported), 2 when the source cannot be read at all.
    """
    db = database()
    user = acting_user(db, user_name)
    with db.read() as s:
        allowed = catalog.has_permission(s, user, "certify")
    if not allowed:
        db.write(lambda s: catalog.record_audit(s, user, "import run conditions", allowed=False, detail=source))
        click.echo(f"refused: user {user!r} may not import run conditions (needs 'certify')", err=True)
        raise SystemExit(EXIT_REFUSED)
    try:
        report = import_conditions(db, source, unknown="skip" if skip_unknown else "create", timeout=timeout,
                                   fmt=fmt)
    except RunConditionsError as error:
        click.echo(f"error: {error}", err=True)
        raise SystemExit(EXIT_USAGE) from error
    db.write(lambda s: catalog.record_audit(s, user, "import run conditions", detail=report.summary()))
    for problem in report.problems:
        click.echo(f"  {problem}", err=True)
    click.echo(report.summary())
    if report.problems:
        raise SystemExit(EXIT_FAILED)


def _as_dict(run: Run) -> dict[str, Any]:
    return {
        "run": run.number, "first_seen": run.first_seen, "last_seen": run.last_seen, "started_at": run.started_at,
        "ended_at": run.ended_at, "images": run.image_count, "chunks": run.chunk_count, "alarms": run.alarm_count,
        "conditions": run.conditions or {},
    }


def _text(value: Any) -> str:
    """A condition as it was written: true/false for booleans, 11.6 for numbers."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _conditions_text(conditions: dict[str, Any]) -> str:
    return "  ".join(f"{k}={_text(v)}" for k, v in sorted(conditions.items())) or "-"


@runs.command("show")
@click.argument("number", type=int)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@friendly_errors
def runs_show(number: int, fmt: str) -> None:
    """Run NUMBER: when it ran, its counts and its conditions."""
    with database().read() as s:
        run = s.get(Run, number)
    if run is None:
        click.echo(f"error: run {number} is not known to Hydra (no image and no conditions yet)", err=True)
        raise SystemExit(EXIT_USAGE)
    if fmt == "json":
        echo_json(_as_dict(run))
        return
    when = (f"{run.started_at:%Y-%m-%d %H:%M:%S}" if run.started_at else "?") + " → " + \
           (f"{run.ended_at:%Y-%m-%d %H:%M:%S}" if run.ended_at else "?")
    click.echo(f"run {run.number}  ran {when} UTC  ({run.image_count} images, {run.chunk_count} chunks, "
               f"{run.alarm_count} alarms; images seen {run.first_seen:%Y-%m-%d %H:%M} - {run.last_seen:%H:%M})")
    for key, value in sorted((run.conditions or {}).items()):
        click.echo(f"  {key}: {value}")


@runs.command("list")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--where", "wheres", multiple=True, metavar="KEY=VALUE",
              help="Only runs whose condition KEY has VALUE (as text; repeatable).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@friendly_errors
def runs_list(limit: int, wheres: tuple[str, ...], fmt: str) -> None:
    """Newest runs first, with their conditions."""
    wanted = []
    for where in wheres:
        key, sep, value = where.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{where!r} is not KEY=VALUE", param_hint="--where")
        wanted.append((key.strip(), value.strip()))
    found: list[Run] = []
    with database().read() as s:
        # conditions are a small JSON object per run: filter while walking the primary key backwards
        for run in s.scalars(select(Run).order_by(Run.number.desc()).execution_options(yield_per=500)):
            if all(_text((run.conditions or {}).get(k)) == v for k, v in wanted):
                found.append(run)
                if len(found) == limit:
                    break
    if fmt == "json":
        echo_json([_as_dict(run) for run in found])
        return
    if not found:
        click.echo("no runs" + (" with those conditions" if wanted else ""))
        return
    for run in found:
        started = f"{run.started_at:%Y-%m-%d %H:%M}" if run.started_at else "-"
        click.echo(f"{run.number:>8}  {started:<16}  {run.image_count:>6} images  "
                   f"{_conditions_text(run.conditions or {})}")
