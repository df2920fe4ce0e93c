"""The thresholds step: each label's max-F1 threshold on the validation set, and whether to activate the version.

The thresholds come from the predictions the fit recorded (`predictions`); activation `if_better` compares
the new version with the active one on the same validation images (`_beats_active`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from hydra_assets import catalog
from hydra_assets.db.models import Image, Model
from hydra_assets.ml import evaluation
from hydra_assets.ml.active import ModelLoadError, load_active_model
from hydra_assets.ml.fit import load_images, predict
from hydra_assets.ml.model_step import latest_trained_model
from hydra_assets.ml.predictions import Predictions, load_predictions
from hydra_assets.ml.registry import activate_model, store_thresholds
from hydra_assets.ml.steps import TrainingRefused, csv_table, emit, metric_name, run_tags
from hydra_assets.ml.thresholds import evaluate_at_thresholds, select_thresholds
from hydra_assets.rules import DEFAULT_THRESHOLD, decided_index

if TYPE_CHECKING:
    from hydra_assets.db.engine import HydraDB
    from hydra_assets.settings import HydraSettings
    from hydra_assets.tracking import TrackingService

ACTIVATION = ("never", "if_better", "always")


@dataclass
class ThresholdsResult:
    model_id: int
    model_key: str
    thresholds: dict[str, float]
    f1: dict[str, float | None]
    validation: dict[str, Any]
    activated: bool
    activation_reason: str
    mlflow_run_id: str


def _macro_f1(report: dict[str, dict[str, Any]]) -> float:
    values = [r["f1"] for r in report.values() if r["support"]]
    return float(np.mean([v or 0.0 for v in values])) if values else 0.0


def _summary(weights: np.ndarray, true_index: np.ndarray, label_names: list[str], thresholds: dict[str, float],
             bad: list[str]) -> dict[str, Any]:
    per_label = evaluate_at_thresholds(weights, true_index, label_names, thresholds)
    bad_rows = [per_label[n] for n in label_names if n in bad and per_label[n]["support"]]
    bad_tp = sum(round((r["recall"] or 0) * r["support"]) for r in bad_rows)
    bad_support = sum(r["support"] for r in bad_rows)
    top = weights.argmax(axis=1) if len(weights) else np.zeros(0, dtype=int)
    return {
        "images": len(weights),
        "accuracy": float(np.mean(top == true_index)) if len(weights) else None,
        "macro_f1": _macro_f1(per_label),
        "bad_recall": bad_tp / bad_support if bad_support else None,
        "per_label": per_label,
    }


def thresholds_step(
    db: HydraDB,
    config: HydraSettings,
    tracking: TrackingService,
    plot_type: str,
    *,
    activate: str = "never",
    user: str = "training",
    dagster_run_id: str = "",
) -> ThresholdsResult:
    """Choose each label's max-F1 threshold on the validation set, store them, maybe activate the model.

    `activate`: never; always; if_better — when the new version beats the active one (mean per-label F1
    at each model's own thresholds) on the new validation set, or no model is active.
    """
    import mlflow

    if activate not in ACTIVATION:
        raise TrainingRefused(f"activate must be one of {', '.join(ACTIVATION)}, not {activate!r}")
    with db.read() as s:
        plot = catalog.get_plot_type(s, plot_type)
        model = latest_trained_model(s, plot.id)
        if model is None:
            raise TrainingRefused(f"plot type {plot_type} has no trained model yet; materialise model first")
        bad = [lab.name for lab in catalog.labels_of(s, plot) if lab.is_bad]
        s.expunge(model)
    predictions = load_predictions(config, tracking, model)
    val = predictions.of("validation")
    names = predictions.label_names
    chosen = select_thresholds(val.weights, val.true_index, names, bad_labels=bad)
    values = {n: t.threshold for n, t in chosen.items()}
    summary = _summary(val.weights, val.true_index, names, values, bad)
    db.write(lambda s: store_thresholds(s, s.get(Model, model.id), {n: (t.threshold, t.f1) for n, t in chosen.items()},
                                        by="training"), what="store thresholds")

    def record_metrics(session: Session) -> None:
        row = session.get(Model, model.id)
        row.metrics = {**(row.metrics or {}), "validation": summary}

    db.write(record_metrics, what="record validation metrics")

    activated, reason = False, "not requested"
    if activate == "always":
        activated, reason = True, "requested"
    elif activate == "if_better":
        activated, reason = _beats_active(db, config, plot_type, model, val, summary, bad)
    with tracking.start_run(run_name=f"{plot_type} thresholds {model.key}", parent_run_id=model.mlflow_run_id,
                            tags=run_tags(plot_type, dagster_run_id, "thresholds", model=model.key)) as run:
        run_id = run.info.run_id
        mlflow.log_params({"model": model.key, "n_validation": len(val.weights), "activate": activate})
        flat = {"val_accuracy": summary["accuracy"], "val_macro_f1": summary["macro_f1"],
                "val_bad_recall": summary["bad_recall"]}
        for name, row in summary["per_label"].items():
            for key in ("precision", "recall", "f1"):
                flat[f"{key}_{metric_name(name)}"] = row[key]
            flat[f"threshold_{metric_name(name)}"] = values[name]
        mlflow.log_metrics({k: float(v) for k, v in flat.items() if v is not None})
        table = {"label": names, "threshold": [values[n] for n in names], "f1": [chosen[n].f1 for n in names],
                 "precision": [summary["per_label"][n]["precision"] for n in names],
                 "recall": [summary["per_label"][n]["recall"] for n in names],
                 "support": [summary["per_label"][n]["support"] for n in names]}
        mlflow.log_table(table, "thresholds.json")
        mlflow.log_text(csv_table(table), "thresholds.csv")
        decided = decided_index(val.weights, names, values)
        matrix = evaluation.confusion(val.true_index, decided, len(names))
        tracking.log_figure(run_id, evaluation.confusion_figure(matrix, names,
                                                                title=f"{plot_type} validation at thresholds"),
                            "plots/confusion_matrix.png")
        tracking.log_figure(run_id, evaluation.enhanced_confusion_figure(
            val.weights, val.true_index, names, thresholds=values,
            title=f"{plot_type} {model.key}: weight histograms (dashed: threshold)"),
            "plots/enhanced_confusion_matrix.png")
        mlflow.set_tag("activation", f"{activated}: {reason}")
    # The model's own run shows the thresholds table too, beside its curves.
    tracking.client.log_text(model.mlflow_run_id, csv_table(table), "thresholds.csv")
    if activated:
        activate_model(db, config, plot_type, model.mlflow_version, user, reason=reason)
    emit("thresholds", thresholds=values, activated=activated)
    return ThresholdsResult(model.id, model.key, values, {n: t.f1 for n, t in chosen.items()}, summary, activated,
                            reason, run_id)


def _beats_active(db: HydraDB, config: HydraSettings, plot_type: str, model: Model, val: Predictions,
                  summary: dict[str, Any], bad: list[str]) -> tuple[bool, str]:
    """Whether the new version's mean per-label F1 beats the active one's, each at its own thresholds."""
    try:
        active = load_active_model(db, config, plot_type)
    except ModelLoadError as error:
        return True, f"the active model cannot be loaded ({error})"
    if active is None:
        return True, "no model was active"
    if active.model_id == model.id:
        return False, "already active"
    with db.read() as s:
        paths = dict(s.execute(select(Image.id, Image.stored_path).where(Image.id.in_(val.image_id.tolist()))).all())
    images = load_images([paths[int(i)] for i in val.image_id], active.input_size)
    theirs = predict(active.keras_model, images, active.input_size)
    # Re-index the human labels into the active model's output order; labels it lacks count as misses.
    mapping = {k: (active.label_names.index(n) if n in active.label_names else -1)
               for k, n in enumerate(val.label_names)}
    true_theirs = np.array([mapping[int(t)] for t in val.true_index])
    thresholds = {n: active.thresholds.get(n, DEFAULT_THRESHOLD) for n in active.label_names}
    their_summary = _summary(theirs, true_theirs, active.label_names, thresholds, bad)
    ours, old = summary["macro_f1"], their_summary["macro_f1"]
    if ours > old:
        return True, f"macro F1 {ours:.4f} beats active {active.key} ({old:.4f}) on the same validation set"
    return False, f"macro F1 {ours:.4f} does not beat active {active.key} ({old:.4f})"


__all__ = ["ACTIVATION", "ThresholdsResult", "thresholds_step"]
