"""The Labeler's ranked queues in real Chromium: pick "most uncertain" and see the smallest margins first,
answer the audit queue with Confirm and Fix (stored, audited), and an empty queue that says so."""

from __future__ import annotations

import time

import numpy as np
import pytest
from pages_server import serve_populated, sign_in, stop_pages
from sqlalchemy import func, select
from test_label_audit import add_audit_checks

from hydra_assets.db.models import AuditLog, Image, Inference, LabelCheck, LabelHistory
from hydra_assets.scores.queues import margins

pytestmark = pytest.mark.ui
PLOT_TYPE = "CDC_occupancy"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    served = serve_populated(tmp_path_factory.mktemp("ui_queues"), queue_extra=60)
    yield served
    stop_pages(served)


def open_labeler(browser, served, query: str = "", user: str = "labeler"):  # type: ignore[no-untyped-def]
    context, page = sign_in(browser, served, user)
    page.goto(f"{served.url}/labeler{query}")
    page.get_by_text("Label all on page").first.wait_for(timeout=30000)
    chooser = page.locator("select").first
    option = next(o for o in chooser.locator("option").all_text_contents() if o.startswith(PLOT_TYPE + " "))
    chooser.select_option(label=option)
    return context, page


def queue_chooser(page):  # type: ignore[no-untyped-def]
    return next(c for c in page.locator("select").all() if "most uncertain" in c.locator("option").all_text_contents())


def wait_for(condition, what: str, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def tile_ids(page) -> list[int]:  # type: ignore[no-untyped-def]
    return [int(i) for i in page.locator(".tile").evaluate_all("els => els.map(e => e.dataset.id)")]


def test_pick_most_uncertain_and_see_the_smallest_margins_first(browser, served):
    context, page = open_labeler(browser, served)
    try:
        queue_chooser(page).select_option(label="most uncertain")
        page.get_by_text("Queue: most uncertain").first.wait_for(timeout=30000)
        wait_for(lambda: page.locator(".tile").count() > 5, "the ranked tiles")
        shown = tile_ids(page)
        with served.db.read() as s:
            weights = {}
            for row in s.scalars(select(Inference).where(Inference.image_id.in_(shown)).order_by(Inference.id)):
                weights[row.image_id] = list(row.weights.values())
            unlabeled = s.scalar(select(func.count()).select_from(Image).where(Image.id.in_(shown),
                                                                               Image.label_id.is_(None)))
        got = [float(margins(np.array([weights[i]]))[0]) for i in shown]
        assert got == sorted(got), "the most uncertain queue is not ordered by margin"
        assert unlabeled == len(shown)
        # Remembered per browser: a new visit opens the same queue.
        page.goto(f"{served.url}/labeler")
        page.get_by_text("Queue: most uncertain").first.wait_for(timeout=30000)
    finally:
        context.close()


def test_audit_queue_confirm_and_fix(browser, served):
    demo = served.extra["demo"]
    doubted = add_audit_checks(served.db, demo.plot_types[PLOT_TYPE], demo.models[PLOT_TYPE][-1], issues=3)
    context, page = open_labeler(browser, served, "?queue=audit")
    try:
        page.get_by_text("Queue: likely mislabeled (audit)").first.wait_for(timeout=30000)
        wait_for(lambda: page.locator(".audit-item").count() == 3, "three audit rows")
        assert page.locator(".tile").count() == 0  # answered with the rows' buttons, not painted
        first = page.locator(".audit-item").first.inner_text()
        assert "labeled" in first and "suggested" in first
        page.get_by_role("button", name="Confirm").first.click()
        page.get_by_text("Label kept (confirmed).").first.wait_for(timeout=30000)
        wait_for(lambda: page.locator(".audit-item").count() == 2, "the confirmed row to leave")
        page.get_by_role("button", name="Fix:").first.click()
        page.get_by_text("Label fixed.").first.wait_for(timeout=30000)
        wait_for(lambda: page.locator(".audit-item").count() == 1, "the fixed row to leave")
        with served.db.read() as s:
            answers = dict(s.execute(select(LabelCheck.image_id, LabelCheck.resolution)
                                     .where(LabelCheck.image_id.in_(doubted))).all())
            assert answers == {doubted[0]: "confirmed", doubted[1]: "fixed", doubted[2]: None}
            fixed = s.get(Image, doubted[1])
            check = s.scalar(select(LabelCheck).where(LabelCheck.image_id == doubted[1]))
            assert fixed.label_id == check.suggested_label_id  # the suggested label's button comes first
            assert s.scalar(select(LabelHistory.source).where(LabelHistory.image_id == doubted[1])
                            .order_by(LabelHistory.id.desc()).limit(1)) == "audit"
            audited = s.scalars(select(AuditLog.user_name).where(AuditLog.action == "audit label")).all()
            assert audited == ["labeler", "labeler"]
    finally:
        context.close()


def test_an_empty_queue_says_so_and_writes_nothing(browser, served):
    with served.db.read() as s:
        before = s.scalar(select(func.count()).select_from(AuditLog))
    context, page = open_labeler(browser, served, "?queue=disagreement")
    try:
        page.get_by_text("Nothing in this queue: disagreement: active vs challenger").first.wait_for(timeout=30000)
        assert page.locator(".tile").count() == 0
        assert "Traceback" not in page.content()
        with served.db.read() as s:
            assert s.scalar(select(func.count()).select_from(AuditLog)) == before
        assert "Callback failed" not in served.server_log()
    finally:
        context.close()
