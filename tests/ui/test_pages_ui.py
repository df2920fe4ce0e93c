"""The pages in real Chromium: each loads cleanly on an empty and a populated database, the Labeler stores
what is painted (and refuses a viewer), the Run page shows a new Bad within 3 s, images need the login."""

from __future__ import annotations

import re
import time

import pytest
from pages_factory import EMPTY_MESSAGES, add_bad_image, make_users_only
from pages_server import make_home, serve_populated, sign_in, start_pages, stop_pages
from sqlalchemy import func, select

from hydra_assets.db.models import Image, LabelHistory

pytestmark = pytest.mark.ui

POPULATED = {  # page -> text a person sees once it has loaded
    "run": "showing",
    "log": "confirmed Bad",
    "library": "Confusion matrix",
    "labeler": "Label all on page",
    "status": "images in 24 h",
    "browser": "images 1–",
    "trends": "classifications,",
    "report": "where the model disagrees",
    "compare": "Nothing to compare this image with",  # the demo has no reference: the newest card, said so
}


@pytest.fixture(scope="module")
def populated(tmp_path_factory):
    served = serve_populated(tmp_path_factory.mktemp("ui_populated"))
    yield served
    stop_pages(served)


@pytest.fixture(scope="module")
def empty(tmp_path_factory):
    settings = make_home(tmp_path_factory.mktemp("ui_empty"))
    from hydra_assets.db.engine import HydraDB

    db = HydraDB(settings.db_url)
    make_users_only(db)
    db.dispose()
    served = start_pages(settings, "--no-auth")
    yield served
    stop_pages(served)


class Watch:
    """What went wrong in the browser: page errors, console errors, requests leaving the machine."""

    def __init__(self, page, base: str) -> None:  # type: ignore[no-untyped-def]
        self.errors: list[str] = []
        self.outside: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        page.on("console", lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None)
        page.on("request", lambda r: self.outside.append(r.url)
                if not r.url.startswith((base, "data:", "blob:", "ws://127.0.0.1")) else None)


