"""Two more traps of issue 18 as a user met them in Chromium; each test failed on the code before its fix.

- Status said "2082 images in 24 h (86.8 per hour)" when all of them had arrived in the last 20 minutes.
- The Run page's alarm said each fact twice ("CDC_timing run 130000 chunk 9: Bad — CDC_timing: Bad (100%) in
  run 130000, chunk 9 …"); the Keeper's message now says them once and the page shows it as it is.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from pages_server import make_home, start_pages, stop_pages

from hydra_assets import catalog
from hydra_assets.db.models import Alarm, Image, Inference, RunTime, utcnow

pytestmark = pytest.mark.ui
ALARM_TEXT = "CDC_timing run 130000 chunk 9: Bad, weight 1.00 ≥ threshold 0.90"  # ingest/keeper.alarm_message


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    settings = make_home(tmp_path_factory.mktemp("ui_more_traps"))
    from hydra_assets.db.engine import HydraDB

    db = HydraDB(settings.db_url)
    now = utcnow()

    def work(session) -> None:  # type: ignore[no-untyped-def]
        plot_type = catalog.add_plot_type(session, "CDC_timing", ["Good", "Bad"], ["Bad"])
        bad = next(label for label in catalog.labels_of(session, plot_type) if label.name == "Bad")
        images = [Image(plot_type_id=plot_type.id, digest=f"{k:064d}", file_name=f"CDC_timing-130000-{k:04d}.png",
                        run_number=130000, chunk=k, received_at=now - timedelta(minutes=20) + timedelta(seconds=20 * k))
                  for k in range(60)]
        session.add_all(images)
        session.flush()
        alarmed = images[9]
        inference = Inference(image_id=alarmed.id, plot_type_id=plot_type.id, run_number=130000, chunk=9,
                              model_key="hydra-CDC_timing/1", weights={"Good": 0.0, "Bad": 1.0}, top_label_id=bad.id,
                              top_weight=1.0, confirmed=True, is_bad=True, flagged=True, classified_at=now)
        session.add(inference)
        session.flush()
        session.add(RunTime(plot_type_id=plot_type.id, image_id=alarmed.id, inference_id=inference.id,
                            run_number=130000, chunk=9, updated_at=now))
        session.add(Alarm(inference_id=inference.id, image_id=alarmed.id, plot_type_id=plot_type.id, label_id=bad.id,
                          message=ALARM_TEXT, raised_at=now))

    db.write(work, what="trap data")
    db.dispose()
    served = start_pages(settings, "--no-auth")
    yield served
    stop_pages(served)


def test_status_rate_is_over_the_minutes_the_images_arrived_in(browser, served):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(f"{served.url}/status")
    summary = page.get_by_text("images in 24 h").first
    summary.wait_for(timeout=30000)
    text = summary.inner_text()
    assert "60 images in 24 h, all in the last 20 min" in text, text
    assert "per hour since the first" in text and "(2.5 per hour)" not in text
    context.close()


def test_run_page_alarm_says_each_fact_once(browser, served):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(f"{served.url}/run")
    banner = page.locator(".alarm").first
    banner.wait_for(timeout=30000)
    text = banner.inner_text()
    assert ALARM_TEXT in text, text
    assert text.count("CDC_timing") == 1 and text.count("130000") == 1, text
    context.close()
