"""The Library page: model versions, their thresholds and history, confusion matrices, training sets."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select, true
from sqlalchemy.orm import Session

from hydra_assets.db.models import (
    Image,
    Inference,
    Label,
    Model,
    Threshold,
    ThresholdChange,
    TrainingReport,
    TrainingReportItem,
    TrainingSetItem,
)
from panel_app.queries.catalogue import label_colour
from panel_app.views_data import Confusion, ModelInfo, ThresholdInfo


def _model_info(m: Model) -> ModelInfo:
    return ModelInfo(
        m.id, m.plot_type_id, m.mlflow_name, m.mlflow_version, m.topology, m.created_at, m.created_by or "",
        m.training_set_size or 0, m.sampling or "", bool(m.active), m.activated_at, m.activated_by or "",
        m.mlflow_run_id or "", dict(m.metrics or {}), list(m.label_names or []), m.training_set_id,
        bool(m.challenger),
    )


def models_of(session: Session, plot_type_id: int) -> list[ModelInfo]:
    """Every model version of a plot type, newest first."""
    rows = session.scalars(
        select(Model).where(Model.plot_type_id == plot_type_id).order_by(Model.created_at.desc(), Model.id.desc())
    )
    return [_model_info(m) for m in rows]


def model(session: Session, model_id: int) -> ModelInfo | None:
    row = session.get(Model, model_id)
    return _model_info(row) if row else None


def active_model(session: Session, plot_type_id: int) -> ModelInfo | None:
    row = session.scalar(
        select(Model).where(Model.plot_type_id == plot_type_id, Model.active == true()).order_by(Model.id.desc())
    )
    return _model_info(row) if row else None


def thresholds_of(session: Session, model_id: int, plot_type_id: int) -> list[ThresholdInfo]:
    """One row per label of the plot type, with the model's threshold when it has one."""
    rows = session.execute(
        select(Label.id, Label.name, Label.colour, Threshold.value, Threshold.f1, Threshold.changed_at,
               Threshold.changed_by)
        .outerjoin(Threshold, and_(Threshold.label_id == Label.id, Threshold.model_id == model_id))
        .where(Label.plot_type_id == plot_type_id)
        .order_by(Label.order, Label.id)
    )
    return [ThresholdInfo(r[0], r[1], label_colour(r[2]), r[3], r[4], r[5], r[6] or "") for r in rows]


def threshold_changes(session: Session, model_id: int, *, limit: int = 20) -> list[tuple[datetime, str, Any, float, str]]:
    rows = session.execute(
        select(ThresholdChange.changed_at, Label.name, ThresholdChange.old_value, ThresholdChange.new_value,
               ThresholdChange.changed_by)
        .join(Label, Label.id == ThresholdChange.label_id)
        .where(ThresholdChange.model_id == model_id)
        .order_by(ThresholdChange.changed_at.desc(), ThresholdChange.id.desc())
        .limit(limit)
    )
    return [tuple(r) for r in rows]  # type: ignore[misc]


def confusion(session: Session, info: ModelInfo, label_names: list[str], *, limit: int = 20000) -> Confusion:
    """The enhanced confusion matrix of a model version, from the best source available.

    1. its validation report (TrainingReportItems of split `validation`, when they hold agreements too);
    2. its own inferences on images a human has labeled (production data);
    3. a plain count matrix in the model's metrics (`confusion`: rows true, columns predicted).
    """
    labels = list(info.label_names or label_names)
    report_id = session.scalar(
        select(TrainingReport.id).where(TrainingReport.model_id == info.id).order_by(TrainingReport.id.desc())
    )
    names = {lab_id: name for lab_id, name in session.execute(select(Label.id, Label.name).where(
        Label.plot_type_id == info.plot_type_id))}
    if report_id is not None:
        rows = session.execute(
            select(TrainingReportItem.human_label_id, TrainingReportItem.model_label_id,
                   TrainingReportItem.model_weight)
            .where(TrainingReportItem.report_id == report_id, TrainingReportItem.split == "validation")
            .limit(limit)
        ).all()
        if any(h == m for h, m, _ in rows):  # a report of disagreements only has no diagonal
            return Confusion(labels, _cells(rows, names), "validation set (training report)")
    rows = session.execute(
        select(Image.label_id, Inference.top_label_id, Inference.top_weight)
        .join(Image, Image.id == Inference.image_id)
        .where(Inference.model_id == info.id, Image.label_id.is_not(None), Inference.top_label_id.is_not(None))
        .order_by(Inference.id.desc())
        .limit(limit)
    ).all()
    if rows:
        return Confusion(labels, _cells(rows, names), f"{len(rows)} human-labeled images it classified")
    matrix = info.metrics.get("confusion")
    if isinstance(matrix, dict) and "matrix" in matrix:
        labels = list(matrix.get("labels") or labels)
        matrix = matrix["matrix"]
    if isinstance(matrix, list) and matrix and all(isinstance(row, list) for row in matrix):
        counts = {
            (labels[i], labels[j]): int(v)
            for i, row in enumerate(matrix[: len(labels)])
            for j, v in enumerate(row[: len(labels)])
        }
        return Confusion(labels, {}, "counts from the model's metrics (no weights recorded)", counts)
    return Confusion(labels, {}, "")


def validation_weights(session: Session, model_id: int, *, limit: int = 20000) -> list[tuple[int, dict[str, Any]]]:
    """(human label id, the model's weights) of every validation image its latest training report holds;
    [] for a report of disagreements only (what training writes): figures from it would be all wrong."""
    report_id = session.scalar(
        select(TrainingReport.id).where(TrainingReport.model_id == model_id).order_by(TrainingReport.id.desc())
    )
    if report_id is None:
        return []
    rows = session.execute(
        select(TrainingReportItem.human_label_id, TrainingReportItem.model_label_id, TrainingReportItem.weights)
        .where(TrainingReportItem.report_id == report_id, TrainingReportItem.split == "validation",
               TrainingReportItem.human_label_id.is_not(None))
        .limit(limit)
    ).all()
    if not any(human == model for human, model, _ in rows):
        return []
    return [(int(label_id), dict(weights or {})) for label_id, _model, weights in rows if weights]


def _cells(rows: Iterable[Sequence[Any]], names: dict[int, str]) -> dict[tuple[str, str], list[float]]:
    cells: dict[tuple[str, str], list[float]] = defaultdict(list)
    for human, predicted, weight in rows:
        if human in names and predicted in names:
            cells[(names[human], names[predicted])].append(float(weight or 0.0))
    return dict(cells)


def training_set_counts(session: Session, training_set_id: int) -> dict[str, int]:
    rows = session.execute(
        select(Label.name, func.count())
        .select_from(TrainingSetItem)
        .join(Label, Label.id == TrainingSetItem.label_id)
        .where(TrainingSetItem.training_set_id == training_set_id)
        .group_by(Label.name)
    )
    return {name: int(n) for name, n in rows}