def open_page(page, served, slug: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{served.url}/{slug}")
    page.locator("nav").wait_for(timeout=30000)
    page.get_by_text(expected).first.wait_for(timeout=30000)


def assert_clean(page, watch: Watch, served) -> None:  # type: ignore[no-untyped-def]
    assert page.get_by_text("Traceback").count() == 0, served.server_log()
    assert page.get_by_text("could not load").count() == 0, served.server_log()
    assert watch.errors == [], (watch.errors, watch.outside)
    assert watch.outside == [], f"requests left the machine: {watch.outside}"


def test_every_page_loads_on_the_populated_database(browser, populated):
    context, page = sign_in(browser, populated, "viewer")
    watch = Watch(page, populated.url)
    for slug, expected in POPULATED.items():
        open_page(page, populated, slug, expected)
        assert page.get_by_text("viewer (viewer)").count() == 1  # the login is mapped to the Hydra user
        assert_clean(page, watch, populated)
    context.close()


def test_every_page_loads_on_an_empty_database(browser, empty):
    context = browser.new_context()
    page = context.new_page()
    watch = Watch(page, empty.url)
    for slug, expected in EMPTY_MESSAGES.items():
        open_page(page, empty, slug, expected)
        assert_clean(page, watch, empty)
    context.close()


def _choose_plot_type(page, name: str) -> None:  # type: ignore[no-untyped-def]
    select = page.locator("select").first
    option = next(o for o in select.locator("option").all_text_contents() if o.startswith(name + " "))
    select.select_option(label=option)
    page.get_by_text(re.compile(r"\d+ images on this page")).first.wait_for()


def _paint_range(page, first: int, last: int) -> None:  # type: ignore[no-untyped-def]
    tiles = page.locator(".tile")
    tiles.nth(last).wait_for()
    tiles.nth(first).click()
    tiles.nth(last).click(modifiers=["Shift"])


def _labeled(served, image_ids) -> int:  # type: ignore[no-untyped-def]
    with served.db.read() as s:
        return s.scalar(select(func.count()).select_from(Image).where(Image.id.in_(image_ids),
                                                                       Image.label_id.is_not(None))) or 0


def test_labeler_paints_twenty_and_apply_stores_twenty(browser, populated):
    demo = populated.extra["demo"]
    context, page = sign_in(browser, populated, "labeler")
    watch = Watch(page, populated.url)
    open_page(page, populated, "labeler", "Label all on page")
    _choose_plot_type(page, "CDC_occupancy")
    with populated.db.read() as s:
        before = s.scalar(select(func.count()).select_from(LabelHistory)) or 0
    page.keyboard.press("2")  # key 2 picks the second palette entry: Bad
    page.locator(".palette button.active").get_by_text("Bad").wait_for()
    _paint_range(page, 0, 19)
    assert page.locator(".tile.painted").count() == 20
    page.get_by_role("button", name="Apply").click()
    page.get_by_text("Stored 20 label(s)").wait_for(timeout=10000)
    with populated.db.read() as s:
        rows = s.scalars(select(LabelHistory).order_by(LabelHistory.id.desc()).limit(20)).all()
        after = s.scalar(select(func.count()).select_from(LabelHistory))
    assert after - before == 20
    assert {r.user_id for r in rows} == {demo.users["labeler"]}
    assert {r.label_id for r in rows} == {demo.labels["CDC_occupancy"]["Bad"]}
    assert page.locator(".tile.painted").count() == 0  # the page was refilled with the next images
    assert_clean(page, watch, populated)
    context.close()


def test_viewer_cannot_apply_labels(browser, populated):
    context, page = sign_in(browser, populated, "viewer")
    open_page(page, populated, "labeler", "Label all on page")
    _choose_plot_type(page, "CDC_occupancy")
    page.get_by_text("read only").first.wait_for()
    ids = [int(i) for i in page.locator(".tile").evaluate_all("els => els.map(e => e.dataset.id)")][:5]
    _paint_range(page, 0, 4)
    assert page.locator(".tile.painted").count() == 5
    with populated.db.read() as s:
        before = s.scalar(select(func.count()).select_from(LabelHistory))
    page.get_by_role("button", name="Apply").click()
    page.get_by_text("Refused, nothing stored").wait_for(timeout=10000)
    with populated.db.read() as s:
        assert s.scalar(select(func.count()).select_from(LabelHistory)) == before
    assert _labeled(populated, ids) == 0
    context.close()


def test_run_page_shows_a_new_bad_within_three_seconds(browser, populated):
    from sqlalchemy import update

    from hydra_assets.db.models import Alarm, utcnow

    # The test data's alarms were seen by an earlier shift; unacknowledged ones would show when the page opens.
    populated.db.write(lambda s: s.execute(update(Alarm).where(Alarm.acknowledged_at.is_(None))
                                           .values(acknowledged_by="earlier shift", acknowledged_at=utcnow())))
    context, page = sign_in(browser, populated, "labeler")
    watch = Watch(page, populated.url)
    open_page(page, populated, "run", "showing")
    page.wait_for_timeout(1500)  # the page is polling
    assert page.get_by_text("ALARM: confirmed Bad").count() == 0
    started = time.monotonic()
    add_bad_image(populated.db, populated.settings, "TOF_timing", 121299, 7)
    page.get_by_text("ALARM: confirmed Bad").wait_for(timeout=3000)
    page.get_by_text("run 121299 · chunk 7").wait_for(timeout=3000)
    elapsed = time.monotonic() - started
    assert elapsed <= 3.0
    states = page.locator(".card").evaluate_all("cards => cards.map(c => [c.dataset.plotType, c.classList[1]])")
    position = [name for name, _ in states].index("TOF_timing")
    assert all(state == "bad" for _, state in states[: position + 1])  # among the Bad cards, top-left
    card = page.locator('.card[data-plot-type="TOF_timing"]')
    assert "BAD" in card.inner_text()
    card.locator("img").first.evaluate("img => img.decode()")  # the new image loads through the handler
    assert card.locator("img").first.evaluate("img => img.naturalWidth") > 0
    assert_clean(page, watch, populated)
    context.close()


def test_images_need_the_login(browser, populated):
    anonymous = browser.new_context()
    response = anonymous.request.get(f"{populated.url}/hydra/image/1?size=thumb", max_redirects=0)
    assert response.status in (302, 303) and "login" in response.headers.get("location", "")
    assert anonymous.request.get(f"{populated.url}/run", max_redirects=0).status in (302, 303)
    anonymous.close()
    context, _page = sign_in(browser, populated, "viewer")
    response = context.request.get(f"{populated.url}/hydra/image/1?size=thumb")
    assert response.status == 200 and response.headers["content-type"] == "image/png"
    assert context.request.get(f"{populated.url}/hydra/image/999999").status == 404
    context.close()
