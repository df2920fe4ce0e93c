"""The Trends page: every classification of a plot type in a window, read along `ix_inferences_trend`."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from hydra_assets.db.models import Inference
from panel_app.views_data import TrendPoint


def trend(
    session: Session, plot_type_id: int, since: datetime, until: datetime | None = None, *, limit: int = 20000
) -> list[TrendPoint]:
    """Every classification of a plot type in the window (newest `limit`), oldest first."""
    query = (
        select(Inference.classified_at, Inference.weights, Inference.model_key, Inference.confirmed,
               Inference.run_number, Inference.novelty, Inference.novelty_limit)
        .where(Inference.plot_type_id == plot_type_id, Inference.classified_at >= since,
               Inference.status == "classified")
        .order_by(Inference.classified_at.desc())
        .limit(limit)
    )
    if until is not None:
        query = query.where(Inference.classified_at <= until)
    points = [TrendPoint(r[0], dict(r[1] or {}), r[2], bool(r[3]), r[4], r[5], r[6]) for r in session.execute(query)]
    points.reverse()
    return points
