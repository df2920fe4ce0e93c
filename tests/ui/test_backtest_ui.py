"""The Library's Backtest tab in real Chromium: an expert picks a version that is not active, asks for a
backtest on runs A–B (a run range without images is refused next to the field, nothing written), Dagster
runs it (here the partitions in-process, as `hydra model backtest --wait` does when no daemon is up), and
the report per run and the link to the Labeler's disagreement queue show after Refresh."""

from __future__ import annotations

import re

import pytest
from pages_server import serve_populated, sign_in, stop_pages
from sqlalchemy import func, select

from hydra_assets.db.models import Backtest

pytestmark = pytest.mark.ui
PLOT_TYPE = "BCAL_energy"  # the first plot type of the catalogue: the Library opens on it


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from test_ingest_support import constant_model

    from hydra_assets.ml.active import register_local_model

    served = serve_populated(tmp_path_factory.mktemp("ui_backtest"))
    with served.db.read() as s:
        from hydra_assets.db.models import Model, PlotType

        labels = s.scalar(select(Model.label_names).join(PlotType, PlotType.id == Model.plot_type_id)
                          .where(PlotType.name == PLOT_TYPE).limit(1))
    weights = [0.02] * len(labels)
    weights[-1] = 1 - 0.02 * (len(labels) - 1)  # always the last label, confidently
    path = constant_model(tmp_path_factory.mktemp("ui_backtest_model") / "candidate.keras", weights, size=(32, 32))
    served.extra["candidate"] = register_local_model(served.db, PLOT_TYPE, path, list(labels), activate=False,
                                                     input_size=(32, 32), created_by="expert")
    yield served
    stop_pages(served)


@pytest.fixture(autouse=True)
def no_failed_callback(served):
    yield
    assert "Callback failed" not in served.log.read_text(errors="replace")


def backtests(served) -> int:  # type: ignore[no-untyped-def]
    with served.db.read() as s:
        return int(s.scalar(select(func.count(Backtest.id))))


def test_ask_for_a_backtest_and_see_its_report(browser, served):
    import dagster as dg

    from hydra_assets.jobs.backtest import run_in_process

    context, page = sign_in(browser, served, "expert")
    page.goto(f"{served.url}/library")
    page.get_by_text("Confusion matrix").first.wait_for(timeout=30000)
    versions = page.locator("select").nth(1)
    versions.select_option(index=0)  # newest first: the local candidate, not active
    page.wait_for_timeout(1500)
    page.get_by_text("Backtest", exact=True).first.click()
    button = page.get_by_role("button", name="Backtest on runs A–B")
    button.wait_for(timeout=10000)
    page.get_by_text("No backtest of this version yet").first.wait_for(timeout=10000)
    page.get_by_text(re.compile("has no backtest")).first.wait_for(timeout=10000)  # the activation warning
    field = page.get_by_label("Runs A–B")

    field.fill("500-600")
    button.click()
    page.get_by_text(re.compile(r"no stored images in runs 500-600.*nothing was asked")).first.wait_for(timeout=10000)
    assert backtests(served) == 0

    field.fill("121262-121263")
    button.click()
    page.get_by_text(re.compile(r"Backtest \d+ asked")).first.wait_for(timeout=10000)
    page.get_by_text(re.compile(r"requested")).first.wait_for(timeout=10000)
    with served.db.read() as s:
        backtest_id, status = s.execute(select(Backtest.id, Backtest.status)).one()
    assert status == "requested"

    # what the backtest_requests sensor and the daemon do, here in this process
    result = run_in_process(dg.DagsterInstance.ephemeral(), served.settings, backtest_id, [121262, 121263])
    assert not result.failed and len(result.run_ids) == 2

    page.get_by_role("button", name="Refresh").click()
    table = page.locator("table.backtest-report:visible")
    table.wait_for(timeout=15000)
    rows = table.locator("tr").all_inner_texts()
    assert [r.split("\t")[0] for r in rows[1:]] == ["121262", "121263", "all runs"]
    page.get_by_text(re.compile(rf"Backtest {backtest_id}.*done")).first.wait_for(timeout=10000)
    link = page.locator("a.backtest-labeler:visible")
    assert f"backtest={backtest_id}" in link.get_attribute("href")
    assert f"plot_type={PLOT_TYPE}" in link.get_attribute("href")
    with served.db.read() as s:
        disagreeing = s.get(Backtest, backtest_id).report["totals"]["disagreements"]
    assert disagreeing > 0

    link.click()  # one click: the Labeler on exactly those images
    page.get_by_text(re.compile(rf"backtest {backtest_id}'s candidate and the active version disagree.*"
                                rf"{disagreeing} image")).first.wait_for(timeout=30000)
    context.close()
