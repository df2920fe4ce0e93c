"""Alarms and Bad flags told outside the browser: webhooks (chat tools) and e-mail, per plot group.

`dispatch` is one pass, called by the `notifications` sensor (every 30 s) or `hydra notify send`:

1. **Enqueue.** Alarms and Bad run flags newer than the notifier's cursor become `notifications` rows, one
   per target that routes them.  The cursor (highest alarm id and run flag id looked at) is kept in the
   `heartbeats` row "notify", so it survives restarts and the Status page shows the notifier's last pass.
   Events younger than `SETTLE_S` wait for the next pass: an insert with a lower id that commits a moment
   later is not skipped.  A Bad flag recomputed with the same start is told once (flags are recomputed
   whenever keep decisions change).
2. **Send.** Each target whose last message is older than its interval gets all its pending events as ONE
   message; a failed send is recorded on its rows (attempts, error) and tried again later, doubling the
   wait, until `MAX_ATTEMPTS`; then it is given up and the error stays visible (`hydra notify list`).
   Every send has a timeout and the pass stops starting sends after `budget_s`: an unreachable webhook
   costs its timeout and the other targets are still served.  Nothing here runs in the pipeline's steps.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hydra_assets.db.engine import HydraDB
from hydra_assets.db.models import (
    Alarm,
    Heartbeat,
    Image,
    Notification,
    NotificationTarget,
    PlotGroup,
    PlotType,
    PlotTypeGrouping,
    RunFlag,
    SuperGroup,
    utcnow,
)
from hydra_assets.notify_rules import (
    MAX_ATTEMPTS,
    Event,
    NotifyError,
    alarm_text,
    check_address,
    due,
    flag_text,
    may_try,
    parse_events,
    routes,
)
from hydra_assets.notify_senders import DeliveryError, deliver
from hydra_assets.settings import HydraSettings

CURSOR_STAGE = "notify"
CURSOR_RE = re.compile(r"up to alarm (\d+), flag (\d+)")
SETTLE_S = 5.0
EVENTS_PER_PASS = 2000  # events read per pass; a longer backlog is worked through pass after pass
EVENTS_PER_MESSAGE = 5000
FLAG_MEMORY = timedelta(days=14)  # how far back a recomputed Bad flag is recognised as told already
__all__ = ["DeliveryError", "NotifyError", "dispatch"]


# ---- targets --------------------------------------------------------------------------------------


def group_names(session: Session) -> list[str]:
    """Plot groups and super groups a target may name."""
    names = set(session.scalars(select(PlotGroup.name))) | set(session.scalars(select(SuperGroup.name)))
    return sorted(names)


def add_target(session: Session, *, kind: str, address: str, group: str | None, events: str = "alarm,flag",
               min_interval_s: int = 300, by: str = "") -> NotificationTarget:
    """A new target; an unknown group, a non-http URL or a bad e-mail address is refused with the reason."""
    address = check_address(kind, address)
    events = parse_events(events)
    if min_interval_s < 0:
        raise NotifyError("the interval is a number of seconds, 0 or more")
    if group is not None:
        known = group_names(session)
        if group not in known:
            raise NotifyError(f"unknown plot group {group!r}; groups: {', '.join(known) or '(none yet)'}")
    target = NotificationTarget(group_name=group, kind=kind, address=address, events=events,
                                min_interval_s=min_interval_s, enabled=True, created_at=utcnow(), created_by=by)
    session.add(target)
    session.flush()
    return target


def get_target(session: Session, target_id: int) -> NotificationTarget:
    target = session.get(NotificationTarget, target_id)
    if target is None:
        raise NotifyError(f"no notification target {target_id} (see `hydra notify list`)")
    return target


def remove_target(session: Session, target_id: int) -> NotificationTarget:
    target = get_target(session, target_id)
    session.execute(delete(Notification).where(Notification.target_id == target_id))
    session.delete(target)
    session.flush()
    return target


def set_enabled(session: Session, target_id: int, enabled: bool) -> NotificationTarget:
    target = get_target(session, target_id)
    target.enabled = enabled
    session.flush()
    return target


@dataclass(frozen=True)
class TargetState:
    """A target with where its messages stand, for `hydra notify list`."""

    id: int
    kind: str
    address: str
    group: str | None
    events: str
    min_interval_s: int
    enabled: bool
    pending: int
    sent: int
    given_up: int
    last_sent_at: datetime | None
    last_error: str | None


def target_states(session: Session) -> list[TargetState]:
    n = Notification
    pending = func.sum(case(((n.sent_at.is_(None)) & (n.attempts < MAX_ATTEMPTS), 1), else_=0))
    given_up = func.sum(case(((n.sent_at.is_(None)) & (n.attempts >= MAX_ATTEMPTS), 1), else_=0))
    counts = {
        row[0]: row[1:]
        for row in session.execute(
            select(n.target_id, pending, func.count(n.sent_at), given_up, func.max(n.sent_at)).group_by(n.target_id))
    }
    errors: dict[int, str] = {}
    for target_id, error in session.execute(
            select(n.target_id, n.error).where(n.error.is_not(None)).order_by(n.id.desc()).limit(1000)):
        errors.setdefault(target_id, error)
    states = []
    for t in session.scalars(select(NotificationTarget).order_by(NotificationTarget.id)):
        p, s, g, last = counts.get(t.id, (0, 0, 0, None))
        states.append(TargetState(t.id, t.kind, t.address, t.group_name, t.events, t.min_interval_s, t.enabled,
                                  int(p or 0), int(s or 0), int(g or 0), last, errors.get(t.id)))
    return states


# ---- enqueue: alarms and Bad flags newer than the cursor -------------------------------------------


def read_cursor(session: Session) -> tuple[int, int] | None:
    """(alarm id, run flag id) looked at so far, or None before the first pass."""
    row = session.get(Heartbeat, CURSOR_STAGE)
    match = CURSOR_RE.search(row.detail) if row is not None else None
    return (int(match[1]), int(match[2])) if match else None


def _write_cursor(session: Session, cursor: tuple[int, int], note: str, now: datetime) -> None:
    detail = f"notified up to alarm {cursor[0]}, flag {cursor[1]}; {note}"[:2000]
    row = session.get(Heartbeat, CURSOR_STAGE)
    if row is None:
        session.add(Heartbeat(stage=CURSOR_STAGE, beat_at=now, detail=detail))
    else:
        row.beat_at, row.detail = now, detail
    session.flush()


def _start_cursor(session: Session, targets: Sequence[NotificationTarget]) -> tuple[int, int]:
    """Before the first pass: just before the events that happened since the oldest target was created."""
    since = min((t.created_at for t in targets), default=utcnow()) - timedelta(seconds=1)
    alarm = session.scalar(select(func.min(Alarm.id)).where(Alarm.raised_at >= since))
    flag = session.scalar(select(func.min(RunFlag.id)).where(RunFlag.computed_at >= since))
    top_alarm = session.scalar(select(func.max(Alarm.id))) or 0
    top_flag = session.scalar(select(func.max(RunFlag.id))) or 0
    return (alarm - 1 if alarm else top_alarm, flag - 1 if flag else top_flag)


def _groups_of(session: Session, plot_type_ids: set[int]) -> dict[int, tuple[str, ...]]:
    found: dict[int, set[str]] = {pid: set() for pid in plot_type_ids}
    rows = session.execute(
        select(PlotTypeGrouping.plot_type_id, PlotGroup.name, SuperGroup.name)
        .join(PlotGroup, PlotGroup.id == PlotTypeGrouping.plot_group_id)
        .outerjoin(SuperGroup, SuperGroup.id == PlotGroup.super_group_id)
        .where(PlotTypeGrouping.plot_type_id.in_(plot_type_ids)))
    for plot_type_id, group, super_group in rows:
        found[plot_type_id].add(group)
        if super_group:
            found[plot_type_id].add(super_group)
    return {pid: tuple(sorted(names)) for pid, names in found.items()}


def _new_alarms(session: Session, after: int, settled: datetime) -> tuple[list[Event], int]:
    rows = session.execute(
        select(Alarm.id, Alarm.plot_type_id, PlotType.name, Image.run_number, Image.chunk, Alarm.kind,
               Alarm.message, Alarm.raised_at, Alarm.acknowledged_at)
        .join(PlotType, PlotType.id == Alarm.plot_type_id)
        .outerjoin(Image, Image.id == Alarm.image_id)
        .where(Alarm.id > after).order_by(Alarm.id).limit(EVENTS_PER_PASS)).all()
    groups = _groups_of(session, {r.plot_type_id for r in rows})
    events, cursor = [], after
    for r in rows:
        if r.raised_at > settled:
            break  # its neighbours with lower ids may still be committing
        cursor = r.id
        if r.acknowledged_at is not None:
            continue  # someone already looked at it
        events.append(Event(
            "alarm", groups.get(r.plot_type_id, ()), alarm_text(r.name, r.run_number, r.chunk, r.kind, r.message),
            r.raised_at,
            {"alarm_id": r.id, "plot_type": r.name, "run": r.run_number, "chunk": r.chunk, "kind": r.kind}))
    return events, cursor


def flag_key(run: int, scope: str, group: str, first_chunk: int) -> str:
    return f"{run}:{scope}:{group}:{first_chunk}"


def _new_bad_flags(session: Session, after: int, settled: datetime, now: datetime) -> tuple[list[Event], int]:
    rows = session.execute(
        select(RunFlag.id, RunFlag.run_number, RunFlag.scope, RunFlag.group_name, RunFlag.first_chunk,
               RunFlag.last_chunk, RunFlag.flag, RunFlag.reasons, RunFlag.computed_at)
        .where(RunFlag.id > after).order_by(RunFlag.id).limit(EVENTS_PER_PASS)).all()
    told: set[str] = set()
    if any(r.flag == "Bad" for r in rows):
        told = {
            detail.get("key") for detail in session.scalars(
                select(Notification.detail).where(Notification.event == "flag",
                                                  Notification.created_at >= now - FLAG_MEMORY))
            if isinstance(detail, dict)
        }
    events, cursor = [], after
    for r in rows:
        if r.computed_at > settled:
            break
        cursor = r.id
        key = flag_key(r.run_number, r.scope, r.group_name, r.first_chunk)
        if r.flag != "Bad" or key in told:
            continue
        told.add(key)
        reasons = r.reasons if isinstance(r.reasons, list) else []
        events.append(Event(
            "flag", (r.group_name,), flag_text(r.run_number, r.group_name, r.first_chunk, r.last_chunk, reasons),
            r.computed_at,
            {"flag_id": r.id, "key": key, "run": r.run_number, "scope": r.scope, "group": r.group_name,
             "first_chunk": r.first_chunk, "last_chunk": r.last_chunk}))
    return events, cursor


def _lock(session: Session, touch: Any) -> None:
    """Start the transaction with a write that changes nothing, so two notifier passes (the sensor and
    `hydra notify send`) take turns: MySQL locks the row, SQLite takes its write lock before the reads
    (pysqlite begins a transaction only at the first write)."""
    session.execute(touch)


def enqueue(db: HydraDB, now: datetime) -> int:
    """Store one notification per (new event, target that routes it); returns how many were stored."""
    with db.read() as session:
        started = session.get(Heartbeat, CURSOR_STAGE) is not None
    if not started:  # the row the passes lock must exist before two of them can take turns on it
        try:
            db.write(lambda s: s.add(Heartbeat(stage=CURSOR_STAGE, beat_at=now, detail="notifier starting")),
                     what="start the notifier")
        except IntegrityError:
            pass  # another pass created it a moment ago

    def work(session: Session) -> int:
        _lock(session, update(Heartbeat).where(Heartbeat.stage == CURSOR_STAGE).values(beat_at=Heartbeat.beat_at))
        targets = list(session.scalars(select(NotificationTarget).where(NotificationTarget.enabled.is_(True))))
        cursor = read_cursor(session) or _start_cursor(session, targets)
        settled = now - timedelta(seconds=SETTLE_S)
        alarms, alarm_cursor = _new_alarms(session, cursor[0], settled)
        flags, flag_cursor = _new_bad_flags(session, cursor[1], settled, now)
        stored = 0
        for event in [*alarms, *flags]:
            for target in targets:
                if routes(event, group_name=target.group_name, events=target.events, created_at=target.created_at):
                    session.add(Notification(target_id=target.id, event=event.event, text=event.text,
                                             detail={**event.detail, "at": event.happened_at.isoformat(),
                                                     "groups": list(event.groups)},
                                             created_at=now, attempts=0))
                    stored += 1
        note = f"last pass {now:%Y-%m-%d %H:%M:%S}: {len(alarms)} alarm(s), {len(flags)} Bad flag(s) queued"
        _write_cursor(session, (alarm_cursor, flag_cursor), note, now)
        return stored

    return db.write(work, what="queue notifications")


# ---- send ----------------------------------------------------------------------------------------


def _as_event(n: Notification) -> Event:
    detail = dict(n.detail or {})
    at = detail.pop("at", None)
    groups = tuple(detail.pop("groups", ()))
    detail.pop("tried_at", None)
    happened = datetime.fromisoformat(at) if isinstance(at, str) else n.created_at
    return Event(n.event, groups, n.text, happened, detail)


def _last_try(n: Notification) -> datetime | None:
    at = (n.detail or {}).get("tried_at")
    return datetime.fromisoformat(at) if isinstance(at, str) else None


@dataclass
class Delivery:
    target_id: int
    events: int
    error: str | None = None


def _claim(db: HydraDB, target_id: int, now: datetime) -> tuple[NotificationTarget, list[Notification]] | None:
    """The target's pending notifications if a message is due now, counted as tried (before sending, so a
    crash mid-send counts too)."""

    def work(session: Session) -> tuple[NotificationTarget, list[Notification]] | None:
        _lock(session, update(NotificationTarget).where(NotificationTarget.id == target_id)
              .values(enabled=NotificationTarget.enabled))
        target = session.get(NotificationTarget, target_id)
        if target is None or not target.enabled:
            return None
        last_sent = session.scalar(select(func.max(Notification.sent_at)).where(Notification.target_id == target_id))
        if not due(last_sent, now, target.min_interval_s):
            return None
        pending = (Notification.target_id == target_id, Notification.sent_at.is_(None),
                   Notification.attempts < MAX_ATTEMPTS)
        retried = session.scalars(select(Notification).where(*pending, Notification.attempts > 0)
                                  .order_by(Notification.attempts.desc()).limit(1)).first()
        if retried is not None and not may_try(retried.attempts, _last_try(retried), now):
            return None  # a failed message is still waiting for its retry (its batch was tried together)
        rows = list(session.scalars(select(Notification).where(*pending).order_by(Notification.id)
                                    .limit(EVENTS_PER_MESSAGE).with_for_update()))
        if not rows or not all(may_try(n.attempts, _last_try(n), now) for n in rows):
            return None  # read under the lock: a pass that claimed them a moment ago has marked them tried
        for n in rows:
            n.attempts += 1
            n.detail = {**(n.detail or {}), "tried_at": now.isoformat()}
        session.flush()
        session.expunge_all()
        return target, rows

    return db.write(work, what="claim notifications")


def _settle(db: HydraDB, ids: list[int], sent_at: datetime | None, error: str | None) -> None:
    def work(session: Session) -> None:
        if error is None:
            session.execute(update(Notification).where(Notification.id.in_(ids)).values(sent_at=sent_at, error=None))
            return
        for n in session.scalars(select(Notification).where(Notification.id.in_(ids))):
            gave_up = f"given up after {n.attempts} tries: " if n.attempts >= MAX_ATTEMPTS else ""
            n.error = f"{gave_up}{error}"[:4000]

    db.write(work, what="record notification result")


def send_pending(db: HydraDB, settings: HydraSettings, now: datetime, *, budget_s: float = 30.0) -> list[Delivery]:
    """One message to each target that is due and has something to tell; a failure is recorded and the
    other targets are still served.  Sends stop starting after `budget_s` (the rest waits a pass)."""
    with db.read() as session:
        target_ids = list(session.scalars(
            select(NotificationTarget.id).where(NotificationTarget.enabled.is_(True)).order_by(NotificationTarget.id)))
    started, deliveries = time.monotonic(), []
    for target_id in target_ids:
        if time.monotonic() - started > budget_s:
            break
        claimed = _claim(db, target_id, now)
        if claimed is None:
            continue
        target, rows = claimed
        events = [_as_event(n) for n in rows]
        try:
            deliver(settings, target, events)
        except Exception as error:  # any failure of one target is its own; the others still go out
            reason = str(error) if isinstance(error, DeliveryError) else f"{type(error).__name__}: {error}"
            _settle(db, [n.id for n in rows], None, reason)
            deliveries.append(Delivery(target_id, len(events), reason))
            continue
        _settle(db, [n.id for n in rows], utcnow(), None)
        deliveries.append(Delivery(target_id, len(events)))
    return deliveries


@dataclass
class DispatchOutcome:
    queued: int
    deliveries: list[Delivery] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return sum(1 for d in self.deliveries if d.error is None)

    @property
    def failed(self) -> list[Delivery]:
        return [d for d in self.deliveries if d.error is not None]

    def summary(self) -> str:
        text = f"{self.queued} notification(s) queued, {self.sent} message(s) sent"
        if self.failed:
            text += "; failed: " + "; ".join(f"target {d.target_id}: {d.error}" for d in self.failed)
        return text


def dispatch(db: HydraDB, settings: HydraSettings, now: datetime | None = None, *,
             budget_s: float = 30.0) -> DispatchOutcome:
    """One pass: queue what is new, then send what is due (see the module docstring)."""
    now = now or utcnow()
    outcome = DispatchOutcome(queued=enqueue(db, now))
    outcome.deliveries = send_pending(db, settings, now, budget_s=budget_s)
    return outcome


def send_test(db: HydraDB, settings: HydraSettings, target_id: int) -> None:
    """A test message to one target now (no rate limit, nothing stored); raises DeliveryError."""
    with db.read() as session:
        target = get_target(session, target_id)
        session.expunge(target)
    event = Event("alarm", (target.group_name or "",), "test message from `hydra notify test`: this target works",
                  utcnow(), {"test": True})
    deliver(settings, target, [event])
