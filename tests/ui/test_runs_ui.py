"""The Runs page in Chromium, as a run coordinator and as a viewer: coloured cells, the images behind a flag,
a sign-off with its audit line, a refusal, the golden JSON download; and the Run page's flags strip."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from pages_factory import PASSWORDS, populate
from pages_server import Served, make_home, start_pages, stop_pages
from playwright.sync_api import expect

from hydra_assets import catalog
from hydra_assets.db.engine import HydraDB
from hydra_assets.db.models import RunFlag, utcnow
from panel_app.auth import write_credentials

pytestmark = pytest.mark.ui

COORDINATOR = ("coord", "coord-pw")
GROUPS = {"CDC": "Tracking", "FDC": "Tracking", "BCAL": "Calorimetry", "FCAL": "Calorimetry"}
BAD_RUN = 121263  # CDC Bad in chunks 3-4


def add_flags(db: HydraDB, runs: tuple[int, ...]) -> None:
    """The flags the flags step would store for the demo runs, and a coordinator to sign them off."""
    at = utcnow() - timedelta(minutes=10)

    def work(s) -> None:  # type: ignore[no-untyped-def]
        catalog.add_user(s, COORDINATOR[0], role="coordinator")
        for run in runs:
            for group in GROUPS:
                ranges = [(1, 2, "Good"), (3, 4, "Bad")] if (run, group) == (BAD_RUN, "CDC") else [(1, 4, "Good")]
                for first, last, flag in ranges:
                    reasons = ([{"plot_type": "CDC_occupancy", "flag": "Bad", "chunks": [[3, 4]],
                                 "text": "Bad 0.91 >= threshold 0.70"}] if flag == "Bad" else [])
                    s.add(RunFlag(run_number=run, scope="group", group_name=group, first_chunk=first,
                                  last_chunk=last, flag=flag, reasons=reasons, computed_at=at))
            for system in set(GROUPS.values()):
                worst = "Bad" if run == BAD_RUN and system == "Tracking" else "Good"
                s.add(RunFlag(run_number=run, scope="super_group", group_name=system, first_chunk=1, last_chunk=4,
                              flag=worst, reasons=[], computed_at=at))

    db.write(work, what="flags")


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Served]:
    settings = make_home(tmp_path_factory.mktemp("runs_ui"))
    db = HydraDB(settings.db_url)
    demo = populate(db, settings)
    add_flags(db, (121262, 121263, 121264))
    db.dispose()
    credentials = write_credentials(settings.home / "credentials.json", {**PASSWORDS, COORDINATOR[0]: COORDINATOR[1]})
    served = start_pages(settings, "--credentials", str(credentials))
    served.extra["demo"] = demo
    yield served
    stop_pages(served)


def signed_in(browser, served: Served, user: str, password: str):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1500, "height": 1100}, accept_downloads=True)
    page = context.new_page()
    page.goto(f"{served.url}/login")
    page.fill("#username", user)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    return context, page


def cell(page, run: int, group: str):  # type: ignore[no-untyped-def]
    return page.locator(f'tr[data-run="{run}"] td.flag[data-group="{group}"][data-scope="group"]')


def test_coordinator_sees_colours_opens_a_flag_signs_it_off_and_downloads(browser, served, tmp_path):
    context, page = signed_in(browser, served, *COORDINATOR)
    try:
        page.goto(f"{served.url}/runs")
        bad = cell(page, BAD_RUN, "CDC")
        bad.wait_for(timeout=30000)
        # colour and letter: vermillion with a B, bluish green with a G (colour is not the only cue)
        assert bad.inner_text().startswith("B")
        assert bad.evaluate("td => getComputedStyle(td).backgroundColor") == "rgb(213, 94, 0)"
        good = cell(page, 121264, "CDC")
        assert good.inner_text().startswith("G")
        assert good.evaluate("td => getComputedStyle(td).backgroundColor") == "rgb(0, 158, 115)"
        rows = page.locator("table.matrix tbody tr").evaluate_all("rows => rows.map(r => r.dataset.run)")
        assert rows == ["121264", "121263", "121262"]  # newest first

        bad.click()  # the images behind the flag
        page.get_by_text(f"Run {BAD_RUN} · CDC").wait_for(timeout=10000)
        page.get_by_text("CDC_occupancy Bad in chunks 3-4").first.wait_for()
        tiles = page.locator(".detail .tiles img")
        assert tiles.count() == 2  # chunks 3 and 4 of CDC_occupancy, where the flag is Bad
        tiles.first.evaluate("img => img.decode()")
        assert tiles.first.evaluate("img => img.naturalWidth") > 0
        assert page.locator(f'.detail a[href="./browser?run={BAD_RUN}&group=CDC"]').count() == 1

        page.locator("select").filter(has_text="whole run").select_option(label="chunks 3–4 (Bad)")
        page.get_by_role("button", name="override").click()
        page.locator("select").filter(has_text="choose…").select_option(label="Medium")
        page.locator("textarea").fill("halo in chunks 3-4, physics usable")
        page.get_by_role("button", name="Sign off").click()
        page.get_by_text("now stands at Medium").wait_for(timeout=10000)
        audit = page.locator("table.audit")
        audit.get_by_text("halo in chunks 3-4").wait_for()
        assert "coord" in audit.inner_text() and "Bad → Medium" in audit.inner_text()
        expect(cell(page, BAD_RUN, "CDC")).to_have_text(re.compile("^M"), timeout=10000)  # the matrix redrawn

        with page.expect_download(timeout=20000) as download:
            page.get_by_text("Golden JSON (Good ranges)").click()
        path = tmp_path / "golden.json"
        download.value.save_as(path)
        golden = json.loads(path.read_text())
        assert golden["121264"] == [[1, 4]] and golden[str(BAD_RUN)] == [[1, 2]]
    finally:
        context.close()


def test_a_viewer_is_refused_with_the_reason(browser, served):
    context, page = signed_in(browser, served, "viewer", PASSWORDS["viewer"])
    try:
        page.goto(f"{served.url}/runs?run=121262&scope=group&group=FDC")
        page.get_by_text("Run 121262 · FDC").wait_for(timeout=30000)
        page.get_by_text("needs the certify permission").first.wait_for()
        page.get_by_role("button", name="Sign off").click()
        page.get_by_text("Not signed off: user").wait_for(timeout=10000)
        assert page.get_by_text("may not sign off flags").count() == 1
        assert page.get_by_text("Nobody has signed this flag off yet").count() == 1
    finally:
        context.close()


def test_run_page_shows_the_live_runs_flags_at_the_top(browser, served):
    context, page = signed_in(browser, served, "viewer", PASSWORDS["viewer"])
    try:
        page.goto(f"{served.url}/run")
        strip = page.locator(".flags")
        strip.wait_for(timeout=30000)
        assert "Run 121264 flags" in strip.inner_text()
        link = page.locator('.flags a.flag[data-group="CDC"]')
        assert link.get_attribute("data-flag") == "Good"
        # the flags step recomputes the live run (FDC Bad now): the strip follows with the page's refresh
        served.db.write(lambda s: s.query(RunFlag).filter(RunFlag.run_number == 121264, RunFlag.group_name == "FDC")
                        .update({"flag": "Bad", "computed_at": utcnow()}))
        expect(page.locator('.flags a.flag[data-group="FDC"]')).to_have_attribute("data-flag", "Bad", timeout=10000)
        link.click()
        page.get_by_text("Run 121264 · CDC").wait_for(timeout=30000)
        assert page.get_by_text("Traceback").count() == 0, served.server_log()
    finally:
        context.close()


def test_plot_browser_opens_on_a_cells_images_and_filters_by_run_condition(browser, served):
    context, page = signed_in(browser, served, "viewer", PASSWORDS["viewer"])
    try:
        page.goto(f"{served.url}/browser?run={BAD_RUN}&group=CDC")  # the link under a Runs page cell
        tiles = page.locator(".tile")
        tiles.first.wait_for(timeout=30000)
        texts = tiles.all_inner_texts()
        assert texts and all(f"run {BAD_RUN}" in t and "CDC_occupancy" in t for t in texts)
        page.goto(f"{served.url}/browser?condition_key=target&condition_value=LD2")  # the demo's runs are on LH2
        page.get_by_text("No image matches these filters").wait_for(timeout=30000)
        page.get_by_placeholder("value").fill("LH2")
        page.get_by_placeholder("value").press("Enter")
        tiles.first.wait_for(timeout=10000)
        assert page.get_by_text("Traceback").count() == 0, served.server_log()
    finally:
        context.close()
