"""`hydra label`: import human labels from labeled folders."""

from __future__ import annotations

from pathlib import Path

import click

from hydra_assets.cli.common import database, friendly_errors, settings


@click.group()
def label() -> None:
    """Human labels: import labeled folders, audit likely mislabeled ones."""


@label.command("import")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--plot-type", "plot_type_name", required=True, help="Plot type the images belong to.")
@click.option("--user", "user_name", default=None, help="Record the labels as this user's.")
@friendly_errors
def label_import(folder: Path, plot_type_name: str, user_name: str | None) -> None:
    """Import FOLDER/<label>/*.png as labeled images of a plot type.

    Every file is checked before anything is written: a folder that is not a label of the plot type or
    an unreadable image stops the import with a message naming it, and nothing is stored.
    """
    from hydra_assets.label_import import import_labeled_folder

    config = settings()
    db = database(config)
    result = import_labeled_folder(db, config, folder, plot_type_name, user_name=user_name)
    click.echo(f"imported {result.new_images} new image(s), {result.relabeled} label change(s), "
               f"{result.unchanged} unchanged, for {plot_type_name}: " +
               ", ".join(f"{k}={v}" for k, v in sorted(result.per_label.items())))


@label.command("audit")
@click.argument("plot_type_name")
@click.option("--recompute", is_flag=True, help="Judge the labels as they are now again (answered checks stay).")
@click.option("--version", default=None, help="A model version other than the active one.")
@click.option("--show", "show", default=10, show_default=True, help="List this many of the queue's first images.")
@friendly_errors
def label_audit_command(plot_type_name: str, recompute: bool, version: str | None, show: int) -> None:
    """Likely mislabeled images of a plot type (the Labeler's audit queue), from the active version's
    out-of-fold predictions; training computes them, --recompute does it again (docs/labeling-queues.md)."""
    from hydra_assets import catalog, label_audit
    from hydra_assets.db.models import Label
    from hydra_assets.tracking import TrackingService

    config = settings()
    db = database(config)
    result = label_audit.audit_model(db, config, TrackingService.from_settings(config), plot_type_name,
                                     recompute=recompute, version=version)
    click.echo(result.message)
    with db.read() as s:
        plot = catalog.get_plot_type(s, plot_type_name)
        names = {lab.id: lab.name for lab in s.query(Label).filter(Label.plot_type_id == plot.id)}
        for check in label_audit.open_checks(s, plot.id, limit=show):
            click.echo(f"  image {check.image_id}: labeled {names.get(check.given_label_id, '?')}, "
                       f"suggested {names.get(check.suggested_label_id, '?')} "
                       f"(weight of the given label {check.self_confidence:.2f})")
