"""The alarm history: every alarm, newest first, with who acknowledged it; paged with LIMIT/OFFSET.

Newest first is `ix_alarms_raised` read backwards (a time window is a range of it); the other filters are
checked per alarm while walking it, so a page stops at its end.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hydra_assets.db.models import Alarm, Image, Label, PlotType
from panel_app.views_data import AlarmFilter, AlarmRow


def _where(f: AlarmFilter) -> list[Any]:
    where: list[Any] = []
    if f.kind:
        where.append(Alarm.kind == f.kind)
    if f.plot_type_id is not None:
        where.append(Alarm.plot_type_id == f.plot_type_id)
    if f.acknowledged is True:
        where.append(Alarm.acknowledged_at.is_not(None))
    elif f.acknowledged is False:
        where.append(Alarm.acknowledged_at.is_(None))
    if f.since is not None:
        where.append(Alarm.raised_at >= f.since)
    if f.until is not None:
        where.append(Alarm.raised_at <= f.until)
    return where


def alarm_history(session: Session, f: AlarmFilter, *, limit: int = 50, offset: int = 0
                  ) -> tuple[list[AlarmRow], bool]:
    """One page of alarms matching the filter, newest first, and whether another page follows."""
    rows = session.execute(
        select(Alarm.id, Alarm.kind, PlotType.name, Image.run_number, Image.chunk, Label.name, Alarm.message,
               Alarm.raised_at, Alarm.acknowledged_by, Alarm.acknowledged_at, Alarm.image_id)
        .join(PlotType, PlotType.id == Alarm.plot_type_id)
        .join(Image, Image.id == Alarm.image_id)
        .outerjoin(Label, Label.id == Alarm.label_id)
        .where(*_where(f))
        .order_by(Alarm.raised_at.desc(), Alarm.id.desc())
        .limit(limit + 1)
        .offset(offset)
    ).all()
    return [AlarmRow(*r) for r in rows[:limit]], len(rows) > limit
