"""`hydra init`: create or upgrade the Hydra home."""

from __future__ import annotations

import click

from hydra_assets.cli.common import friendly_errors
from hydra_assets.home import initialise


@click.command()
@friendly_errors
def init() -> None:
    """Create or upgrade the Hydra home: folders, database schema, roles, Dagster home, MLflow store.

    Safe to run again: it only adds what is missing.
    """
    summary = initialise()
    for key, value in summary.items():
        click.echo(f"{key:>12}: {value}")
