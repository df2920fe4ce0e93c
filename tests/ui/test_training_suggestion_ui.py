"""The Library's suggested training in real Chromium: the banner says why, offers the newest runs, and the
one action refuses runs without images and a user without activate_models, with nothing started."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from pages_server import serve_populated, sign_in, stop_pages
from sqlalchemy import func, select, update

from hydra_assets.db.models import AuditLog, Image, LabelHistory, Model, utcnow

pytestmark = pytest.mark.ui
PLOT_TYPE = "CDC_occupancy"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    served = serve_populated(tmp_path_factory.mktemp("ui_training_suggestion"), queue_extra=60)
    demo = served.extra["demo"]
    plot_id = demo.plot_types[PLOT_TYPE]

    def behind(s):  # the active version trained a month ago; 55 images labeled since
        s.execute(update(Model).where(Model.plot_type_id == plot_id).values(created_at=utcnow() - timedelta(days=30)))
        label_id = demo.labels[PLOT_TYPE]["Good"]
        images = s.scalars(select(Image).where(Image.plot_type_id == plot_id).order_by(Image.id).limit(55)).all()
        for image in images:
            image.label_id = image.label_id or label_id
            s.add(LabelHistory(image_id=image.id, label_id=image.label_id, labeled_at=utcnow(), source="labeler"))

    served.db.write(behind)
    yield served
    stop_pages(served)


def started(served) -> int:  # type: ignore[no-untyped-def]
    with served.db.read() as s:
        return int(s.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "train and backtest")))


def open_library(browser, served, user: str):  # type: ignore[no-untyped-def]
    context, page = sign_in(browser, served, user)
    page.goto(f"{served.url}/library")
    chooser = page.locator("select").first
    chooser.wait_for(timeout=30000)
    option = next(o for o in chooser.locator("option").all_text_contents() if o.startswith(PLOT_TYPE))
    chooser.select_option(label=option)
    page.get_by_text("Training suggested").first.wait_for(timeout=30000)
    return context, page


def test_banner_offers_recent_runs_and_refuses_runs_without_images(browser, served):
    context, page = open_library(browser, served, "expert")
    try:
        page.get_by_text(re.compile(r"\d+ new label\(s\) since hydra-CDC_occupancy/\d+ was trained")).first.wait_for(
            timeout=10000)
        field = page.get_by_label("Backtest on runs")
        assert re.fullmatch(r"\d+-\d+", field.input_value())  # the newest runs with images, offered
        field.fill("500-600")
        page.get_by_role("button", name="Train, backtest and offer activation").click()
        page.get_by_text(re.compile(r"Nothing started: .*no stored images in runs 500-600")).first.wait_for(
            timeout=10000)
        assert started(served) == 0
        assert "Callback failed" not in served.server_log()
    finally:
        context.close()


def test_a_labeler_may_not_start_training(browser, served):
    context, page = open_library(browser, served, "labeler")
    try:
        page.get_by_role("button", name="Train, backtest and offer activation").click()
        page.get_by_text(re.compile(r"Nothing started: .*activate_models")).first.wait_for(timeout=10000)
        with served.db.read() as s:
            refused = s.scalars(select(AuditLog.allowed).where(AuditLog.action == "train and backtest")).all()
        assert refused == [False]
    finally:
        context.close()
