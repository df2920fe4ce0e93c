"""The Map page in real Chromium: the points of a plot type's images, a lasso drawn with the mouse selects some,
painting them as Bad stores the labels (the Labeler's Editor then shows them labeled Bad), and "more like this"
shows an image's neighbours as tiles."""

from __future__ import annotations

import re
import time

import pytest
from pages_server import serve_populated, sign_in, stop_pages
from sqlalchemy import select

from hydra_assets.db.models import Image, LabelHistory

pytestmark = pytest.mark.ui
PLOT_TYPE = "CDC_occupancy"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    served = serve_populated(tmp_path_factory.mktemp("ui_map"))
    yield served
    stop_pages(served)


def number(page, css: str) -> int:  # type: ignore[no-untyped-def]
    return int(page.locator(css).first.inner_text())


def wait_for(condition, what: str, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def open_map(browser, served, query: str = f"plot_type={PLOT_TYPE}"):  # type: ignore[no-untyped-def]
    context, page = sign_in(browser, served, "labeler")
    page.goto(f"{served.url}/map?{query}")
    page.locator("b.map-count").first.wait_for(timeout=60000)
    return context, page


def test_lasso_paint_as_bad_then_the_labeler_shows_them(browser, served):
    demo = served.extra["demo"]
    context, page = open_map(browser, served)
    try:
        assert number(page, "b.map-count") == len(demo.images[PLOT_TYPE])
        canvas = page.locator(".bk-Canvas canvas, canvas").first
        canvas.wait_for(timeout=30000)
        box = canvas.bounding_box()
        assert box is not None and box["width"] > 200
        # a real lasso: a polygon over the left part of the plot, drawn with the mouse (the lasso is the active drag)
        left, top = box["x"] + box["width"] * 0.05, box["y"] + box["height"] * 0.1
        right, bottom = box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.95
        corners = [(left, bottom), (left, top), (right, top), (right, bottom), (left, bottom)]
        page.mouse.move(*corners[0])
        page.mouse.down()
        for (x0, y0), (x1, y1) in zip(corners, corners[1:], strict=False):
            for step in range(1, 9):
                page.mouse.move(x0 + (x1 - x0) * step / 8, y0 + (y1 - y0) * step / 8)
        page.mouse.up()
        wait_for(lambda: number(page, "b.map-selected") > 0, "the lasso selected nothing")
        selected = number(page, "b.map-selected")
        assert selected <= len(demo.images[PLOT_TYPE])
        page.get_by_role("button", name="Paint selection as Bad").click()
        page.get_by_text(re.compile(rf"Painted {selected} image\(s\) as Bad")).first.wait_for(timeout=30000)
        bad = demo.labels[PLOT_TYPE]["Bad"]
        with served.db.read() as s:
            painted = set(s.scalars(select(LabelHistory.image_id).where(LabelHistory.source == "map")))
            assert len(painted) == selected or len(painted) <= selected  # images already Bad are not stored again
            assert painted and set(s.scalars(select(Image.label_id).where(Image.id.in_(painted)))) == {bad}
        # the Labeler's Editor lists them as labeled Bad, newest label first
        page.goto(f"{served.url}/labeler")
        page.get_by_text("Label all on page").first.wait_for(timeout=30000)
        chooser = page.locator("select").first
        chooser.select_option(label=next(o for o in chooser.locator("option").all_text_contents()
                                         if o.startswith(PLOT_TYPE + " ")))
        page.get_by_text("Editor", exact=True).first.click()
        page.get_by_text("editor page 1").first.wait_for(timeout=30000)
        for chooser in page.locator("select").all():
            if "any label" in chooser.locator("option").all_text_contents():
                chooser.select_option(label="Bad")
                break
        wait_for(lambda: page.locator(".tile").count() > 0, "the Editor shows no Bad image")
        shown = {int(i) for i in page.locator(".tile").evaluate_all("els => els.map(e => e.dataset.id)")}
        assert shown & painted and "now: Bad" in page.locator(".tile").first.inner_text()
    finally:
        context.close()


def test_more_like_this_shows_the_neighbours_as_tiles(browser, served):
    demo = served.extra["demo"]
    image = demo.images[PLOT_TYPE][5]
    context, page = open_map(browser, served, f"plot_type={PLOT_TYPE}&image={image}")
    try:
        page.get_by_text(re.compile(rf"Selected image {image} and the 12 images most like it")).first.wait_for(
            timeout=30000)
        tiles = page.locator(".map-tiles .tile")
        wait_for(lambda: tiles.count() == 13, "the neighbours are not shown as tiles")
        ids = [int(i) for i in tiles.evaluate_all("els => els.map(e => e.dataset.id)")]
        assert ids[0] == image and len(set(ids)) == 13 and set(ids) <= set(demo.images[PLOT_TYPE])
        assert number(page, "b.map-selected") == 13  # and selected on the map, ready to paint
        tiles.nth(1).get_by_text("more like this").click()  # from a neighbour, again
        page.get_by_text(re.compile(rf"Selected image {ids[1]} and the 12")).first.wait_for(timeout=30000)
    finally:
        context.close()


def test_plot_browser_tile_links_to_more_like_this_on_the_map(browser, served):
    context, page = sign_in(browser, served, "labeler")
    try:
        page.goto(f"{served.url}/browser")
        link = page.locator(".tile a", has_text="more like this").first
        link.wait_for(timeout=60000)
        href = link.get_attribute("href") or ""
        image = int(re.search(r"image=(\d+)", href).group(1))  # type: ignore[union-attr]
        link.click()
        page.get_by_text(re.compile(rf"Selected image {image} and the \d+ images most like it")).first.wait_for(
            timeout=60000)
        assert "/map?" in page.url and number(page, "b.map-selected") > 1
    finally:
        context.close()
