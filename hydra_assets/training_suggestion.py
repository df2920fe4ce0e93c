"""Suggested training: when a plot type's model version is behind its labels, say so, and train, backtest
and offer activation in one action (docs/labeling-queues.md).

A version is behind when, since it was trained, experts stored at least max(`MIN_NEW_LABELS`,
`NEW_SHARE` x its training set) labels on images of its plot type, or the audit fixed a label of an image
in its training set (it learned that label wrong).  The Library shows the suggestion with one action; it
starts ``hydra train T --no-activate --backtest-runs A-B`` in the background (the same Dagster training job
and backtest as the command line), so the new version appears in the Library with its backtest, and its
Activate button says what the backtest found.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from hydra_assets.db.models import Image, LabelHistory, Model, TrainingSetItem, utcnow

if TYPE_CHECKING:
    from hydra_assets.settings import HydraSettings

MIN_NEW_LABELS = 50  # fewer new labels rarely change a model
NEW_SHARE = 0.20  # ... or a fifth of what the version trained on, when that is more
RECENT_RUNS = 10  # the backtest runs offered by default: the newest runs with images
AUDIT_SOURCE = "audit"  # label history source of an audit fix (hydra_assets/label_audit.py)


@dataclass(frozen=True)
class TrainingSuggestion:
    plot_type: str
    model_key: str
    trained_at: datetime
    training_set_size: int
    new_labels: int
    needed: int  # new labels that make a retraining worth it
    fixed_in_training_set: int  # audit fixes of images the version trained on
    backtest_runs: str  # "A-B": the newest runs with images, offered for the backtest

    @property
    def message(self) -> str:
        reasons = []
        if self.new_labels >= self.needed:
            reasons.append(f"{self.new_labels} new label(s) since {self.model_key} was trained on "
                           f"{self.training_set_size} images")
        if self.fixed_in_training_set:
            reasons.append(f"the audit fixed {self.fixed_in_training_set} label(s) it was trained on")
        return f"{self.plot_type}: {' and '.join(reasons)}; train a new version, backtest it and decide"


def labels_needed(training_set_size: int) -> int:
    """New labels that make retraining worth it: max(50, 20 % of the training set)."""
    return max(MIN_NEW_LABELS, math.ceil(NEW_SHARE * max(0, training_set_size)))


def is_behind(new_labels: int, training_set_size: int, fixed_in_training_set: int) -> bool:
    """Pure rule: enough new labels, or a label the version trained on was fixed by the audit."""
    return new_labels >= labels_needed(training_set_size) or fixed_in_training_set > 0


def reference_version(session: Session, plot_type_id: int) -> Model | None:
    """The version suggestions compare with: the active one, else the newest one Hydra trained."""
    active = session.scalar(select(Model).where(Model.plot_type_id == plot_type_id, Model.active.is_(True)))
    if active is not None:
        return active
    return session.scalar(select(Model).where(Model.plot_type_id == plot_type_id, Model.training_set_id.is_not(None))
                          .order_by(Model.id.desc()).limit(1))


def new_labels_since(session: Session, plot_type_id: int, since: datetime) -> int:
    """Images of the plot type that got a label (not an erase) since `since`, each counted once."""
    return int(session.scalar(
        select(func.count(distinct(LabelHistory.image_id))).join(Image, Image.id == LabelHistory.image_id)
        .where(Image.plot_type_id == plot_type_id, LabelHistory.labeled_at > since,
               LabelHistory.label_id.is_not(None), Image.label_id.is_not(None))) or 0)


def fixed_in_training_set(session: Session, model: Model) -> int:
    """Images of the version's training set whose label the audit fixed since it was trained."""
    if model.training_set_id is None:
        return 0
    members = select(TrainingSetItem.image_id).where(TrainingSetItem.training_set_id == model.training_set_id)
    return int(session.scalar(
        select(func.count(distinct(LabelHistory.image_id))).where(
            LabelHistory.source == AUDIT_SOURCE, LabelHistory.labeled_at > model.created_at,
            LabelHistory.image_id.in_(members))) or 0)


def recent_runs(session: Session, plot_type_id: int, count: int = RECENT_RUNS) -> str:
    """"A-B" spanning the newest `count` runs with stored images of the plot type ("" when none)."""
    runs = list(session.scalars(select(distinct(Image.run_number)).where(
        Image.plot_type_id == plot_type_id, Image.run_number.is_not(None))
        .order_by(Image.run_number.desc()).limit(count)))
    return f"{min(runs)}-{max(runs)}" if runs else ""


def suggest_training(session: Session, plot_type_id: int, plot_type: str) -> TrainingSuggestion | None:
    """The plot type's suggestion, or None when its version is up to date (or it has none yet)."""
    model = reference_version(session, plot_type_id)
    if model is None or model.training_set_id is None:
        return None
    new = new_labels_since(session, plot_type_id, model.created_at)
    fixed = fixed_in_training_set(session, model)
    if not is_behind(new, model.training_set_size, fixed):
        return None
    return TrainingSuggestion(plot_type, model.key, model.created_at, model.training_set_size, new,
                              labels_needed(model.training_set_size), fixed, recent_runs(session, plot_type_id))


def training_command(plot_type: str, backtest_runs: str, user: str) -> list[str]:
    """The `hydra train` arguments the Library's action runs (the command line does the same)."""
    return ["train", plot_type, "--no-activate", "--backtest-runs", backtest_runs, "--user", user, "--no-progress"]


def start_training(config: HydraSettings, plot_type: str, backtest_runs: str, user: str) -> tuple[int, Path]:
    """Start `hydra train … --backtest-runs` in the background against this installation; (pid, log file).

    Detached (a page session ends long before training does); its output goes to
    ``<home>/run/train-<plot type>-<time>.log``.  The caller checks the permission and validates the runs."""
    folder = Path(config.home) / "run"
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / f"train-{plot_type}-{utcnow():%Y%m%dT%H%M%S}.log"
    argv = [sys.executable, "-c", "from hydra_assets.cli import main; main()",
            *training_command(plot_type, backtest_runs, user)]
    env = {"HYDRA_HOME": str(config.home), "HYDRA_DB_URL": str(config.db_url),
           "HYDRA_MLFLOW_TRACKING_URI": str(config.mlflow_tracking_uri)}
    with log_path.open("ab") as out:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True, env={**os.environ, **env})
    return process.pid, log_path


__all__ = ["MIN_NEW_LABELS", "NEW_SHARE", "TrainingSuggestion", "fixed_in_training_set", "is_behind",
           "labels_needed", "new_labels_since", "recent_runs", "reference_version", "start_training",
           "suggest_training", "training_command"]
