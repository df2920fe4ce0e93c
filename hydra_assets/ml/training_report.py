"""The training report step: every training and validation image where the model's top label is not the human one.

Validation rows are run-held-out (out-of-fold under cross-validation over runs), like the thresholds'.

Read from the predictions the fit recorded (`predictions`), most confident mistakes first, stored as a
`training_reports` row with its items and logged to MLflow with thumbnails.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from hydra_assets import catalog
from hydra_assets.db.models import Image, TrainingReport, TrainingReportItem
from hydra_assets.ml import evaluation
from hydra_assets.ml.fit import load_images
from hydra_assets.ml.model_step import latest_trained_model
from hydra_assets.ml.predictions import load_predictions
from hydra_assets.ml.steps import TrainingRefused, emit, run_tags

if TYPE_CHECKING:
    from hydra_assets.db.engine import HydraDB
    from hydra_assets.settings import HydraSettings
    from hydra_assets.tracking import TrackingService


@dataclass
class ReportResult:
    report_id: int
    model_key: str
    n_images: int
    n_disagreements: int
    by_split: dict[str, int]
    mlflow_run_id: str


def training_report_step(
    db: HydraDB,
    config: HydraSettings,
    tracking: TrackingService,
    plot_type: str,
    *,
    dagster_run_id: str = "",
    thumbnails: int = 24,
) -> ReportResult:
    """Every training and validation image where the model's top label is not the human one."""
    import mlflow

    with db.read() as s:
        plot = catalog.get_plot_type(s, plot_type)
        model = latest_trained_model(s, plot.id)
        if model is None:
            raise TrainingRefused(f"plot type {plot_type} has no trained model yet; materialise model first")
        label_ids = {lab.name: lab.id for lab in catalog.labels_of(s, plot)}
        s.expunge(model)
    predictions = load_predictions(config, tracking, model)
    # Under cross-validation over runs an image has a train row (the registered model) and a validation
    # row (its fold's model, which never saw its run): both are reported, the image counted once.
    n_images = len(set(predictions.image_id.tolist()))
    names = predictions.label_names
    top = predictions.weights.argmax(axis=1)
    wrong = np.flatnonzero(top != predictions.true_index)
    # Most confident mistakes first: those are the labels (or models) an expert should look at.
    wrong = wrong[np.argsort(-predictions.weights[wrong, top[wrong]], kind="stable")]
    rows = [
        {"image_id": int(predictions.image_id[k]), "split": str(predictions.split[k]),
         "human": names[int(predictions.true_index[k])], "model": names[int(top[k])],
         "weight": float(predictions.weights[k, top[k]]),
         "weights": {n: round(float(w), 6) for n, w in zip(names, predictions.weights[k], strict=True)}}
        for k in wrong
    ]

    def write(session: Session) -> int:
        report = TrainingReport(model_id=model.id, n_images=n_images, n_disagreements=len(rows))
        session.add(report)
        session.flush()
        session.add_all(TrainingReportItem(report_id=report.id, image_id=r["image_id"], split=r["split"],
                                           human_label_id=label_ids.get(r["human"]),
                                           model_label_id=label_ids.get(r["model"]), model_weight=r["weight"],
                                           weights=r["weights"]) for r in rows)
        session.flush()
        return report.id

    report_id = db.write(write, what="training report")
    by_split = dict(Counter(r["split"] for r in rows))
    with tracking.start_run(run_name=f"{plot_type} training report {model.key}", parent_run_id=model.mlflow_run_id,
                            tags=run_tags(plot_type, dagster_run_id, "training_report", model=model.key)) as run:
        run_id = run.info.run_id
        mlflow.log_params({"model": model.key, "n_images": n_images})
        mlflow.log_metrics({"disagreements": len(rows), **{f"disagreements_{k}": v for k, v in by_split.items()}})
        mlflow.log_text("image_id,split,human,model,weight\n" + "\n".join(
            f"{r['image_id']},{r['split']},{r['human']},{r['model']},{r['weight']:.6f}" for r in rows),
            "training_report.csv")
        if rows and thumbnails:
            with db.read() as s:
                shown = rows[:thumbnails]
                paths = dict(s.execute(select(Image.id, Image.stored_path)
                                       .where(Image.id.in_([r["image_id"] for r in shown]))).all())
            images = [load_images([paths[r["image_id"]]], (96, 96))[0] for r in shown if r["image_id"] in paths]
            captions = [f"#{r['image_id']} {r['split'][:5]}\nhuman {r['human']} / model {r['model']} "
                        f"{r['weight']:.2f}" for r in shown if r["image_id"] in paths]
            tracking.log_figure(run_id, evaluation.thumbnails_figure(
                images, captions, title=f"{plot_type} {model.key}: disagreements"), "plots/disagreements.png")

    def link(session: Session) -> None:
        session.get(TrainingReport, report_id).mlflow_run_id = run_id

    db.write(link, what="link training report run")
    emit("training_report", report_id=report_id, disagreements=len(rows))
    return ReportResult(report_id, model.key, n_images, len(rows), by_split, run_id)


__all__ = ["ReportResult", "training_report_step"]
