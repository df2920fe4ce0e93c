"""The Log page: confirmed Bad and unconfirmed classifications of a window, read along `ix_inferences_log`."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, select, true
from sqlalchemy.orm import Session, aliased

from hydra_assets.db.models import Image, Inference, KeepDecision, Label, PlotType, Threshold
from panel_app.queries.catalogue import label_colour
from panel_app.views_data import LOG_KINDS, LogEntry


def log_entries(
    session: Session, since: datetime, until: datetime | None = None, *, limit: int = 2000
) -> list[LogEntry]:
    """Every confirmed Bad, unconfirmed and novel classification in [since, until], newest first.

    `flagged` (set by Predict) finds them along `ix_inferences_log`; what each one is comes from the keep
    decision the Keeper stored, so a classification shows here once the Keeper has decided on it.
    """
    human = aliased(Label)
    query = (
        select(
            Inference.id, Inference.image_id, Inference.plot_type_id, PlotType.name, Inference.run_number,
            Inference.chunk, Inference.classified_at, Label.name, Label.colour, Inference.top_weight,
            KeepDecision.reason, Inference.gradcam_path.is_not(None), Inference.weights, human.name,
            Inference.novelty, Inference.novelty_limit, Threshold.value,
        )
        # outer joins only, so the planner must start from inferences and walk ix_inferences_log backwards;
        # with inner joins MariaDB started from plot_types and sorted a day of run history (3 s at 10 M rows)
        .outerjoin(PlotType, PlotType.id == Inference.plot_type_id)
        .outerjoin(Image, Image.id == Inference.image_id)
        .outerjoin(Label, Label.id == Inference.top_label_id)
        .outerjoin(human, human.id == Image.label_id)
        .outerjoin(KeepDecision, KeepDecision.inference_id == Inference.id)
        .outerjoin(Threshold, and_(Threshold.model_id == Inference.model_id,
                                   Threshold.label_id == Inference.top_label_id))
        .where(Inference.flagged == true(), Inference.classified_at >= since)  # `IS true` would skip ix_inferences_log
        .order_by(Inference.classified_at.desc(), Inference.id.desc())
        .limit(limit)
    )
    if until is not None:
        query = query.where(Inference.classified_at <= until)
    return [
        LogEntry(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], label_colour(r[8]), r[9], r[10], bool(r[11]),
                 dict(r[12] or {}), r[13], novelty=r[14], novelty_limit=r[15], threshold=r[16])
        for r in session.execute(query)
        if r[10] in LOG_KINDS
    ]
