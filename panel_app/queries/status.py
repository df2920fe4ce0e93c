"""The Status page: stage timings, heartbeats, images received per hour and when they started arriving.

Times are naive UTC, like every time in the Hydra database; an hour bin is named by its start (14:00 holds
14:00:00–14:59:59).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hydra_assets.db.models import Heartbeat, Image, StageTiming
from panel_app.views_data import TIMED_STAGES


def stage_timings(session: Session, since: datetime, *, limit: int = 50000) -> list[tuple[str, float, int, datetime]]:
    """(stage, duration_ms, run_number, finished_at) of every stage execution since `since`."""
    rows: list[tuple[str, float, int, datetime]] = []
    for stage in TIMED_STAGES:
        rows += session.execute(
            select(StageTiming.stage, StageTiming.duration_ms, StageTiming.run_number, StageTiming.finished_at)
            .where(StageTiming.stage == stage, StageTiming.finished_at >= since)
            .order_by(StageTiming.finished_at.desc())
            .limit(limit)
        ).tuples().all()
    return rows


def heartbeats(session: Session) -> list[tuple[str, datetime, str]]:
    return [tuple(r) for r in session.execute(
        select(Heartbeat.stage, Heartbeat.beat_at, Heartbeat.detail).order_by(Heartbeat.stage))]  # type: ignore[misc]


def images_per_hour(session: Session, since: datetime, until: datetime | None = None) -> list[tuple[datetime, int]]:
    """Images received per hour since `since` (binned in Python over the covering index `ix_images_received`)."""
    query = select(Image.received_at).where(Image.received_at >= since)
    if until is not None:
        query = query.where(Image.received_at <= until)
    counts: dict[datetime, int] = defaultdict(int)
    for (received,) in session.execute(query):
        counts[received.replace(minute=0, second=0, microsecond=0)] += 1
    return sorted(counts.items())


def arrivals(session: Session, since: datetime) -> tuple[int, datetime | None]:
    """How many images were received since `since`, and when the first of them arrived.

    The Status page states a rate over the time images actually arrived in: 2082 images that all came in
    the last 20 minutes are not "86.8 per hour" over a 24 h window.
    """
    count, first = session.execute(
        select(func.count(Image.id), func.min(Image.received_at)).where(Image.received_at >= since)).one()
    return int(count or 0), first
