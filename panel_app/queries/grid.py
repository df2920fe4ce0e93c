"""The Run page: the latest image of every plot type (`run_time`), its alarms and the news line."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select, true
from sqlalchemy.orm import Session

from hydra_assets.db.models import (
    Alarm,
    Image,
    Inference,
    KeepDecision,
    Label,
    NewsLine,
    PlotType,
    RunTime,
    Threshold,
)
from panel_app.queries.catalogue import label_colour
from panel_app.queries.reference import attach_reference_scores
from panel_app.views_data import AlarmInfo, Card


def run_grid(session: Session, plot_type_ids: Sequence[int] | None = None) -> list[Card]:
    """The latest image of every plot type (or of the given ones), Bad and unconfirmed first (as the Keeper
    decided: `run_time` moves in the same transaction as the keep decision)."""
    query = (
        select(
            RunTime.plot_type_id, PlotType.name, RunTime.run_number, RunTime.chunk, RunTime.image_id,
            RunTime.updated_at, Inference.id, Inference.classified_at, Inference.status, Label.name,
            Label.colour, Inference.top_weight, KeepDecision.id.is_not(None), KeepDecision.reason,
            Inference.gradcam_path.is_not(None), Threshold.value, Inference.novelty, Inference.novelty_limit,
        )
        .join(PlotType, PlotType.id == RunTime.plot_type_id)
        .outerjoin(Inference, Inference.id == RunTime.inference_id)
        .outerjoin(Label, Label.id == Inference.top_label_id)
        .outerjoin(KeepDecision, KeepDecision.inference_id == RunTime.inference_id)
        .outerjoin(Threshold, and_(Threshold.model_id == Inference.model_id,
                                   Threshold.label_id == Inference.top_label_id))
    )
    if plot_type_ids is not None:
        query = query.where(RunTime.plot_type_id.in_(list(plot_type_ids)))
    cards = [
        Card(
            plot_type_id=r[0], plot_type=r[1], run=r[2], chunk=r[3], image_id=r[4], updated_at=r[5],
            inference_id=r[6], classified_at=r[7], status=r[8], label=r[9], colour=label_colour(r[10]),
            weight=r[11], decided=bool(r[12]), keep_reason=r[13], gradcam=bool(r[14]), threshold=r[15],
            novelty=r[16], novelty_limit=r[17],
        )
        for r in session.execute(query)
    ]
    attach_reference_scores(session, cards)  # one indexed read for the ~100 cards
    return sorted(cards, key=lambda c: c.rank)


def _alarm_rows(session: Session, *conditions: Any, newest: bool = False, limit: int) -> list[AlarmInfo]:
    rows = session.execute(
        select(Alarm.id, PlotType.name, Image.run_number, Image.chunk, Label.name, Alarm.message, Alarm.raised_at,
               Alarm.image_id, Alarm.kind)
        .join(PlotType, PlotType.id == Alarm.plot_type_id)
        .join(Image, Image.id == Alarm.image_id)
        .outerjoin(Label, Label.id == Alarm.label_id)
        .where(Alarm.acknowledged_at.is_(None), *conditions)
        .order_by(Alarm.id.desc() if newest else Alarm.id)
        .limit(limit)
    )
    found = [AlarmInfo(*r) for r in rows]
    return sorted(found, key=lambda a: a.id)


def alarms_after(session: Session, after_id: int, *, limit: int = 50) -> list[AlarmInfo]:
    """Alarms raised since the alarm `after_id` (what the Run page has not announced yet), oldest first."""
    return _alarm_rows(session, Alarm.id > after_id, limit=limit)


def open_alarms(session: Session, since: datetime, *, limit: int = 10) -> list[AlarmInfo]:
    """The newest alarms raised since `since` that nobody has acknowledged yet, oldest first: what a Run page
    opened later still has to show (issue 18: it showed none)."""
    return _alarm_rows(session, Alarm.raised_at >= since, newest=True, limit=limit)


def acknowledged_among(session: Session, alarm_ids: Sequence[int]) -> set[int]:
    """Which of these alarms someone has acknowledged (on any Run page) since they were shown."""
    if not alarm_ids:
        return set()
    return set(session.scalars(select(Alarm.id).where(Alarm.id.in_(list(alarm_ids)),
                                                      Alarm.acknowledged_at.is_not(None))))


def last_alarm_id(session: Session) -> int:
    return session.scalar(select(func.max(Alarm.id))) or 0


def news(session: Session, *, limit: int = 3) -> list[tuple[datetime, str, str]]:
    """The newest active news lines: (created_at, text, author)."""
    rows = session.execute(
        select(NewsLine.created_at, NewsLine.text, NewsLine.created_by)
        .where(NewsLine.active == true())
        .order_by(NewsLine.created_at.desc())
        .limit(limit)
    )
    return [tuple(r) for r in rows]  # type: ignore[misc]



def latest_run(session: Session) -> int | None:
    return session.scalar(select(func.max(RunTime.run_number)))

