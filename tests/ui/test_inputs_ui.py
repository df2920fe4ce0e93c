"""Inputs that failed silently (issue 18): number fields on Log, Trends and Browser reverted "abc", -5, 0 and
100000 without a word; date fields took only `YYYY-MM-DD HH:MM:SS`; emptying a date field kept the old
filter until a reload; filters were forgotten on reload.  Each test failed on the code before."""

from __future__ import annotations

import pytest
from pages_server import serve_populated, sign_in, stop_pages

pytestmark = pytest.mark.ui
WAIT = 30000


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    served = serve_populated(tmp_path_factory.mktemp("ui_inputs"))
    yield served
    stop_pages(served)


@pytest.fixture
def page(browser, served):
    context, page = sign_in(browser, served, "viewer", width=1500)
    page.set_default_timeout(WAIT)
    yield page
    context.close()


def open_page(page, served, slug: str, loaded: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{served.url}/{slug}")
    page.get_by_text(loaded).first.wait_for()


def type_into(page, label: str, text: str, *, enter: bool = True) -> None:  # type: ignore[no-untyped-def]
    field = page.get_by_label(label, exact=True)
    field.fill(text)
    if enter:
        field.press("Enter")


def saved(page, key: str, text: str) -> None:  # type: ignore[no-untyped-def]
    """Wait until this browser holds the page's settings with `text` in them (they are written as they change)."""
    page.wait_for_function("([key, text]) => document.cookie.split('; ').some((c) => c.startsWith(key + '=') && "
                           "decodeURIComponent(c).includes(text))", arg=[key, text])


@pytest.mark.parametrize(("slug", "loaded"), [("log", "confirmed Bad"), ("trends", "classifications,")])
@pytest.mark.parametrize(("typed", "reason"), [("abc", '"abc" is not a number'), ("-5", "-5 hours is outside"),
                                               ("0", "0 hours is outside"), ("100000", "100000 hours is outside")])
def test_a_refused_window_says_why_next_to_the_field_and_changes_nothing(page, served, slug, loaded, typed, reason):
    open_page(page, served, slug, loaded)
    before = page.get_by_text(loaded).first.inner_text()
    type_into(page, "Window (hours)", typed)
    page.get_by_text(reason).wait_for()
    page.get_by_text("still 24 hours").wait_for()
    assert page.get_by_text(loaded).first.inner_text() == before
    type_into(page, "Window (hours)", "48")
    page.get_by_text(reason).wait_for(state="detached")
    assert page.get_by_text("Traceback").count() == 0


def test_browser_run_numbers_are_taken_or_refused_with_a_reason(page, served):
    open_page(page, served, "browser", "images 1–")
    type_into(page, "Run from", "-5")
    page.get_by_text("-5 is outside").wait_for()
    type_into(page, "Run from", "abc")
    page.get_by_text('"abc" is not a number').wait_for()
    page.get_by_text("images 1–").first.wait_for()  # nothing was applied
    type_into(page, "Run from", "100000")  # a real run number: taken
    page.get_by_text('"abc" is not a number').wait_for(state="detached")
    page.get_by_text("images 1–").first.wait_for()
    type_into(page, "Run from", "999999")
    page.get_by_text("No image matches these filters").wait_for()


@pytest.mark.parametrize("typed", ["2026-11-28", "2026-11-28 14:30", "yesterday", "-24h", "-30m", "-7d", "now"])
def test_browser_dates_take_the_forms_people_type(page, served, typed):
    open_page(page, served, "browser", "images 1–")
    type_into(page, "Received until (UTC)", typed)
    page.locator(".understood").filter(has_text=" UTC").first.wait_for()
    assert page.locator(".refused").filter(has_text="not a time").count() == 0


def test_emptying_a_date_field_drops_the_filter_at_once(page, served):
    open_page(page, served, "browser", "images 1–")
    type_into(page, "Received from (UTC)", "abc")
    page.get_by_text('"abc" is not a time').wait_for()
    type_into(page, "Received from (UTC)", "2099-01-01")
    page.get_by_text("No image matches these filters").wait_for()
    type_into(page, "Received from (UTC)", "", enter=False)  # no Enter, no leaving the field
    page.get_by_text("images 1–").first.wait_for()


def test_filters_survive_a_reload(page, served):
    open_page(page, served, "browser", "images 1–")
    type_into(page, "Run from", "121263")
    type_into(page, "Received from (UTC)", "-7d")
    saved(page, "hydra_browser", "-7d")
    open_page(page, served, "browser", "images 1–")
    assert page.get_by_label("Run from", exact=True).input_value() == "121263"
    assert page.get_by_label("Received from (UTC)", exact=True).input_value() == "-7d"
    open_page(page, served, "log", "confirmed Bad")
    type_into(page, "Window (hours)", "36")
    page.get_by_role("button", name="unconfirmed", exact=True).click()
    saved(page, "hydra_log", "unconfirmed")
    open_page(page, served, "log", "unconfirmed")
    assert page.get_by_label("Window (hours)", exact=True).input_value() == "36"
    assert "bk-active" in (page.get_by_role("button", name="unconfirmed", exact=True).get_attribute("class") or "")
    open_page(page, served, "trends", "classifications,")
    type_into(page, "Window (hours)", "72")
    saved(page, "hydra_trends", "72")
    open_page(page, served, "trends", "classifications,")
    assert page.get_by_label("Window (hours)", exact=True).input_value() == "72"
