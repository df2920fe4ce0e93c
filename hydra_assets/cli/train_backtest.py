"""`hydra train … --backtest-runs A-B`: train, backtest the new version on stored runs, offer activation.

The runs are checked before training (no images there: refused, nothing trained).  After training the new
version is backtested through the same Dagster job as ``hydra model backtest --wait`` (each run's
partition in this process, visible in the Dagster UI), then the command prints the report and what
activation would say, with the command that activates it.  The Library's suggested-training action runs
this command in the background (hydra_assets/training_suggestion.py).
"""

from __future__ import annotations

import time
from typing import Any

import click

from hydra_assets.catalog import CatalogError


def check_runs(db, plot_type: str, runs: str, activate: str = "never") -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """Refuse, before anything is trained, runs written wrongly or without stored images, and activation
    before the backtest (the backtest compares the new version with the active one)."""
    from hydra_assets import catalog
    from hydra_assets.backtest import count_images, parse_runs

    if activate != "never":
        raise CatalogError("--backtest-runs offers activation after the backtest: train with --no-activate and "
                           "activate with hydra model activate once the backtest looks right")
    first, last = parse_runs(runs)
    with db.read() as s:
        plot = catalog.get_plot_type(s, plot_type)
        if count_images(s, plot.id, first, last) == 0:
            raise CatalogError(f"--backtest-runs {runs}: plot type {plot_type} has no stored images in runs "
                               f"{first}-{last}; nothing trained")
    return first, last


def backtest_new_version(config, db, plot_type: str, version: str, runs: str, user: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Backtest the freshly trained version here and say what activating it would mean."""
    from hydra_assets.backtest import (
        activation_notes,
        claim,
        describe_backtest,
        fail,
        find_candidate,
        report_lines,
        request_backtest,
    )
    from hydra_assets.cli.backtest import dagster_instance
    from hydra_assets.db.models import Backtest
    from hydra_assets.jobs.backtest import run_in_process

    request = request_backtest(db, config, plot_type, version, runs, user)
    claim(db, request.id, backfill_id="", how="in the process of hydra train --backtest-runs")
    click.echo(f"backtest {request.id}: {request.candidate} vs {request.active or '(no active model)'} on "
               f"{request.n_images} images of {len(request.runs)} runs", err=True)
    started = time.perf_counter()
    result = run_in_process(dagster_instance(config), config, request.id, request.runs)
    if result.failed:
        fail(db, request.id, "; ".join(result.failed[:5]))
    with db.read() as s:
        shown = describe_backtest(s, s.get(Backtest, request.id))
        notes = activation_notes(s, find_candidate(s, plot_type, version))
    for line in report_lines(shown["report"]):
        click.echo(line, err=True)
    for note in notes:
        click.echo(("WARNING: " + note[len("warning: "):]) if note.startswith("warning: ") else note, err=True)
    click.echo(f"to activate it: hydra model activate {plot_type} {version}", err=True)
    return {"id": request.id, "status": shown["status"], "message": shown["message"],
            "seconds": round(time.perf_counter() - started, 1), "dagster_runs": len(result.run_ids),
            "activation_notes": notes}
