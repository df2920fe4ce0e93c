"""Results on the command line: `hydra inferences`, `hydra log`, `hydra classify`.

All three print the same inference record (hydra_assets.ingest.records) — JSON for scripts, a table for
people.  Only `classify` imports TensorFlow, and only once it has files to classify.  `hydra log`'s table
ends with the retraining suggestions of the window (hydra_assets.suggestions), as the Library shows them.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from hydra_assets.cli.common import EXIT_FAILED, database, friendly_errors, settings
from hydra_assets.rules import NOVEL, NOVEL_TEXT, is_novel

FORMATS = click.Choice(["table", "json", "jsonl"])
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)
UNITS = {"s": 1, "": 3600, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """`90m`, `24h`, `7d`, `2w`, `3600s` (a bare number means hours)."""
    match = DURATION.match(text)
    if not match:
        raise click.BadParameter(f"{text!r} is not a duration like 30m, 24h or 7d")
    return timedelta(seconds=float(match.group(1)) * UNITS[match.group(2).lower()])


def _novelty_cell(record: dict[str, Any]) -> str:
    """`0.12`, or `0.84 > 0.31` when above the model's limit; empty for a model without novelty."""
    score, limit = record.get("novelty"), record.get("novelty_limit")
    if score is None:
        return ""
    return f"{score:.2f} > {limit:.2f}" if is_novel(score, limit) else f"{score:.2f}"


def _keep_cell(reason: str | None) -> str:
    return NOVEL_TEXT if reason == NOVEL else (reason or "")


def _table(records: list[dict[str, Any]]) -> str:
    if not records:
        return "(no images)"
    columns = ("image", "plot_type", "run", "chunk", "label", "weight", "novelty", "confirmed", "keep", "model",
               "classified_at")
    rows = []
    for r in records:
        weight = r["weights"].get(r["label"]) if r.get("label") else None
        rows.append([
            r["image"], r["plot_type"], r["run"], r["chunk"], r["label"] or r.get("status", ""),
            "" if weight is None else f"{weight:.3f}", _novelty_cell(r), "yes" if r["confirmed"] else "no",
            _keep_cell(r["keep_reason"]), r["model"] or "-", r["classified_at"] or "",
        ])
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def emit(records: list[dict[str, Any]], fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps(records, indent=2, ensure_ascii=False))
    elif fmt == "jsonl":
        for record in records:
            click.echo(json.dumps(record, ensure_ascii=False))
    else:
        click.echo(_table(records))


@click.command()
@click.option("--run", "run", type=int, required=True, help="Experiment run number.")
@click.option("--plot-type", default=None, help="Only this plot type.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True,
              help="json: one array of objects; jsonl: one object per line.")
@friendly_errors
def inferences(run: int, plot_type: str | None, fmt: str) -> None:
    """Every image of run RUN with its latest classification (one JSON object per image)."""
    from hydra_assets.ingest.records import run_records

    db = database()
    with db.read() as s:
        records = run_records(s, run, plot_type=plot_type)
    emit(records, fmt)


@click.command("log")
@click.option("--since", default="24h", show_default=True, help="How far back: 30m, 24h, 7d …")
@click.option("--plot-type", default=None, help="Only this plot type.")
@click.option("--limit", type=int, default=None, help="At most this many, newest first.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@friendly_errors
def log(since: str, plot_type: str | None, limit: int | None, fmt: str) -> None:
    """Confirmed Bad, unconfirmed and novel images of the last 24 h (or --since): the daily brief.

    The table ends with retraining suggestions: runs where the model is out of its depth.
    """
    from hydra_assets.ingest.records import log_records
    from hydra_assets.suggestions import retraining_suggestions

    start = datetime.now(UTC).replace(tzinfo=None) - parse_duration(since)
    db = database()
    with db.read() as s:
        records = log_records(s, start, plot_type=plot_type, limit=limit)
        suggestions = retraining_suggestions(s, since=start, plot_type=plot_type) if fmt == "table" else []
    emit(records, fmt)
    if suggestions:
        click.echo("\nretraining suggestions:")
        for suggestion in suggestions:
            click.echo(f"- {suggestion.message}\n  label them: /labeler?plot_type={suggestion.plot_type}"
                       f"&run={suggestion.run}&reason={suggestion.kind}")


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--plot-type", required=True, help="Plot type whose active model classifies the files.")
@click.option("--gradcam-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write GradCAM overlays of Bad classifications here.")
@click.option("--format", "fmt", type=FORMATS, default="json", show_default=True)
@friendly_errors
def classify(files: tuple[Path, ...], plot_type: str, gradcam_dir: Path | None, fmt: str) -> None:
    """Classify FILES with the plot type's active model, offline: nothing is registered or stored.

    Exit status 1 when the model cannot be loaded; unreadable files are reported with status "error".
    """
    from hydra_assets.ingest.offline import classify_files
    from hydra_assets.ml.active import ModelLoadError

    config = settings()
    db = database(config)
    try:
        records = classify_files(db, config, plot_type, list(files), gradcam_dir=gradcam_dir)
    except ModelLoadError as error:
        click.echo(f"error: {error}", err=True)
        raise SystemExit(EXIT_FAILED) from error
    emit(records, fmt)
