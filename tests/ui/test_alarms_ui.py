"""The alarm history in Chromium: alarms newest first; one acknowledged on the Run page shows who did it and
when; the filters (acknowledged or not, kind, time window) narrow the list."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from pages_server import Served, serve_populated, sign_in, stop_pages
from playwright.sync_api import expect
from sqlalchemy import func, select

from hydra_assets.db.models import Alarm

pytestmark = pytest.mark.ui


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Served]:
    served = serve_populated(tmp_path_factory.mktemp("alarms_ui"))
    yield served
    stop_pages(served)


def test_alarm_history_shows_who_acknowledged_and_filters(browser, served):
    with served.db.read() as s:
        total = s.scalar(select(func.count()).select_from(Alarm))
    assert total >= 2  # the demo's confirmed Bad images raised alarms
    context, page = sign_in(browser, served, "labeler")
    try:
        page.goto(f"{served.url}/alarms")
        rows = page.locator("table.alarms tr[data-alarm]")
        rows.first.wait_for(timeout=30000)
        assert rows.count() == min(total, 50)
        times = rows.evaluate_all("rows => rows.map(r => r.cells[1].textContent)")
        assert times == sorted(times, reverse=True)  # newest first
        assert page.get_by_text("not acknowledged").count() >= 1

        page.goto(f"{served.url}/run")  # the shift crew acknowledges what the Run page shows
        page.get_by_role("button", name="Acknowledge alarm").click(timeout=30000)
        expect(page.get_by_role("button", name="Acknowledge alarm")).to_be_hidden(timeout=10000)
        with served.db.read() as s:
            acknowledged = s.scalar(select(func.count()).select_from(Alarm).where(Alarm.acknowledged_by == "labeler"))
        assert acknowledged >= 1

        page.goto(f"{served.url}/alarms")
        page.locator("table.alarms").wait_for(timeout=30000)
        page.locator("select").filter(has_text="acknowledged or not").select_option(label="acknowledged")
        expect(rows).to_have_count(acknowledged, timeout=10000)
        assert all(t.startswith("labeler") for t in rows.evaluate_all(
            "rows => rows.map(r => r.cells[6].textContent)"))
        page.locator("select").filter(has_text="acknowledged or not").select_option(label="not acknowledged")
        expect(rows).to_have_count(min(total - acknowledged, 50), timeout=10000)

        page.get_by_label("Raised from (UTC)").fill("2000-01-01")
        page.get_by_label("Raised from (UTC)").press("Enter")
        page.get_by_label("Raised until (UTC)").fill("2000-01-02")
        page.get_by_label("Raised until (UTC)").press("Enter")
        page.get_by_text("No alarm matches these filters").wait_for(timeout=10000)
        page.get_by_label("Raised until (UTC)").fill("tomorrow-ish")
        page.get_by_label("Raised until (UTC)").press("Enter")
        page.get_by_text(re.compile("is not a time")).wait_for(timeout=10000)  # said next to the field
        assert page.get_by_text("Traceback").count() == 0, served.server_log()
    finally:
        context.close()
