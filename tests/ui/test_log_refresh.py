"""The Log page refreshes itself while open (issue 18): a confirmed Bad that arrives after the page was opened
appears without a reload. It failed on the code before (the page only changed when a control did)."""

from __future__ import annotations

import pytest
from pages_factory import add_bad_image
from pages_server import serve_populated, sign_in, stop_pages

pytestmark = pytest.mark.ui
REFRESH_S = 10  # HYDRA_STATUS_REFRESH_MS default


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    served = serve_populated(tmp_path_factory.mktemp("ui_log_refresh"))
    yield served
    stop_pages(served)


def test_log_page_shows_a_new_bad_without_a_reload(browser, served):
    context, page = sign_in(browser, served, "viewer")
    try:
        page.goto(f"{served.url}/log")
        page.get_by_text("confirmed Bad").first.wait_for(timeout=30000)
        assert page.get_by_text("run 121299 · chunk 7").count() == 0
        add_bad_image(served.db, served.settings, "TOF_timing", 121299, 7)
        page.get_by_text("run 121299 · chunk 7").first.wait_for(timeout=(2 * REFRESH_S + 5) * 1000)
        assert page.get_by_text("Traceback").count() == 0
    finally:
        context.close()
