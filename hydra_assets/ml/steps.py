"""What the training steps share: their refusal, progress events for in-process listeners, MLflow run tags.

The steps are one module each, named after their Dagster asset: `training_set`, `model_step` (the fit
itself is in `fit`), `thresholds_step`, `training_report`.  Each is a plain function over the Hydra
database, the settings and the tracking service, so the Dagster assets stay thin and tests call the steps
directly.  Steps hand over through the Hydra database (training set rows, the model version) and one
predictions file per model version (`predictions`) — the threshold and report steps never re-run the network.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from hydra_assets.catalog import CatalogError

log = logging.getLogger(__name__)


class TrainingRefused(CatalogError):
    """Training cannot start (not enough labels, no model, ...); the message names what is missing."""


# ---- progress ------------------------------------------------------------------------------------

ProgressListener = Callable[[str, dict[str, Any]], None]
_listeners: list[ProgressListener] = []


def add_progress_listener(listener: ProgressListener) -> Callable[[], None]:
    """Hear training events in-process (the CLI's progress bar); returns a function that stops listening."""
    _listeners.append(listener)
    return lambda: _listeners.remove(listener) if listener in _listeners else None


def emit(event: str, **data: Any) -> None:
    """Tell every listener; a listener that fails is logged and ignored."""
    for listener in _listeners:
        try:
            listener(event, data)
        except Exception:  # a broken progress bar must not fail a training
            log.debug("progress listener failed", exc_info=True)


# ---- MLflow --------------------------------------------------------------------------------------


def run_tags(plot_type: str, dagster_run_id: str, step: str, **extra: Any) -> dict[str, Any]:
    """Every step's MLflow run says which plot type, Dagster run and step it belongs to."""
    return {"plot_type": plot_type, "dagster_run_id": dagster_run_id or "none", "hydra.step": step,
            **{f"hydra.{k}": v for k, v in extra.items()}}


def metric_name(label: str) -> str:
    """MLflow metric names allow letters, digits, _ - . / and space only."""
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in label)


def csv_table(table: dict[str, list[Any]]) -> str:
    """A column table as CSV text (an MLflow artifact people open in a spreadsheet); None is an empty cell."""
    keys = list(table)
    lines = [",".join(keys)]
    for i in range(len(table[keys[0]])):
        lines.append(",".join("" if table[k][i] is None else str(table[k][i]) for k in keys))
    return "\n".join(lines) + "\n"


__all__ = ["ProgressListener", "TrainingRefused", "add_progress_listener", "csv_table", "emit", "metric_name",
           "run_tags"]
