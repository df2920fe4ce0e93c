"""The demo experiment from the command line: seeding before `hydra up` starts its services (training the
demo models through the Dagster training job) and `hydra demo-feed`, the live feeder it supervises."""

from __future__ import annotations

import json
import time

import click

from hydra_assets.cli.common import settings
from hydra_assets.db.engine import HydraDB
from hydra_assets.demo import Echo, feed, labeled_count, plot_types_without_model, seed_data
from hydra_assets.settings import HydraSettings


def train_missing(db: HydraDB, config: HydraSettings, *, echo: Echo, epochs: int | None = None) -> None:
    """Train and activate a compact model, through the Dagster training job, for each plot type lacking one.

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
        summary = train_plot_type(name, epochs=epochs, activate="always", user_name="admin", progress=True,
                                  config=config)
        with (log_folder / "demo-training.jsonl").open("a") as log:
            log.write(json.dumps(summary, default=str) + "\n")
        echo(f"  {name}: trained and activated in {time.perf_counter() - started:.0f} s")


def seed_demo(config: HydraSettings, *, per_label: int, echo: Echo, epochs: int | None = None) -> None:
    """Everything the demo needs before the services start; cached, so a second start is quick."""
    db = HydraDB(config.db_url)
    try:
        seed_data(db, config, per_label=per_label, echo=echo)
        train_missing(db, config, echo=echo, epochs=epochs)
    finally:
        db.dispose()


@click.command("demo-feed")
@click.option("--interval", type=click.FloatRange(min=0.5), default=20.0, show_default=True,
              help="Seconds between chunks.")
@click.option("--bad-fraction", type=click.FloatRange(0, 1), default=0.15, show_default=True)
@click.option("--chunks", type=click.IntRange(min=1), default=None, help="Stop after this many (default: never).")
def demo_feed(interval: float, bad_fraction: float, chunks: int | None) -> None:
    """Feed the demo experiment: a chunk of synthetic monitoring images every INTERVAL seconds."""
    feed(settings(), interval=interval, bad_fraction=bad_fraction, chunks=chunks,
         echo=lambda line: click.echo(line, err=False))
