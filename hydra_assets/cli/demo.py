"""The demo experiment from the command line: `hydra demo-setup` (the labeled history and the demo models,
trained through the Dagster training job, in the background while `hydra up`'s services already run) and
`hydra demo-feed`, the live feeder it supervises."""

from __future__ import annotations

import json
import time

import click

from hydra_assets.cli.common import settings
from hydra_assets.db.engine import HydraDB
from hydra_assets.demo import (
    ACTIVE,
    FAILED,
    TRAINING,
    Echo,
    feed,
    labeled_count,
    plot_types_without_model,
    record_progress,
    seed_data,
    seed_history,
)
from hydra_assets.settings import HydraSettings


def train_missing(db: HydraDB, config: HydraSettings, *, echo: Echo, epochs: int | None = None,
                  progress: bool = False) -> None:
    """Train and activate a compact model, through the Dagster training job, for each plot type lacking one
    (each step recorded for the pages when `progress`; a failed plot type does not stop the others then).

    The JSON summary `hydra train` would print goes to HYDRA_HOME/logs/demo-training.jsonl instead.
    """
    from hydra_assets.cli.train import train_plot_type

    log_folder = config.home / "logs"
    log_folder.mkdir(parents=True, exist_ok=True)
    for name in plot_types_without_model(db):
        if labeled_count(db, name) == 0:
            continue
        echo(f"  training {name} (compact CNN, {epochs or 'default'} epochs, through Dagster)…")
        started = time.perf_counter()
        if progress:
            record_progress(config.home, name, TRAINING, f"compact CNN, {epochs or 'default'} epochs")
        try:
            summary = train_plot_type(name, epochs=epochs, activate="always", user_name="admin", progress=True,
                                      config=config)
        except Exception as error:
            if not progress:
                raise
            record_progress(config.home, name, FAILED, f"{type(error).__name__}: {error}"[:300])
            echo(f"  {name}: training failed: {error}")
            continue
        with (log_folder / "demo-training.jsonl").open("a") as log:
            log.write(json.dumps(summary, default=str) + "\n")
        echo(f"  {name}: trained and activated in {time.perf_counter() - started:.0f} s")
        if progress:
            record_progress(config.home, name, ACTIVE, f"trained and activated in {time.perf_counter() - started:.0f} s")


def seed_demo(config: HydraSettings, *, per_label: int, echo: Echo, epochs: int | None = None) -> None:
    """Everything the demo needs before the services start; cached, so a second start is quick."""
    db = HydraDB(config.db_url)
    try:
        seed_data(db, config, per_label=per_label, echo=echo)
        train_missing(db, config, echo=echo, epochs=epochs)
    finally:
        db.dispose()


@click.command("demo-setup")
@click.option("--per-label", type=int, default=100, show_default=True,
              help="Labeled demo images per label and plot type used to train the demo models.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Training epochs (default: the topology's).")
def demo_setup(per_label: int, epochs: int | None) -> None:
    """Generate the demo's labeled history and train its models, recording each step for the pages
    (`hydra up` runs it in the background after its services are up)."""
    config = settings()
    db = HydraDB(config.db_url)
    echo: Echo = click.echo
    try:
        seed_history(db, config, per_label=per_label, echo=echo, progress=True)
        train_missing(db, config, echo=echo, epochs=epochs, progress=True)
    finally:
        db.dispose()
    echo("demo set-up done")


@click.command("demo-feed")
@click.option("--interval", type=click.FloatRange(min=0.5), default=20.0, show_default=True,
              help="Seconds between chunks.")
@click.option("--bad-fraction", type=click.FloatRange(0, 1), default=0.15, show_default=True)
@click.option("--chunks", type=click.IntRange(min=1), default=None, help="Stop after this many (default: never).")
def demo_feed(interval: float, bad_fraction: float, chunks: int | None) -> None:
    """Feed the demo experiment: a chunk of synthetic monitoring images every INTERVAL seconds."""
    feed(settings(), interval=interval, bad_fraction=bad_fraction, chunks=chunks,
         echo=lambda line: click.echo(line, err=False))
