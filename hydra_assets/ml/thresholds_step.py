"""The thresholds step: each label's threshold on the run-held-out validation, and whether to activate the version.

The thresholds come from the predictions the fit recorded (`predictions`): the registered model on the
held-out runs, or the out-of-fold predictions under cross-validation over runs — never images of a run the
predicting model trained on.  Each label's threshold is its max-F1 cut raised to reach the plot type's
precision target (`thresholds`).  With one labeled run no held-out prediction exists: the thresholds are
then chosen on the training images themselves and raised to at least `SINGLE_RUN_FLOOR`, and every figure
carries a warning.  Activation `if_better` compares the new version with the active one on the same
run-held-out images (`_beats_active`).

`Model.metrics["validation"]` records how the figures were obtained (split, runs, per-run figures) and
honest warnings: few validation runs, few Bad images, a perfect score that proves little.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from hydra_assets import catalog
from hydra_assets.db.models import Image, Model, TrainingSet
from hydra_assets.ml import evaluation
from hydra_assets.ml.active import ModelLoadError, load_active_model
from hydra_assets.ml.fit import load_images, predict
from hydra_assets.ml.model_step import latest_trained_model
from hydra_assets.ml.predictions import Predictions, load_predictions
from hydra_assets.ml.registry import activate_model, store_thresholds
from hydra_assets.ml.steps import TrainingRefused, csv_table, emit, metric_name, run_tags
from hydra_assets.ml.thresholds import NEVER_CONFIRMS, evaluate_at_thresholds, select_thresholds
from hydra_assets.ml.training_set import SPLIT_RUNS, SPLIT_SINGLE_RUN
from hydra_assets.rules import DEFAULT_THRESHOLD, decided_index

if TYPE_CHECKING:
    from hydra_assets.db.engine import HydraDB
    from hydra_assets.settings import HydraSettings
    from hydra_assets.tracking import TrackingService

log = logging.getLogger(__name__)
ACTIVATION = ("never", "if_better", "always")
DEFAULT_PRECISION = 0.95  # a plot type without a precision target
SINGLE_RUN_FLOOR = 0.9  # one labeled run: thresholds from in-sample predictions, never below this
MIN_VALIDATION_RUNS = 3  # fewer: a warning that validation says little about the next run
MIN_VALIDATION_BAD = 10  # fewer Bad validation images: a warning that Bad recall rests on too few


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
    """Accuracy (top label), macro F1 and Bad recall of the decided label, per label figures, unconfirmed share."""
    per_label = evaluate_at_thresholds(weights, true_index, label_names, thresholds)
    bad_rows = [per_label[n] for n in label_names if n in bad and per_label[n]["support"]]
    bad_tp = sum(round((r["recall"] or 0) * r["support"]) for r in bad_rows)
    bad_support = sum(r["support"] for r in bad_rows)
    top = weights.argmax(axis=1) if len(weights) else np.zeros(0, dtype=int)
    decided = decided_index(weights, label_names, thresholds) if len(weights) else np.zeros(0, dtype=int)
    return {
        "images": len(weights),
        "accuracy": float(np.mean(top == true_index)) if len(weights) else None,
        "macro_f1": _macro_f1(per_label),
        "bad_recall": bad_tp / bad_support if bad_support else None,
        "per_label": per_label,
        "unconfirmed_rate": float(np.mean(decided < 0)) if len(weights) else None,
    }


def per_run_figures(weights: np.ndarray, true_index: np.ndarray, runs: np.ndarray, label_names: list[str],
                    thresholds: dict[str, float], bad: list[str]) -> dict[str, dict[str, Any]]:
    """Per validation run: images, Bad images (counts); accuracy (top label), Bad recall, false alarms (share
    of its not-Bad images confirmed as a Bad label) and unconfirmed (share), at `thresholds`."""
    decided = decided_index(weights, label_names, thresholds) if len(weights) else np.zeros(0, dtype=int)
    top = weights.argmax(axis=1) if len(weights) else np.zeros(0, dtype=int)
    is_bad = np.array([label_names[int(t)] in bad for t in true_index], dtype=bool)
    decided_bad = np.array([d >= 0 and label_names[int(d)] in bad for d in decided], dtype=bool)
    out: dict[str, dict[str, Any]] = {}
    for run in sorted(set(np.asarray(runs).tolist())):
        at = np.asarray(runs) == run
        n_bad, n_good = int(np.sum(at & is_bad)), int(np.sum(at & ~is_bad))
        out[str(run)] = {
            "images": int(at.sum()),
            "bad": n_bad,
            "accuracy": float(np.mean(top[at] == true_index[at])),
            "bad_recall": float(np.sum(at & is_bad & (decided == true_index)) / n_bad) if n_bad else None,
            "false_alarms": float(np.sum(at & ~is_bad & decided_bad) / n_good) if n_good else None,
            "unconfirmed": float(np.mean(decided[at] < 0)),
        }
    return out


def validation_warnings(summary: dict[str, Any], *, split: str, n_runs: int, bad_images: int,
                        precision_target: float, never_confirms: list[str]) -> list[str]:
    """What the validation figures cannot promise, in words, instead of a reassuring 1.000."""
    warnings: list[str] = []
    if split == SPLIT_SINGLE_RUN:
        warnings.append(f"no run-held-out validation (one labeled run): thresholds were chosen on the training "
                        f"images themselves and raised to at least {SINGLE_RUN_FLOOR}; every figure here is "
                        "in-sample and says nothing about another run")
    elif n_runs < MIN_VALIDATION_RUNS:
        warnings.append(f"validation holds only {n_runs} run(s): figures from so few runs say little about the "
                        "next run; label images of more runs")
    if bad_images < MIN_VALIDATION_BAD:
        warnings.append(f"validation holds only {bad_images} Bad image(s) (fewer than {MIN_VALIDATION_BAD}): "
                        "Bad recall and the Bad threshold rest on too few examples")
    images, accuracy = summary.get("images") or 0, summary.get("accuracy")
    if accuracy is not None and accuracy >= 1.0 and images:
        warnings.append(f"validation accuracy 1.000 on {images} images of {n_runs} run(s) is not evidence the model "
                        f"is right on new runs: with no error seen, errors up to ~{min(1.0, 3 / images):.0%} of "
                        "similar images remain plausible (rule of three), and new run conditions are not covered")
    warnings += [f"label {name}: no threshold reaches precision {precision_target:.2f} on validation; it never "
                 "confirms (threshold 1.0), so its images go to the Labeler" for name in never_confirms]
    return warnings


def thresholds_step(
    db: HydraDB,
    config: HydraSettings,
    tracking: TrackingService,
    plot_type: str,
    *,
    activate: str = "never",
    user: str = "training",
    dagster_run_id: str = "",
    precision_target: float | None = None,
    logger: Any = log,
) -> ThresholdsResult:
    """Choose each label's threshold on the run-held-out validation, store them, maybe activate the model.

    `precision_target`: None takes the plot type's.  `activate`: never; always; if_better — when the new
    version beats the active one (mean per-label F1 at each model's own thresholds) on the new run-held-out
    validation images, or no model is active.
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
        if precision_target is None:
            precision_target = plot.precision_target if plot.precision_target is not None else DEFAULT_PRECISION
        training_set = s.get(TrainingSet, model.training_set_id) if model.training_set_id else None
        set_counts = dict(training_set.label_counts or {}) if training_set is not None else {}
        s.expunge(model)
    if not 0.0 < precision_target <= 1.0:
        raise TrainingRefused(f"precision target must be between 0 and 1, not {precision_target}")
    predictions = load_predictions(config, tracking, model)
    val = predictions.of("validation")
    split = set_counts.get("split", SPLIT_RUNS)
    if not len(val.image_id):  # one labeled run: nothing was held out
        val, split = predictions.of("train"), SPLIT_SINGLE_RUN
    names = predictions.label_names
    chosen = select_thresholds(val.weights, val.true_index, names, bad_labels=bad, precision_target=precision_target)
    if split == SPLIT_SINGLE_RUN:
        chosen = {n: replace(t, threshold=max(t.threshold, SINGLE_RUN_FLOOR),
                             rule=f"{t.rule}; one labeled run, so in-sample and raised to at least {SINGLE_RUN_FLOOR}")
                  for n, t in chosen.items()}
    values = {n: t.threshold for n, t in chosen.items()}
    summary = _summary(val.weights, val.true_index, names, values, bad)
    runs = sorted(int(r) for r in set(val.run.tolist()))
    bad_images = int(sum(1 for t in val.true_index if names[int(t)] in bad))
    decided = decided_index(val.weights, names, values)
    matrix = evaluation.confusion(val.true_index, decided, len(names))
    summary |= {
        # the matrix the per-label figures come from: rows human, columns decided label, last unconfirmed
        "confusion": {"labels": names, "matrix": matrix.tolist()},
        "split": split,
        "runs": runs,
        "n_runs": len(runs),
        "per_run": per_run_figures(val.weights, val.true_index, val.run, names, values, bad),
        "precision_target": precision_target,
        "threshold_rules": {n: t.rule for n, t in chosen.items()},
    }
    summary["warnings"] = list(set_counts.get("warnings") or []) + validation_warnings(
        summary, split=split, n_runs=len(runs), bad_images=bad_images, precision_target=precision_target,
        never_confirms=[n for n, t in chosen.items() if t.support and t.threshold >= NEVER_CONFIRMS])
    for warning in summary["warnings"]:
        logger.warning(f"{plot_type} {model.key}: {warning}")
    decided_f1 = {n: summary["per_label"][n]["f1"] for n in names}
    db.write(lambda s: store_thresholds(s, s.get(Model, model.id), {n: (t.threshold, decided_f1[n])
                                                                    for n, t in chosen.items()},
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
        if split == SPLIT_SINGLE_RUN and activated and reason != "no model was active":
            activated, reason = False, f"not compared: no run-held-out validation (one labeled run); {reason}"
    with tracking.start_run(run_name=f"{plot_type} thresholds {model.key}", parent_run_id=model.mlflow_run_id,
                            tags=run_tags(plot_type, dagster_run_id, "thresholds", model=model.key)) as run:
        run_id = run.info.run_id
        mlflow.log_params({"model": model.key, "n_validation": len(val.weights), "activate": activate,
                           "split": split, "validation_runs": ",".join(map(str, runs))[:500],
                           "precision_target": precision_target})
        flat = {"val_accuracy": summary["accuracy"], "val_macro_f1": summary["macro_f1"],
                "val_bad_recall": summary["bad_recall"], "val_unconfirmed_rate": summary["unconfirmed_rate"],
                "val_runs": len(runs)}
        for name, row in summary["per_label"].items():
            for key in ("precision", "recall", "f1"):
                flat[f"{key}_{metric_name(name)}"] = row[key]
            flat[f"threshold_{metric_name(name)}"] = values[name]
        mlflow.log_metrics({k: float(v) for k, v in flat.items() if v is not None})
        table = {"label": names, "threshold": [values[n] for n in names],
                 "f1": [summary["per_label"][n]["f1"] for n in names],
                 "precision": [summary["per_label"][n]["precision"] for n in names],
                 "recall": [summary["per_label"][n]["recall"] for n in names],
                 "support": [summary["per_label"][n]["support"] for n in names],
                 "rule": [chosen[n].rule for n in names]}
        mlflow.log_table(table, "thresholds.json")
        mlflow.log_text(csv_table(table), "thresholds.csv")
        mlflow.log_dict({k: summary[k] for k in ("split", "runs", "per_run", "warnings", "threshold_rules")},
                        "validation.json")
        where = f"{split}, {len(runs)} run(s)"
        tracking.log_figure(run_id, evaluation.confusion_figure(
            matrix, names, title=f"{plot_type} validation at thresholds ({where})"), "plots/confusion_matrix.png")
        tracking.log_figure(run_id, evaluation.enhanced_confusion_figure(
            val.weights, val.true_index, names, thresholds=values,
            title=f"{plot_type} {model.key} ({where}): weight histograms (dashed: threshold)"),
            "plots/enhanced_confusion_matrix.png")
        mlflow.set_tag("activation", f"{activated}: {reason}")
        mlflow.set_tag("validation_warnings", " | ".join(summary["warnings"])[:4900] or "none")
    # The model's own run shows the thresholds table too, beside its curves.
    tracking.client.log_text(model.mlflow_run_id, csv_table(table), "thresholds.csv")
    if activated:
        activate_model(db, config, plot_type, model.mlflow_version, user, reason=reason)
    emit("thresholds", thresholds=values, activated=activated, split=split, runs=runs,
         warnings=list(summary["warnings"]))
    return ThresholdsResult(model.id, model.key, values, decided_f1, summary, activated, reason, run_id)


def _beats_active(db: HydraDB, config: HydraSettings, plot_type: str, model: Model, val: Predictions,
                  summary: dict[str, Any], bad: list[str]) -> tuple[bool, str]:
    """Whether the new version's mean per-label F1 beats the active one's, each at its own thresholds, on the
    new version's run-held-out validation images (out-of-fold under cross-validation)."""
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
    images = load_images([paths[int(i)] for i in val.image_id], active.input_size, active.mask)  # its own mask
    theirs = predict(active.keras_model, images, active.input_size)
    # Re-index the human labels into the active model's output order; labels it lacks count as misses.
    mapping = {k: (active.label_names.index(n) if n in active.label_names else -1)
               for k, n in enumerate(val.label_names)}
    true_theirs = np.array([mapping[int(t)] for t in val.true_index])
    thresholds = {n: active.thresholds.get(n, DEFAULT_THRESHOLD) for n in active.label_names}
    their_summary = _summary(theirs, true_theirs, active.label_names, thresholds, bad)
    ours, old = summary["macro_f1"], their_summary["macro_f1"]
    if ours > old:
        return True, f"macro F1 {ours:.4f} beats active {active.key} ({old:.4f}) on the same run-held-out images"
    return False, f"macro F1 {ours:.4f} does not beat active {active.key} ({old:.4f})"


__all__ = ["ACTIVATION", "DEFAULT_PRECISION", "MIN_VALIDATION_BAD", "MIN_VALIDATION_RUNS", "SINGLE_RUN_FLOOR",
           "ThresholdsResult", "per_run_figures", "thresholds_step", "validation_warnings"]
