"""`hydra reference`: a plot type's reference (the runs its images are compared with) and the scores.

Changing a reference acts as the system user ``cli`` or as ``--user NAME`` / ``$HYDRA_USER``, who needs
``edit_reference`` for the plot type (role expert); every attempt lands in the audit log.  docs/reference.md.
"""

from __future__ import annotations

import click

from hydra_assets.cli.common import EXIT_USAGE, USER_OPTION, acting_user, database, echo_json, friendly_errors, settings
from hydra_assets.references import ReferenceChange, ReferenceError


@click.group()
def reference() -> None:
    """References: the runs a plot type's images are compared with, and the reference scores."""


def _plot_type_id(db, name: str) -> int:  # type: ignore[no-untyped-def]
    from hydra_assets import catalog

    with db.read() as s:
        return catalog.get_plot_type(s, name).id


def _report(change: ReferenceChange) -> None:
    click.echo(change.message)
    for line in change.excluded[:20]:
        click.echo(f"  excluded {line}")
    if len(change.excluded) > 20:
        click.echo(f"  … and {len(change.excluded) - 20} more excluded")


def _guarded(db, user_name: str, plot_type: str, action: str, work, detail: str) -> ReferenceChange:  # type: ignore[no-untyped-def]
    from hydra_assets import catalog

    try:
        return catalog.guarded_write(db, acting_user(db, user_name), "edit_reference", _plot_type_id(db, plot_type),
                                     action, work, detail=detail)
    except ReferenceError as error:
        click.echo(f"error: {error}", err=True)
        raise SystemExit(EXIT_USAGE) from error


@reference.command("set")
@click.argument("plot_type_name", metavar="PLOT_TYPE")
@click.option("--runs", required=True, help="Run numbers whose images are the reference, e.g. 5 or 5,6.")
@click.option("--comment", default="", help="Why (shown in the history).")
@USER_OPTION
@friendly_errors
def reference_set(plot_type_name: str, runs: str, comment: str, user_name: str) -> None:
    """Use RUNS as PLOT_TYPE's reference (a new version; the plot type stops following the auto rule)."""
    from hydra_assets.references import choose_reference

    db = database()
    images_dir = settings().images_dir
    user = acting_user(db, user_name)
    change = _guarded(db, user_name, plot_type_name, "set reference",
                      lambda s: choose_reference(s, images_dir, plot_type_name, runs, by=user, comment=comment),
                      detail=f"plot type {plot_type_name}: runs {runs}")
    _report(change)


@reference.command("auto")
@click.argument("plot_type_name", metavar="PLOT_TYPE")
@USER_OPTION
@friendly_errors
def reference_auto(plot_type_name: str, user_name: str) -> None:
    """PLOT_TYPE follows its latest good runs (the hourly schedule keeps it up to date); refreshed now."""
    from hydra_assets.references import auto_reference

    db = database()
    images_dir = settings().images_dir
    user = acting_user(db, user_name)
    change = _guarded(db, user_name, plot_type_name, "set reference rule auto",
                      lambda s: auto_reference(s, images_dir, plot_type_name, by=user),
                      detail=f"plot type {plot_type_name}: auto rule")
    _report(change)


@reference.command("show")
@click.argument("plot_type_name", metavar="PLOT_TYPE")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@friendly_errors
def reference_show(plot_type_name: str, fmt: str) -> None:
    """PLOT_TYPE's reference rule, current version and history (newest first)."""
    from hydra_assets import catalog
    from hydra_assets.references import reference_history

    with database().read() as s:
        plot = catalog.get_plot_type(s, plot_type_name)
        rule, alarm, quantile = plot.reference_rule, bool(plot.reference_alarm), plot.reference_quantile
        rows = [{"version": r.version, "active": bool(r.active), "rule": r.rule, "runs": list(r.runs),
                 "chosen_by": r.chosen_by, "chosen_at": r.chosen_at, "comment": r.comment, "n_images": r.n_images,
                 "size": f"{r.image_width}x{r.image_height}", "quantile": r.quantile, "limit": r.score_limit,
                 "method": r.method, "mask_id": r.mask_id} for r in reference_history(s, plot)]
    if fmt == "json":
        echo_json({"plot_type": plot_type_name, "rule": rule, "reference_alarm": alarm, "quantile": quantile,
                   "versions": rows})
        return
    click.echo(f"{plot_type_name}: rule {rule}, reference alarm {'on' if alarm else 'off'}, quantile {quantile:g}")
    if not rows:
        click.echo(f"no reference yet: hydra reference set {plot_type_name} --runs N "
                   f"(or hydra reference auto {plot_type_name})")
    for r in rows:
        limit = "?" if r["limit"] is None else f"{r['limit']:.3f}"
        click.echo(f"{'*' if r['active'] else ' '} v{r['version']:<3} {r['rule']:<6} runs {','.join(map(str, r['runs']))}"
                   f"  {r['n_images']} images {r['size']}  limit {limit} @ {r['quantile']:g}  "
                   f"{r['chosen_by']} {r['chosen_at']:%Y-%m-%d %H:%M}" + (f"  {r['comment']}" if r["comment"] else ""))


@reference.command("score")
@click.option("--run", "run", type=int, required=True, help="Run number whose images are scored.")
@friendly_errors
def reference_score(run: int) -> None:
    """Score every image of RUN against its plot type's current reference (images already scored against
    that version are skipped): a backfill after a reference change."""
    from hydra_assets.references import score_run

    result = database().write(lambda s: score_run(s, run), what="reference scores")
    click.echo(f"run {run}: {result.scored} scored, {result.flagged} unlike their reference, {result.missing} "
               f"missing, {result.already} already scored")
    for reason, images in result.reasons.most_common(10):
        click.echo(f"  missing for {images} image(s): {reason}")
