"""`hydra label`: import human labels from labeled folders."""

from __future__ import annotations

from pathlib import Path

import click

from hydra_assets.cli.common import database, friendly_errors, settings


@click.group()
def label() -> None:
    """Human labels: import labeled folders."""


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
