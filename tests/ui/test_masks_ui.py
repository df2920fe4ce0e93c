"""The Library's Mask tab in real Chromium: an expert types a rectangle, saves, and sees the new version in the
history; a bad rectangle is refused next to the list with nothing written; a box drawn on the image fills the
list; a viewer's Save is refused by the server."""

from __future__ import annotations

import re

import pytest
from pages_server import serve_populated, sign_in, stop_pages
from sqlalchemy import select

from hydra_assets.db.models import PlotType, PlotTypeMask

pytestmark = pytest.mark.ui
PLOT_TYPE = "BCAL_energy"  # the first plot type of the catalogue: the Library opens on it


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    served = serve_populated(tmp_path_factory.mktemp("ui_masks"))
    yield served
    stop_pages(served)


@pytest.fixture(autouse=True)
def no_failed_callback(served):
    """A server-side callback that fails is invisible in the browser: its log must not show one."""
    yield
    assert "Callback failed" not in served.log.read_text(errors="replace")


def versions(served) -> list[tuple[int, list, str]]:  # type: ignore[no-untyped-def]
    with served.db.read() as s:
        return [(m.version, m.regions, m.created_by) for m in s.scalars(
            select(PlotTypeMask).join(PlotType, PlotType.id == PlotTypeMask.plot_type_id)
            .where(PlotType.name == PLOT_TYPE).order_by(PlotTypeMask.version))]


def open_mask_tab(page, served):  # type: ignore[no-untyped-def]
    page.goto(f"{served.url}/library")
    page.get_by_text("Confusion matrix").first.wait_for(timeout=30000)
    # the plot type the Library opens on (choosing another re-renders the tabs under the test's hands)
    assert page.locator("select").first.evaluate("s => s.options[s.selectedIndex].text") == PLOT_TYPE
    page.get_by_text("Mask", exact=True).first.click()
    page.get_by_role("button", name="Save mask").wait_for(timeout=10000)
    page.wait_for_timeout(500)
    return page.locator("textarea:visible").first  # the Library re-renders its tabs: older copies are hidden


def next_to(page, box, text: str) -> None:  # type: ignore[no-untyped-def]
    """`text` appears just below the list (its note), not only somewhere on the page."""
    message = page.get_by_text(re.compile(text)).first
    message.wait_for(timeout=10000)
    field, said = box.bounding_box(), message.bounding_box()
    assert field and said and field["y"] < said["y"] < field["y"] + field["height"] + 120, (field, said)
    assert abs(said["x"] - field["x"]) < 200, (field, said)


def test_type_a_rectangle_save_and_see_the_new_version(browser, served):
    assert versions(served) == []
    context, page = sign_in(browser, served, "expert")
    box = open_mask_tab(page, served)
    page.get_by_text("No mask yet for this plot type").first.wait_for(timeout=10000)

    # a bad value: said next to the list, nothing written
    box.fill("0.5, 0, 0.2, 1")
    page.get_by_role("button", name="Save mask").click()
    next_to(page, box, "reversed corners")
    box.fill("0, 0, 1, 1")
    page.get_by_role("button", name="Save mask").click()
    next_to(page, box, "covers all of the image")
    assert versions(served) == []

    # a good one: a new version, shown in the history with who
    box.fill("0, 0, 1, 0.1\n0.48, 0.2, 0.52, 1")
    page.get_by_label("Comment (optional)").fill("title and dead channel")
    page.get_by_role("button", name="Save mask").click()
    page.get_by_text(re.compile(r"Mask version 1 saved \(2 rectangles\)")).wait_for(timeout=10000)
    history = page.locator("table.mask-history:visible")
    history.get_by_text("0,0,1,0.1; 0.48,0.2,0.52,1").wait_for(timeout=10000)
    assert "expert" in history.inner_text() and "title and dead channel" in history.inner_text()
    assert versions(served) == [(1, [[0.0, 0.0, 1.0, 0.1], [0.48, 0.2, 0.52, 1.0]], "expert")]

    # saving the same list again writes nothing; Clear mask is a new version with no rectangles
    page.get_by_role("button", name="Save mask").click()
    page.get_by_text("Nothing changed: the mask is already so.").wait_for(timeout=10000)
    page.get_by_role("button", name="Clear mask").click()
    page.get_by_text(re.compile(r"Mask version 2 saved \(cleared\)")).wait_for(timeout=10000)
    assert [v[:2] for v in versions(served)] == [(1, [[0.0, 0.0, 1.0, 0.1], [0.48, 0.2, 0.52, 1.0]]), (2, [])]
    context.close()


def test_a_box_drawn_on_the_image_fills_the_list(browser, served):
    context, page = sign_in(browser, served, "expert")
    box = open_mask_tab(page, served)
    canvas = page.locator("canvas:visible").last
    canvas.wait_for(timeout=10000)
    frame = canvas.bounding_box()
    assert frame is not None
    x, y, w, h = frame["x"], frame["y"], frame["width"], frame["height"]
    page.keyboard.down("Shift")
    page.mouse.move(x + 0.1 * w, y + 0.6 * h)
    page.mouse.down()
    page.mouse.move(x + 0.2 * w, y + 0.7 * h, steps=5)
    page.mouse.move(x + 0.3 * w, y + 0.8 * h, steps=5)
    page.mouse.up()
    page.keyboard.up("Shift")
    for _ in range(50):  # bounded: 10 s
        if box.input_value().strip():
            break
        page.wait_for_timeout(200)
    drawn = [float(v) for v in box.input_value().strip().split(",")]
    assert len(drawn) == 4 and drawn[0] < drawn[2] and drawn[1] < drawn[3]
    assert 0.0 <= drawn[0] < 0.35 and 0.45 < drawn[3] <= 1.0  # roughly where it was drawn (below the toolbar)
    context.close()


def test_a_viewer_is_refused_by_the_server(browser, served):
    before = versions(served)
    context, page = sign_in(browser, served, "viewer")
    box = open_mask_tab(page, served)
    page.get_by_text(re.compile("needs the edit_reference or edit_thresholds")).first.wait_for(timeout=10000)
    box.fill("0, 0, 0.1, 1")
    page.get_by_role("button", name="Save mask").click()
    page.get_by_text(re.compile(r"Refused: .*Nothing was changed")).wait_for(timeout=10000)
    assert versions(served) == before
    context.close()
