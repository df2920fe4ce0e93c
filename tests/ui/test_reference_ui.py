"""The reference comparison in real Chromium (issue 14), as a shift crew and an expert use it: a Run card's compare
link opens the image, its reference and the difference map with score and limit; the Plot Browser sorts by the
reference score; Trends draws it with its limit; in the Library an expert makes run N the reference (a new version
in the history) and a viewer is refused with nothing written."""

from __future__ import annotations

import re
import time

import pytest
from pages_factory import add_reference
from pages_server import serve_populated, sign_in, stop_pages
from sqlalchemy import func, select

from hydra_assets.db.models import ReferenceSet

pytestmark = pytest.mark.ui
PLOT_TYPE = "CDC_occupancy"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    served = serve_populated(tmp_path_factory.mktemp("ui_reference"))
    served.extra["reference"] = add_reference(served.db, served.settings, PLOT_TYPE, [121262])
    yield served
    stop_pages(served)


def versions(served) -> list[int]:  # type: ignore[no-untyped-def]
    with served.db.read() as s:
        return sorted(s.scalars(select(ReferenceSet.version)))


def wait_until(check, what: str, timeout: float = 15.0):  # type: ignore[no-untyped-def]
    """Poll `check()` (Playwright locators pierce Panel's shadow roots) until it is truthy; bounded."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(0.25)


def loaded_images(page, alts: list[str]) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """naturalWidth of the first <img> with each alt text, once all have loaded (bounded wait)."""

    def widths() -> dict[str, int]:
        found = {}
        for alt in alts:
            image = page.locator(f"img[alt='{alt}']").first
            found[alt] = image.evaluate("i => i.complete ? i.naturalWidth : 0") if image.count() else 0
        return found

    def ready() -> dict[str, int] | None:
        found = widths()
        return found if all(found.values()) else None

    return wait_until(ready, f"images {alts} loaded")


def test_a_run_cards_compare_link_shows_image_reference_difference_and_the_score(browser, served):
    made = served.extra["reference"]
    context, page = sign_in(browser, served, "viewer")
    page.goto(f"{served.url}/run")
    card = page.locator(f"div.card[data-plot-type='{PLOT_TYPE}']")
    card.wait_for(timeout=30000)
    assert re.search(r"(unlike its reference|reference score) [\d.]+", card.inner_text()) or "score" in card.inner_text()
    with context.expect_page(timeout=15000) as opened:
        card.get_by_text("compare", exact=True).click()
    view = opened.value
    view.wait_for_load_state()
    view.get_by_text(re.compile(r"limit")).first.wait_for(timeout=30000)
    widths = loaded_images(view, ["image", "reference", "difference"])
    assert all(w > 0 for w in widths.values()), widths
    text = view.locator("p.verdict").first.inner_text()
    assert f"{made['limit']:.2f}" in text and "reference v1 (run 121262)" in text
    assert "Traceback" not in view.content()
    context.close()


def test_the_browser_sorts_by_reference_score(browser, served):
    made = served.extra["reference"]
    context, page = sign_in(browser, served, "viewer")
    page.goto(f"{served.url}/browser")
    sort = wait_until(lambda: next((box for box in page.locator("select").all()
                                    if "reference score (highest first)" in box.locator("option").all_text_contents()),
                                   None), "the Sort box")
    sort.select_option(label="reference score (highest first)")
    page.get_by_text("Choose a plot type, plot group or system to sort by reference score").first.wait_for(
        timeout=10000)  # every image of every plot type: refused (bench/reference_pages.py)
    group = next(box for box in page.locator("select").all()
                 if {"any", "CDC"} <= set(box.locator("option").all_text_contents()))
    group.select_option(label="CDC")  # CDC_occupancy's plot group
    top = f"{max(score for score, _f in made['scores'].values()):.2f}"
    first = page.locator("div.tile").first
    wait_until(lambda: first.count() and top in first.inner_text(), f"first tile shows the top score {top}")
    assert "compare" in first.inner_text()
    context.close()


def test_trends_draws_the_reference_score_with_its_limit(browser, served):
    made = served.extra["reference"]
    context, page = sign_in(browser, served, "viewer")
    page.goto(f"{served.url}/trends")
    choose_plot_type(page)
    note = page.get_by_text(re.compile(r"Reference score: \d+ scored images"))
    note.first.wait_for(timeout=30000)
    assert f"Reference score: {len(made['scores'])} scored images" in note.first.inner_text()
    wait_until(lambda: page.locator("canvas").count() >= 2, "the weights and reference charts drawn")
    context.close()


def choose_plot_type(page) -> None:  # type: ignore[no-untyped-def]
    """Pick PLOT_TYPE in the page's plot type box (pages open on the first plot type of the catalogue)."""
    box = wait_until(lambda: next((b for b in page.locator("select").all()
                                   if PLOT_TYPE in b.locator("option").all_text_contents()), None), "plot type box")
    box.select_option(label=PLOT_TYPE)
    page.wait_for_timeout(1000)


