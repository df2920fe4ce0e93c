"""`hydra plot-type`: the kinds of monitoring plot, each with its labels and model."""

from __future__ import annotations

import click
from sqlalchemy import func, select

from hydra_assets import catalog
from hydra_assets.cli.common import database, echo_json, friendly_errors
from hydra_assets.db.models import Image, PlotType


@click.group("plot-type")
def plot_type() -> None:
    """Plot types: the kinds of monitoring plot, each with its labels and model."""


def _size(value: str) -> tuple[int, int]:
    try:
        parts = [int(v) for v in value.lower().replace("x", ",").split(",")]
    except ValueError as error:
        raise click.BadParameter(f"{value!r} is not a size like 128 or 128x128") from error
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2:
        raise click.BadParameter(f"{value!r} is not a size like 128 or 128x128")
    return parts[0], parts[1]


@plot_type.command("add")
@click.argument("name")
@click.option("--labels", required=True, help="Comma-separated labels in palette order, e.g. Good,Bad,NoData.")
@click.option("--bad", required=True, help="Comma-separated labels that mean trouble (alarms, GradCAM).")
@click.option("--group", "groups", multiple=True, help="Plot group (detector) to put it in; repeatable.")
@click.option("--super-group", default=None, help="Super group of the plot group(s), e.g. Tracking.")
@click.option("--collect-percent", type=float, default=5.0, show_default=True,
              help="Share of confidently Good images kept anyway for labeling.")
@click.option("--topology", default="compact", show_default=True,
              help="compact | vgg16 | inceptionv3 | module:function of your own builder.")
@click.option("--input-size", default="128", show_default=True, help="Model input, e.g. 128 or 150x200 (HxW).")
@click.option("--description", default="")
@click.option("--precision-target", type=float, default=0.95, show_default=True,
              help="With two labels: each threshold is chosen so that confirmed images are right this often "
                   "on the run-held-out validation (above 0, at most 1).")
@click.option("--novel-alarm/--no-novel-alarm", default=False, show_default=True,
              help="Raise an alarm for images unlike the training data too (they are kept for labeling anyway).")
@friendly_errors
def plot_type_add(name, labels, bad, groups, super_group, collect_percent, topology, input_size, description,  # type: ignore[no-untyped-def]
                  precision_target, novel_alarm):
    """Add plot type NAME with its labels."""
    db = database()
    plot = db.write(
        lambda s: catalog.add_plot_type(
            s, name, labels, bad, groups=groups, super_group=super_group, collect_percent=collect_percent,
            topology=topology, input_size=_size(input_size), description=description,
            precision_target=precision_target, novel_alarm=novel_alarm,
        ),
        what="add plot type",
    )
    click.echo(f"added plot type {plot.name} (id {plot.id})")


@plot_type.command("edit")
@click.argument("name")
@click.option("--precision-target", type=float, default=None,
              help="Confirmed precision the next training aims for with two labels (above 0, at most 1).")
@click.option("--novel-alarm/--no-novel-alarm", default=None,
              help="Whether images unlike the training data raise an alarm (from the next chunk).")
@click.option("--collect-percent", type=float, default=None, help="Share of confidently Good images kept anyway.")
@click.option("--description", default=None)
@click.option("--reference-alarm/--no-reference-alarm", default=None,
              help="Whether images unlike their reference raise an alarm (from the next chunk; docs/reference.md).")
@click.option("--reference-quantile", type=float, default=None,
              help="The reference limit: this quantile of the reference's own scores, e.g. 0.99 (its 1-in-100); "
                   "applies from the next reference version (hydra reference auto/set).")
@friendly_errors
def plot_type_edit(name, precision_target, novel_alarm, collect_percent, description,  # type: ignore[no-untyped-def]
                   reference_alarm, reference_quantile):
    """Change settings of plot type NAME; options not given stay as they are."""
    if (precision_target is None and novel_alarm is None and collect_percent is None and description is None
            and reference_alarm is None and reference_quantile is None):
        raise click.UsageError("nothing to change: give --precision-target, --novel-alarm/--no-novel-alarm, "
                               "--collect-percent, --description, --reference-alarm/--no-reference-alarm or "
                               "--reference-quantile")
    if reference_quantile is not None and not 0.0 < reference_quantile < 1.0:
        raise click.BadParameter(f"must be between 0 and 1 (e.g. 0.99), not {reference_quantile:g}",
                                 param_hint="--reference-quantile")
    db = database()

    def edit(s):  # type: ignore[no-untyped-def]
        plot = catalog.edit_plot_type(s, name, precision_target=precision_target, novel_alarm=novel_alarm,
                                      collect_percent=collect_percent, description=description)
        if reference_alarm is not None:
            plot.reference_alarm = bool(reference_alarm)
        if reference_quantile is not None:
            plot.reference_quantile = float(reference_quantile)
        return (plot.name, plot.precision_target, plot.novel_alarm, plot.collect_percent, plot.reference_alarm,
                plot.reference_quantile)

    plot_name, target, alarm, collect, ref_alarm, quantile = db.write(edit, what="edit plot type")
    click.echo(f"plot type {plot_name}: precision target {target:g}, novel alarm {'on' if alarm else 'off'}, "
               f"collect {collect:g} %, reference alarm {'on' if ref_alarm else 'off'}, reference quantile "
               f"{quantile:g}")


@plot_type.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@friendly_errors
def plot_type_list(fmt: str) -> None:
    """List plot types with labels and counts of labeled images."""
    db = database()
    with db.read() as s:
        rows = []
        for plot in s.scalars(select(PlotType).order_by(PlotType.name)):
            labeled = s.scalar(select(func.count(Image.id)).where(Image.plot_type_id == plot.id,
                                                                  Image.label_id.is_not(None)))
            rows.append({
                "plot_type": plot.name,
                "labels": [lab.name for lab in plot.labels],
                "bad": [lab.name for lab in plot.labels if lab.is_bad],
                "topology": plot.topology,
                "input_size": [plot.input_height, plot.input_width],
                "collect_percent": plot.collect_percent,
                "precision_target": plot.precision_target,
                "novel_alarm": bool(plot.novel_alarm),
                "groups": [g.name for g in plot.groups],
                "labeled_images": labeled,
            })
    if fmt == "json":
        echo_json(rows)
        return
    if not rows:
        click.echo("no plot types yet: hydra plot-type add NAME --labels Good,Bad --bad Bad")
    for r in rows:
        click.echo(f"{r['plot_type']:<28} labels={','.join(r['labels'])} bad={','.join(r['bad'])} "
                   f"topology={r['topology']} labeled={r['labeled_images']}")
