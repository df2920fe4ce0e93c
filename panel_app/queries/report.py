"""The Training report: a model version's reports and the items where model and human disagree."""

from __future__ import annotations

from sqlalchemy import exists, func, or_, select
from sqlalchemy.orm import Session

from hydra_assets.db.models import Image, LabelHistory, Model, TrainingReport, TrainingReportItem
from panel_app.views_data import Disagreement, ReportInfo

CONFIRMED_SOURCE = "training_report_confirmed"  # label history rows of "Human is right"


def reports(session: Session, plot_type_id: int | None = None) -> list[ReportInfo]:
    query = (
        select(TrainingReport.id, Model.id, Model.mlflow_name, Model.mlflow_version, Model.plot_type_id,
               TrainingReport.created_at, TrainingReport.n_images, TrainingReport.n_disagreements,
               TrainingReport.mlflow_run_id)
        .join(Model, Model.id == TrainingReport.model_id)
        .order_by(TrainingReport.created_at.desc(), TrainingReport.id.desc())
    )
    if plot_type_id is not None:
        query = query.where(Model.plot_type_id == plot_type_id)
    return [ReportInfo(r[0], r[1], f"{r[2]}/{r[3]}", r[4], r[5], r[6] or 0, r[7] or 0, r[8] or "")
            for r in session.execute(query)]


def disagreements(
    session: Session, report_id: int, *, limit: int = 24, offset: int = 0, split: str | None = None
) -> tuple[list[Disagreement], int]:
    """Items of a report where the model's label differs from the human label (at report time)."""
    where = [
        TrainingReportItem.report_id == report_id,
        or_(TrainingReportItem.human_label_id.is_(None),
            TrainingReportItem.model_label_id.is_(None),
            TrainingReportItem.human_label_id != TrainingReportItem.model_label_id),
    ]
    if split:
        where.append(TrainingReportItem.split == split)
    # "Human is right" said after this report about the label the image still has
    confirmed = exists().where(
        LabelHistory.image_id == Image.id, LabelHistory.source == CONFIRMED_SOURCE,
        LabelHistory.label_id == Image.label_id, LabelHistory.labeled_at >= TrainingReport.created_at)
    rows = session.execute(
        select(TrainingReportItem.id, TrainingReportItem.image_id, TrainingReportItem.split,
               TrainingReportItem.human_label_id, Image.label_id, TrainingReportItem.model_label_id,
               TrainingReportItem.model_weight, TrainingReportItem.weights, Image.run_number, Image.chunk,
               confirmed.label("confirmed"))
        .join(Image, Image.id == TrainingReportItem.image_id)
        .join(TrainingReport, TrainingReport.id == TrainingReportItem.report_id)
        .where(*where)
        .order_by(TrainingReportItem.model_weight.desc(), TrainingReportItem.id)
        .limit(limit)
        .offset(offset)
    )
    items = [Disagreement(r[0], r[1], r[2], r[3], r[4], r[5], float(r[6] or 0), dict(r[7] or {}), r[8], r[9],
                          human_confirmed=bool(r[10])) for r in rows]
    total = session.scalar(select(func.count()).select_from(TrainingReportItem).where(*where)) or 0
    return items, total
