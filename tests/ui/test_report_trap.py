"""Training report trap (issue 18), in real Chromium: it failed on the code before the fix.

The one big button on each disagreement proposed the model's label, also where the human was right, and
there was no "human is right" action: a reviewer agreeing with the human could only leave the item
open or click through to a wrong label. Now "Model is right" and "Human is right" are equal choices;
"Human is right" keeps the label, records who checked it, and the item shows as settled after a reload.
"""

from __future__ import annotations

import re

import pytest
from pages_server import serve_populated, sign_in, stop_pages
from sqlalchemy import select

from hydra_assets.db.models import Image, LabelHistory
from panel_app.queries.report import CONFIRMED_SOURCE

pytestmark = pytest.mark.ui


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    served = serve_populated(tmp_path_factory.mktemp("ui_report_trap"))
    yield served
    stop_pages(served)


def test_human_is_right_is_an_equal_choice_keeps_the_label_and_stays_recorded(browser, served):
    context, page = sign_in(browser, served, "expert")
    try:
        page.goto(f"{served.url}/report")
        page.get_by_text("where the model disagrees").first.wait_for(timeout=30000)
        model_right = page.get_by_role("button", name=re.compile(r"^Model is right"))
        human_right = page.get_by_role("button", name=re.compile(r"^Human is right"))
        human_right.first.wait_for(timeout=10000)  # before the fix: no such action
        assert human_right.count() == model_right.count() >= 1
        # neither is the highlighted default: the page does not know who is right
        assert model_right.first.get_attribute("class") == human_right.first.get_attribute("class")
        assert "primary" not in (model_right.first.get_attribute("class") or "")

        shown = int(page.locator(".item img").first.get_attribute("alt").split()[-1])  # "image 163"
        with served.db.read() as s:
            label_before = s.scalar(select(Image.label_id).where(Image.id == shown))
        assert label_before is not None

        human_right.first.click()
        page.get_by_text("recorded that the human is right").wait_for(timeout=10000)
        with served.db.read() as s:
            assert s.scalar(select(Image.label_id).where(Image.id == shown)) == label_before
            confirmed = list(s.scalars(select(LabelHistory.image_id).where(LabelHistory.source == CONFIRMED_SOURCE)))
        assert confirmed == [shown]

        page.reload()
        page.get_by_text("where the model disagrees").first.wait_for(timeout=30000)
        page.get_by_text("✓ human is right").first.wait_for(timeout=10000)
        assert page.get_by_role("button", name=re.compile(r"^Human is right")).first.is_disabled()
        assert page.get_by_role("button", name=re.compile(r"^Model is right")).first.is_disabled()
        assert page.get_by_text("Traceback").count() == 0
    finally:
        context.close()
