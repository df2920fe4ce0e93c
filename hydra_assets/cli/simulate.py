"""`hydra simulate`: synthetic monitoring plots into the incoming folder, or labeled training sets."""

from __future__ import annotations

import time
from pathlib import Path

import click

from hydra_assets.settings import SettingsError, load_settings
from hydra_assets.simulate.content import FAILURE_MODES
from hydra_assets.simulate.drift import DRIFTS, run_condition
from hydra_assets.simulate.experiment import (
    CHUNK_MANIFEST,
    DEMO_PLOT_TYPES,
    LABELED_MANIFEST,
    PLOT_TYPE_NAMES,
    SimulationError,
    label_of,
    write_chunk,
    write_labeled,
)

DEFAULT_FIRST_RUN = 120000
LIVE_OPTIONS = {"first_run": "--run", "runs": "--runs", "chunks": "--chunks", "images_per_chunk": "--images-per-chunk",
                "bad_fraction": "--bad-fraction", "out": "--out", "interval": "--interval", "drift": "--drift"}


def parse_plot_types(value: str) -> list[str]:
    """`all` or comma-separated plot type names, refusing unknown names with the list of known ones."""
    if value.strip().lower() == "all":
        return list(PLOT_TYPE_NAMES)
    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        raise click.BadParameter("give `all` or comma-separated plot type names", param_hint="--plot-types")
    unknown = [n for n in names if n not in PLOT_TYPE_NAMES]
    if unknown:
        raise click.BadParameter(f"unknown plot type(s) {', '.join(unknown)}; known: {', '.join(PLOT_TYPE_NAMES)}",
                                 param_hint="--plot-types")
    return list(dict.fromkeys(names))


def _explicit(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT)


def _list_plot_types() -> None:
    for spec in DEMO_PLOT_TYPES:
        click.echo(f"{spec.name:<18} {spec.super_group + '/' + spec.group:<17} labels={','.join(spec.labels)} "
                   f"bad={','.join(spec.bad)}")
        click.echo(f"{'':<18} {spec.description}")
        for failure in spec.failures:
            click.echo(f"{'':<20}{failure:<15} -> {label_of(failure):<7} {FAILURE_MODES[failure].description}")


@click.command()
@click.option("--run", "first_run", type=click.IntRange(min=0), default=DEFAULT_FIRST_RUN, show_default=True,
              help="First run number.")
@click.option("--runs", type=click.IntRange(min=1), default=1, show_default=True, help="Consecutive runs to write.")
@click.option("--chunks", type=click.IntRange(min=1), default=10, show_default=True, help="Chunks per run.")
@click.option("--images-per-chunk", type=click.IntRange(min=1), default=None,
              help="Plot types imaged in each chunk (at most one file per plot type, run and chunk). "
                   "Default: every selected plot type; fewer picks a seeded subset per chunk.")
@click.option("--bad-fraction", type=click.FloatRange(0.0, 1.0), default=0.1, show_default=True,
              help="Chance that an image shows a failure (its plot type's failure modes, drawn evenly).")
@click.option("--drift", type=click.Choice(DRIFTS), default="none", show_default=True,
              help="Run-to-run condition changes: `realistic` keeps the first 6 runs nominal, then cycles gain "
                   "shifts, occupancy changes, a new (Good) beam setting and a slow degradation that turns Bad; "
                   "each record names its condition. See docs/simulate.md.")
@click.option("--plot-types", "plot_types", default="all", show_default=True,
              help="`all` or comma-separated names (see --list).")
@click.option("--seed", type=int, default=None, help="Experiment seed. Default: HYDRA_SEED (12345).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for live chunks. Default: the incoming folder watched by the file sensor.")
@click.option("--interval", type=click.FloatRange(min=0.0), default=0.0, show_default=True,
              help="Seconds to wait between chunks, to feed a running pipeline like a live run.")