def open_reference_tab(page, served):  # type: ignore[no-untyped-def]
    page.goto(f"{served.url}/library")
    choose_plot_type(page)
    page.get_by_text(f"hydra-{PLOT_TYPE} v2").first.wait_for(timeout=30000)  # the page redrew for it
    page.wait_for_timeout(1000)
    page.get_by_text("Reference", exact=True).first.click()
    page.get_by_text(re.compile(r"Current reference: v\d")).first.wait_for(timeout=10000)
    page.get_by_role("button", name="Use as reference").wait_for(timeout=10000)


def test_a_viewer_is_refused_and_nothing_is_written(browser, served):
    before = versions(served)
    context, page = sign_in(browser, served, "viewer")
    open_reference_tab(page, served)
    page.get_by_label("Use run(s) as reference").fill("121263")
    page.get_by_role("button", name="Use as reference").click()
    page.get_by_text(re.compile(r"Refused: .*edit_reference")).first.wait_for(timeout=10000)
    assert versions(served) == before
    context.close()


def test_an_unknown_run_is_said_next_to_the_field(browser, served):
    before = versions(served)
    context, page = sign_in(browser, served, "expert")
    open_reference_tab(page, served)
    page.get_by_label("Use run(s) as reference").fill("999999")
    page.get_by_role("button", name="Use as reference").click()
    page.get_by_text(re.compile(r"run 999999 is unknown to Hydra")).first.wait_for(timeout=10000)
    assert versions(served) == before
    context.close()


def test_an_expert_uses_run_n_as_reference_and_sees_it_in_the_history(browser, served):
    before = versions(served)
    context, page = sign_in(browser, served, "expert")
    open_reference_tab(page, served)
    page.get_by_label("Use run(s) as reference").fill("121263")
    page.get_by_role("button", name="Use as reference").click()
    page.get_by_text(re.compile(r"Current reference: v2")).first.wait_for(timeout=20000)
    history = page.locator("table.reference-history").first.inner_text()
    assert "121263" in history and "expert" in history
    assert versions(served) == [*before, 2]
    with served.db.read() as s:
        assert s.scalar(select(func.count(ReferenceSet.id)).where(ReferenceSet.active.is_(True))) == 1
    context.close()


def test_the_browser_uses_the_run_it_shows_as_reference(browser, served):
    before = versions(served)
    context, page = sign_in(browser, served, "expert")
    page.goto(f"{served.url}/browser")
    group = wait_until(lambda: next((box for box in page.locator("select").all()
                                     if {"any", "CDC"} <= set(box.locator("option").all_text_contents())), None),
                       "the Plot group box")
    group.select_option(label="CDC")  # one plot type: CDC_occupancy
    for label in ("Run from", "Run to"):
        field = page.get_by_label(label, exact=True)
        field.fill("121264")
        field.press("Enter")
    page.wait_for_timeout(1000)
    page.get_by_role("button", name="Use this run as reference").click()
    page.get_by_text(re.compile(r"reference version \d+ from run 121264")).first.wait_for(timeout=20000)
    assert versions(served) == [*before, before[-1] + 1]
    context.close()
