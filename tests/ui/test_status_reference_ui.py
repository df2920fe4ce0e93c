"""The Status page shows the reference step's timings (stage "reference") beside the other steps', in Chromium."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pages_server import make_home, start_pages, stop_pages

from hydra_assets.db.models import StageTiming, utcnow

pytestmark = pytest.mark.ui


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    settings = make_home(tmp_path_factory.mktemp("ui_status_reference"))
    from hydra_assets.db.engine import HydraDB

    db = HydraDB(settings.db_url)
    at = utcnow() - timedelta(minutes=10)

    def work(session) -> None:  # type: ignore[no-untyped-def]
        timings = [("feeder", 310.0), ("predict", 820.0), ("reference", 11.0), ("reference", 13.0),
                   ("reference", 52.0), ("keeper", 95.0)]
        for k, (stage, ms) in enumerate(timings):
            session.add(StageTiming(stage=stage, run_number=130000, chunk=k, image_count=1, duration_ms=ms,
                                    started_at=at, finished_at=at))

    db.write(work, what="stage timings")
    db.dispose()
    served = start_pages(settings, "--no-auth")
    yield served
    stop_pages(served)


def test_status_lists_the_reference_steps_timings(browser, served):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(f"{served.url}/status")
    summary = page.get_by_text("reference: median").first
    summary.wait_for(timeout=30000)
    text = summary.inner_text()
    assert "reference: median 13 ms, p95 52 ms" in text, text
    order = [text.index(stage) for stage in ("feeder: median", "predict: median", "reference: median", "keeper: median")]
    assert order == sorted(order), text  # in the pipeline's order: the reference step between Predict and the Keeper
    context.close()
