"""What a notification says and when it goes: routing, rate limits, retries and message formats.

Pure functions (no database, no network), so the rules a shift relies on — "a flood within a target's
interval becomes one message", "a dead webhook is retried a few times, then given up with its error
visible" — are tested directly.  `hydra_assets.notify` reads the events, stores them and sends.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

EVENTS = ("alarm", "flag")
KINDS = ("webhook", "email")
MAX_ATTEMPTS = 6  # tries of one message before it is given up (its error stays visible)
FIRST_RETRY_S, LONGEST_RETRY_S = 60, 1800  # 60 s, 2, 4, 8, 16 min: a restarting chat server is waited for
LISTED_EVENTS = 20  # lines of a message's text; the rest is counted ("… and 30 more")
STRUCTURED_EVENTS = 100  # events carried as structured fields in a webhook body
EMAIL_RE = re.compile(r"^[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+$")


class NotifyError(ValueError):
    """A notification target the user asked for cannot work; the message says what to change."""


@dataclass(frozen=True)
class Event:
    """Something a shift must hear about: an alarm of a plot type, or a Bad flag of a group for a run."""

    event: str  # alarm | flag
    groups: tuple[str, ...]  # plot groups and super groups it belongs to (targets route on them)
    text: str  # one line, as a person reads it
    happened_at: datetime
    detail: dict[str, Any] = field(default_factory=dict)


def parse_events(value: str) -> str:
    """The target's `events` as stored ("alarm,flag"), refusing unknown names."""
    names = [v.strip().lower() for v in value.split(",") if v.strip()]
    unknown = sorted(set(names) - set(EVENTS))
    if unknown or not names:
        raise NotifyError(f"unknown event(s) {', '.join(unknown) or '(none given)'}; events: {', '.join(EVENTS)}")
    return ",".join(e for e in EVENTS if e in names)


def check_address(kind: str, address: str) -> str:
    """A webhook URL (http or https only: urllib would also open file: URLs) or one e-mail address."""
    address = address.strip()
    if kind == "webhook":
        parts = urlsplit(address)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise NotifyError(f"{address!r} is not an http(s) URL")
        return address
    if kind == "email":
        if not EMAIL_RE.match(address):
            raise NotifyError(f"{address!r} is not one e-mail address")
        return address
    raise NotifyError(f"unknown target kind {kind!r}; kinds: {', '.join(KINDS)}")


def routes(event: Event, *, group_name: str | None, events: str, created_at: datetime) -> bool:
    """Whether a target (its group, None for every group; its event names) receives this event.

    A target hears only of what happened after it was created: adding one never floods it with history.
    """
    if event.event not in events.split(","):
        return False
    if event.happened_at < created_at:
        return False
    return group_name is None or group_name in event.groups


def due(last_sent_at: datetime | None, now: datetime, min_interval_s: int) -> bool:
    """Rate limit: a target gets at most one message per `min_interval_s`; what arrives meanwhile waits."""
    return last_sent_at is None or now - last_sent_at >= timedelta(seconds=min_interval_s)


def retry_delay(attempts: int) -> timedelta:
    """How long after its `attempts`-th failed try a message is tried again (doubling, capped)."""
    return timedelta(seconds=min(FIRST_RETRY_S * 2 ** max(attempts - 1, 0), LONGEST_RETRY_S))


def may_try(attempts: int, last_try: datetime | None, now: datetime) -> bool:
    """Whether a pending message is tried in this pass: never given up, and its retry delay has passed."""
    if attempts >= MAX_ATTEMPTS:
        return False
    return attempts == 0 or last_try is None or now - last_try >= retry_delay(attempts)


def headline(events: Sequence[Event], where: str = "") -> str:
    """'Hydra: 50 alarms and 1 Bad flag (TPC)' — what the whole message is about, in one line."""
    alarms = sum(1 for e in events if e.event == "alarm")
    flags = len(events) - alarms
    parts = []
    if alarms:
        parts.append(f"{alarms} alarm{'s' if alarms != 1 else ''}")
    if flags:
        parts.append(f"{flags} Bad flag{'s' if flags != 1 else ''}")
    scope = f" ({where})" if where else ""
    return f"Hydra: {' and '.join(parts) or 'nothing new'}{scope}"


def body_lines(events: Sequence[Event]) -> list[str]:
    """The events, oldest first, one line each; beyond `LISTED_EVENTS` they are counted, not listed."""
    ordered = sorted(events, key=lambda e: e.happened_at)
    lines = [f"- {e.happened_at:%Y-%m-%d %H:%M:%S} UTC {e.text}" for e in ordered[:LISTED_EVENTS]]
    if len(ordered) > LISTED_EVENTS:
        lines.append(f"… and {len(ordered) - LISTED_EVENTS} more")
    return lines


def webhook_payload(events: Sequence[Event], where: str = "") -> dict[str, Any]:
    """The JSON body of a webhook: `text` (what Slack, Mattermost, Rocket.Chat and Teams' incoming webhooks
    show) plus structured fields for a bot: `count`, `alarms`, `flags` and the first events."""
    text = "\n".join([headline(events, where), *body_lines(events)])
    ordered = sorted(events, key=lambda e: e.happened_at)
    return {
        "text": text,
        "source": "hydra",
        "group": where or None,
        "count": len(events),
        "alarms": sum(1 for e in events if e.event == "alarm"),
        "flags": sum(1 for e in events if e.event == "flag"),
        "events": [
            {"event": e.event, "at": e.happened_at.isoformat() + "Z", "text": e.text, **e.detail}
            for e in ordered[:STRUCTURED_EVENTS]
        ],
    }


def email_message(events: Sequence[Event], *, sender: str, recipient: str, where: str = "") -> EmailMessage:
    """A plain-text e-mail with the headline as subject and one line per event."""
    message = EmailMessage()
    message["Subject"] = headline(events, where)
    message["From"] = sender
    message["To"] = recipient
    message.set_content("\n".join([headline(events, where), "", *body_lines(events), ""]))
    return message


def alarm_text(plot_type: str, run: int | None, chunk: int | None, kind: str, message: str) -> str:
    """One alarm as a line: plot type, run and chunk first (what a shifter looks up), then the Keeper's words."""
    place = f"run {run} chunk {chunk}" if run is not None else "no run"
    what = {"bad": "Bad", "novel": "unlike the training data", "reference": "unlike its reference"}.get(kind, kind)
    words = f": {message}" if message and message.strip() else ""
    return f"alarm {plot_type} {place} ({what}){words}"


def flag_text(run: int, group: str, first_chunk: int, last_chunk: int, reasons: Sequence[Any]) -> str:
    """One Bad flag as a line: run, group, chunk range and its first reasons."""
    said = "; ".join(_reason(r) for r in list(reasons)[:3])
    more = f" (+{len(reasons) - 3} more)" if len(reasons) > 3 else ""
    return f"run {run} {group} Bad for chunks {first_chunk}-{last_chunk}" + (f": {said}{more}" if said else "")


def _reason(reason: Any) -> str:
    """A flag's reason as the flags step stores it ({"plot_type" or "group": …, "text": …} or {"rule": …})."""
    if not isinstance(reason, dict):
        return str(reason)
    who = reason.get("plot_type") or reason.get("group")
    said = next((reason[k] for k in ("text", "rule", "message") if isinstance(reason.get(k), str)), None)
    if who and said:
        return f"{who}: {said}"
    if who or said:
        return str(who or said)
    return ", ".join(f"{k} {v}" for k, v in list(reason.items())[:4])
