"""The date and number fields' parser (issue 18: inputs that failed silently): every form people type is
read, everything else is refused with a sentence saying why."""

from __future__ import annotations

from datetime import datetime

import pytest

from panel_app.when import WhenError, parse_number, parse_when

NOW = datetime(2026, 11, 30, 15, 45, 12, 345678)


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-11-28", datetime(2026, 11, 28)),
    ("2026/11/28", datetime(2026, 11, 28)),
    ("2026-11-28 14:30", datetime(2026, 11, 28, 14, 30)),
    ("2026-11-28 14:30:05", datetime(2026, 11, 28, 14, 30, 5)),
    ("2026-11-28T14:30:05Z", datetime(2026, 11, 28, 14, 30, 5)),
    ("2026-11-28 14:30 UTC", datetime(2026, 11, 28, 14, 30)),
    ("2026-11-28T16:30:00+02:00", datetime(2026, 11, 28, 14, 30)),
    ("now", datetime(2026, 11, 30, 15, 45, 12)),
    (" Now ", datetime(2026, 11, 30, 15, 45, 12)),
    ("today", datetime(2026, 11, 30)),
    ("yesterday", datetime(2026, 11, 29)),
    ("-24h", datetime(2026, 11, 29, 15, 45, 12)),
    ("-30m", datetime(2026, 11, 30, 15, 15, 12)),
    ("-7d", datetime(2026, 11, 23, 15, 45, 12)),
    ("2w ago", datetime(2026, 11, 16, 15, 45, 12)),
    ("-1.5h", datetime(2026, 11, 30, 14, 15, 12)),
])
def test_forms_people_type(text, expected):
    assert parse_when(text, NOW) == expected


@pytest.mark.parametrize("text", ["", "   ", None])
def test_an_empty_field_is_no_filter(text):
    assert parse_when(text, NOW) is None


@pytest.mark.parametrize("text", ["abc", "2026-13-01", "28.11.2026", "-24x", "tomorrow-ish"])
def test_other_text_is_refused_with_the_forms_understood(text):
    with pytest.raises(WhenError, match="is not a time: type a date"):
        parse_when(text, NOW)


def test_aware_times_become_naive_utc():
    aware = parse_when("2026-11-28T00:30:00-01:00", NOW)
    assert aware == datetime(2026, 11, 28, 1, 30) and aware.tzinfo is None


def test_numbers_are_taken_or_refused_with_a_reason():
    assert parse_number("48", low=0.25, high=744) == 48.0
    assert parse_number(" 0.5 ", low=0.25, high=744) == 0.5
    assert parse_number("100,000", low=0, high=10**9, integer=True) == 100000
    with pytest.raises(WhenError, match="-5 is outside 0–2,147,483,647"):
        parse_number("-5", low=0, high=2**31 - 1, integer=True)
    assert parse_number("", low=0, high=1) is None
    with pytest.raises(WhenError, match='"abc" is not a number'):
        parse_number("abc", low=0.25, high=744)
    with pytest.raises(WhenError, match="-5 hours is outside 0.25–744 hours"):
        parse_number("-5", low=0.25, high=744, unit="hours")
    with pytest.raises(WhenError, match="0 hours is outside"):
        parse_number("0", low=0.25, high=744, unit="hours")
    with pytest.raises(WhenError, match="100000 hours is outside"):
        parse_number("100000", low=0.25, high=744, unit="hours")
    with pytest.raises(WhenError, match="not a whole number"):
        parse_number("12.5", low=0, high=10**9, integer=True)
    with pytest.raises(WhenError, match="not a number"):
        parse_number("nan", low=0, high=1)
