"""`hydra up`: placeholder until the main-job issue — initialise and start Dagster's UI."""

from __future__ import annotations

import os
import subprocess
import sys

import click

from hydra_assets.cli.manage import initialise
from hydra_assets.cli.common import settings


@click.command()
def up() -> None:
    """Initialise the Hydra home and start Dagster's UI on the Hydra definitions."""
    config = settings()
    initialise(config)
    env = {**os.environ, "DAGSTER_HOME": str(config.dagster_home)}
    sys.exit(subprocess.call([sys.executable, "-m", "dagster", "dev", "-m", "hydra_assets.definitions"], env=env))
