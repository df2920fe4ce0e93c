"""What people type into a date field, read as a UTC time: a date, a date and time, "now", "today",
"yesterday", or a time back from now ("-24h", "-30m", "-7d", "2w ago").  Pure: `now` is passed in.

Times are naive UTC like everything the pages show.  A refused text raises `WhenError` with a sentence
that says what would be understood, for the page to print next to the field.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

FORMS = 'a date (2026-11-28), a date and time (2026-11-28 14:30), "now", "today", "yesterday", or "-24h", "-30m", "-7d"'
UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
RELATIVE = re.compile(r"^-?\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)(?:\s+ago)?$")


class WhenError(ValueError):
    """The text is not a time the pages understand; str() says which forms are."""


def parse_when(text: str | None, now: datetime) -> datetime | None:
    """The UTC time `text` means, or None for an empty field (no filter)."""
    raw = (text or "").strip()
    if not raw:
        return None
    word = raw.lower()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if word == "now":
        return now.replace(microsecond=0)
    if word == "today":
        return midnight
    if word == "yesterday":
        return midnight - timedelta(days=1)
    relative = RELATIVE.match(word)
    if relative:
        amount, unit = float(relative.group(1)), relative.group(2)
        return (now - timedelta(seconds=amount * UNITS[unit])).replace(microsecond=0)
    cleaned = raw.replace("/", "-").removesuffix("UTC").removesuffix("utc").strip()
    if cleaned.endswith(("Z", "z")):
        cleaned = cleaned[:-1] + "+00:00"
    try:
        value = datetime.fromisoformat(cleaned)
    except ValueError:
        raise WhenError(f'"{raw}" is not a time: type {FORMS}') from None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def parse_number(text: str | None, *, low: float, high: float, integer: bool = False,
                 unit: str = "") -> float | int | None:
    """The number in `text` if it lies in [low, high] (an integer when `integer`), None for an empty field;
    otherwise `WhenError` saying why not (not a number, a fraction, too small, too large)."""
    raw = (text or "").strip().replace(",", "").replace("_", "")
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise WhenError(f'"{text.strip()}" is not a number') from None
    if value != value or value in (float("inf"), float("-inf")):
        raise WhenError(f'"{text.strip()}" is not a number')
    if integer and value != int(value):
        raise WhenError(f"{raw} is not a whole number")
    suffix = f" {unit}" if unit else ""
    if value < low or value > high:
        raise WhenError(f"{raw}{suffix} is outside {_plain(low)}–{_plain(high)}{suffix}")
    return int(value) if integer else value


def _plain(number: float) -> str:
    """0.25, 744, 2,147,483,647: never 2.14748e+09."""
    return f"{number:,.0f}" if number == int(number) else f"{number:g}"


__all__ = ["FORMS", "WhenError", "parse_number", "parse_when"]