@click.option("--labeled", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write a balanced training set DIR/<plot_type>/<label>/*.png instead of live chunks.")
@click.option("--per-label", type=click.IntRange(min=1), default=None,
              help="Images per label and plot type for --labeled.  [default: 100]")
@click.option("--list", "list_only", is_flag=True, help="List plot types, labels and failure modes, then stop.")
@click.option("--quiet", is_flag=True, help="No progress lines, only the summary.")
@click.pass_context
def simulate(ctx: click.Context, first_run: int, runs: int, chunks: int, images_per_chunk: int | None,
             bad_fraction: float, drift: str, plot_types: str, seed: int | None, out: Path | None, interval: float,
             labeled: Path | None, per_label: int | None, list_only: bool, quiet: bool) -> None:
    """Synthetic detector monitoring plots with known truth (the demo experiment).

    \b
    Live chunks (default): for each run and chunk, one PNG per plot type named
    <plot_type>-<run>-<chunk:04d>.png, written to a hidden temporary name and renamed, into the incoming
    folder (or --out). The truth of every image (label, failure mode, defect pixel box, seed) is appended
    to the hidden file .manifest.jsonl in that folder.
      hydra simulate --run 121000 --runs 2 --chunks 20 --bad-fraction 0.2
      hydra simulate --run 121000 --runs 16 --chunks 20 --drift realistic

    \b
    Training sets (--labeled DIR): DIR/<plot_type>/<label>/*.png with a .json side-car per image and
    DIR/<plot_type>/manifest.jsonl; import each plot type with
      hydra label import DIR/<plot_type> --plot-type <plot_type>
      hydra simulate --labeled /tmp/train --per-label 300 --plot-types CDC_timing,FDC_occupancy

    Labels: Good; Bad for every failure mode except an empty plot, which is NoData. The same seed and
    options give the same images.
    """
    if list_only:
        _list_plot_types()
        return
    names = parse_plot_types(plot_types)
    if labeled is None and per_label is not None:
        raise click.UsageError("--per-label only applies to --labeled DIR")
    if labeled is not None:
        clashing = [option for name, option in LIVE_OPTIONS.items() if _explicit(ctx, name)]
        if clashing:
            raise click.UsageError(f"{', '.join(clashing)} apply to live chunks, not to --labeled training sets")
    if images_per_chunk is not None and images_per_chunk > len(names):
        raise click.BadParameter(f"{images_per_chunk} is more than the {len(names)} selected plot type(s); a chunk "
                                 "holds at most one image per plot type", param_hint="--images-per-chunk")
    try:
        config = load_settings() if seed is None or (out is None and labeled is None) else None
    except SettingsError as error:
        raise click.ClickException(str(error)) from error
    seed = seed if seed is not None else config.seed  # type: ignore[union-attr]
    try:
        if labeled is not None:
            _write_training_set(labeled, names, per_label or 100, seed, quiet)
        else:
            folder = out if out is not None else config.input_dir  # type: ignore[union-attr]
            _write_live(folder, names, first_run, runs, chunks, images_per_chunk, bad_fraction, seed, interval, quiet,
                        drift)
    except SimulationError as error:
        raise click.UsageError(str(error)) from error
    except OSError as error:
        raise click.ClickException(f"cannot write: {error}") from error


def _write_live(folder: Path, names: list[str], first_run: int, runs: int, chunks: int,
                images_per_chunk: int | None, bad_fraction: float, seed: int, interval: float, quiet: bool,
                drift: str = "none") -> None:
    started, written, bad = time.perf_counter(), 0, 0
    total = runs * chunks
    for number, (run, chunk) in enumerate(((r, c) for r in range(first_run, first_run + runs)
                                           for c in range(chunks)), start=1):
        if number > 1 and interval:
            time.sleep(interval)
        if drift != "none" and chunk == 0 and not quiet:
            conditions = [f"{n} {run_condition(drift, n, run, first_run=first_run, seed=seed).name}"  # type: ignore[union-attr]
                          for n in names]
            click.echo(f"run {run}: {', '.join(conditions)}", err=True)
        records = write_chunk(folder, run=run, chunk=chunk, plot_types=names, bad_fraction=bad_fraction, seed=seed,
                              images_per_chunk=images_per_chunk, drift=drift, first_run=first_run)
        failures = [f"{r['plot_type']} ({r['failure'] or r.get('condition')})" for r in records
                    if r["label"] != "Good"]
        written, bad = written + len(records), bad + len(failures)
        if not quiet:
            click.echo(f"[{number}/{total}] run {run} chunk {chunk:04d}: {len(records)} image(s)"
                       + (f", failing: {', '.join(failures)}" if failures else ""), err=True)
    elapsed = time.perf_counter() - started
    click.echo(f"wrote {written} image(s), {bad} failing, to {folder} in {elapsed:.1f} s "
               f"({1000 * elapsed / max(written, 1):.0f} ms/image); truth in {folder / CHUNK_MANIFEST}")


def _write_training_set(folder: Path, names: list[str], per_label: int, seed: int, quiet: bool) -> None:
    started = time.perf_counter()

    def progress(plot_type: str, done: int, total: int) -> None:
        if not quiet and (done == total or done % max(total // 10, 1) == 0):
            click.echo(f"{plot_type}: {done}/{total}", err=True)

    counts = write_labeled(folder, plot_types=names, per_label=per_label, seed=seed, progress=progress)
    elapsed = time.perf_counter() - started
    written = sum(sum(per.values()) for per in counts.values())
    click.echo(f"wrote {written} labeled image(s) to {folder} in {elapsed:.1f} s "
               f"({1000 * elapsed / max(written, 1):.0f} ms/image)")
    for name, per in counts.items():
        click.echo(f"  {name:<18} {', '.join(f'{label}={n}' for label, n in per.items())}; "
                   f"truth in {folder / name / LABELED_MANIFEST}")
    click.echo("import with:")
    for name in counts:
        click.echo(f"  hydra label import {folder / name} --plot-type {name}")
