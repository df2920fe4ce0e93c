"""`hydra mask`: a plot type's mask, rectangles the classifier input, GradCAM and the reference score ignore.

Acts as the system user ``cli`` or as ``--user NAME`` / ``$HYDRA_USER``, who then needs ``edit_reference``
or ``edit_thresholds`` like in the Library.  Every change is a new version (who, when, why); a model
version applies the mask it was trained with, so a change takes effect with the next trained version.
"""

from __future__ import annotations

import click

from hydra_assets.cli.common import EXIT_USAGE, USER_OPTION, acting_user, database, echo_json, friendly_errors
from hydra_assets.masks import MaskError, parse_region, region_text


@click.group()
def mask() -> None:
    """Masks: rectangles of a plot type's image that the models and the reference score ignore."""


def _regions(values: tuple[str, ...]) -> list[tuple[float, float, float, float]]:
    out = []
    for k, value in enumerate(values, start=1):
        try:
            out.append(parse_region(value))
        except MaskError as error:
            raise click.BadParameter(f"rectangle {k}: {error}", param_hint="--region") from error
    return out


def _save(plot_type_name: str, regions: list, user_name: str, comment: str) -> None:  # type: ignore[type-arg]
    from hydra_assets.mask_versions import save_mask

    db = database()
    try:
        row = save_mask(db, plot_type_name, regions, acting_user(db, user_name), comment)
    except MaskError as error:
        click.echo(f"error: {error}", err=True)
        raise SystemExit(EXIT_USAGE) from error
    what = "; ".join(region_text(r) for r in row.regions) or "no rectangles (cleared)"
    click.echo(f"mask version {row.version} of {plot_type_name}: {what}")
    click.echo("it applies to models trained from now on (hydra train); the active model keeps its own mask")


@mask.command("set")
@click.argument("plot_type_name", metavar="PLOT_TYPE")
@click.option("--region", "regions", multiple=True, required=True, metavar="X0,Y0,X1,Y1",
              help="A rectangle to ignore, in fractions 0..1 of width and height from the top left "
                   "(e.g. 0,0,1,0.1 for a title band); repeatable.")
@click.option("--comment", default="", help="Why (shown in the history).")
@USER_OPTION
@friendly_errors
def mask_set(plot_type_name: str, regions: tuple[str, ...], comment: str, user_name: str) -> None:
    """Replace PLOT_TYPE's mask with the given rectangles (a new version)."""
    _save(plot_type_name, _regions(regions), user_name, comment)


@mask.command("clear")
@click.argument("plot_type_name", metavar="PLOT_TYPE")
@click.option("--comment", default="", help="Why (shown in the history).")
@USER_OPTION
@friendly_errors
def mask_clear(plot_type_name: str, comment: str, user_name: str) -> None:
    """Remove PLOT_TYPE's mask (a new version with no rectangles)."""
    _save(plot_type_name, [], user_name, comment)


@mask.command("show")
@click.argument("plot_type_name", metavar="PLOT_TYPE")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@friendly_errors
def mask_show(plot_type_name: str, fmt: str) -> None:
    """PLOT_TYPE's mask versions, newest first, and which model versions were trained with each."""
    from sqlalchemy import select

    from hydra_assets import catalog
    from hydra_assets.db.models import Model
    from hydra_assets.mask_versions import mask_history

    with database().read() as s:
        plot = catalog.get_plot_type(s, plot_type_name)
        history = mask_history(s, plot.id)
        used: dict[int, list[str]] = {}
        for mask_id, key, active in s.execute(select(Model.mask_id, Model.mlflow_name + "/" + Model.mlflow_version,
                                                     Model.active).where(Model.plot_type_id == plot.id)):
            if mask_id is not None:
                used.setdefault(mask_id, []).append(key + (" (active)" if active else ""))
        rows = [{"version": m.version, "regions": m.regions, "created_at": m.created_at, "created_by": m.created_by,
                 "comment": m.comment, "models": used.get(m.id, [])} for m in history]
    if fmt == "json":
        echo_json(rows)
        return
    if not rows:
        click.echo(f"{plot_type_name} has no mask: the whole image is used")
        return
    for k, r in enumerate(rows):
        what = "; ".join(region_text(x) for x in r["regions"]) or "no rectangles (cleared)"
        click.echo(f"{'*' if k == 0 else ' '} v{r['version']:<3} {r['created_at']:%Y-%m-%d %H:%M} "
                   f"{r['created_by']:<12} {what}" + (f"  # {r['comment']}" if r["comment"] else "")
                   + (f"  models: {', '.join(r['models'])}" if r["models"] else ""))
