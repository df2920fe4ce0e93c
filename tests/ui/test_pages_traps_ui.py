"""Traps users fell into (issue 18) and the novelty guard on the pages (issue 13), in real Chromium.

Each Library test reproduces a trap as the user met it: it failed on the code before the fix.
- Thresholds opened with the label box empty while the value box showed Good's threshold, and Save wrote
  that value to Good: now no label is chosen, the value box is empty and Save is disabled until one is.
- 1.7, -1 or "abc" reverted silently and Save recorded "0.500 → 0.500": now the page says why next to the
  field and writes nothing; after a save, "F1 at threshold" shows the figure, not "—".
The novelty tests: a novel image's Run card says so (an unconfirmed card, not Bad), and a retraining
suggestion's link on the Status page opens the Labeler queue of exactly those images.
"""

from __future__ import annotations

import re

import pytest
from pages_factory import add_novel_image, add_novel_run
from pages_server import serve_populated, sign_in, stop_pages
from sqlalchemy import func, select

from hydra_assets.db.models import Threshold, ThresholdChange

pytestmark = pytest.mark.ui
PLOT_TYPE = "CDC_occupancy"  # the first plot type: the Library opens on it


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    served = serve_populated(tmp_path_factory.mktemp("ui_traps"))
    add_novel_image(served.db, served.settings, "TOF_timing", 121270, 3)
    add_novel_run(served.db, served.settings, "FCAL_hits", 121281)
    perfect_figures_recorded(served.db, "BCAL_energy")
    yield served
    stop_pages(served)


def perfect_figures_recorded(db, plot_type: str) -> None:  # type: ignore[no-untyped-def]
    """Training recorded P/R/F1 = 1.000 for every label, while its validation report holds mistakes (the trap)."""
    from hydra_assets.db.models import Model, PlotType

    def work(s) -> None:  # type: ignore[no-untyped-def]
        model = s.scalar(select(Model).join(PlotType, PlotType.id == Model.plot_type_id)
                         .where(PlotType.name == plot_type, Model.active.is_(True)))
        perfect = {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 8}
        model.metrics = {**model.metrics, "validation": {"per_label": dict.fromkeys(model.label_names, perfect)}}

    db.write(work, what="perfect figures")


def open_thresholds(page, served):  # type: ignore[no-untyped-def]
    page.goto(f"{served.url}/library")
    page.get_by_text("Confusion matrix").first.wait_for(timeout=30000)
    page.get_by_text("Thresholds", exact=True).first.click()
    page.get_by_role("button", name="Save threshold").wait_for(timeout=10000)
    page.wait_for_timeout(500)


def label_select(page):  # type: ignore[no-untyped-def]
    """The Thresholds tab's label box: the select whose options are the plot type's labels."""
    for box in page.locator("select").all():
        options = box.locator("option").all_text_contents()
        if "Bad" in options and "Good" in options:
            return box
    raise AssertionError("no label box on the Thresholds tab")


def value_box(page):  # type: ignore[no-untyped-def]
    return page.get_by_label("Threshold", exact=True)


def thresholds_and_changes(served, model_id: int) -> tuple[dict[int, float], int]:
    with served.db.read() as s:
        values = dict(s.execute(select(Threshold.label_id, Threshold.value).where(Threshold.model_id == model_id)).all())
        changes = s.scalar(select(func.count()).select_from(ThresholdChange)) or 0
    return values, changes


def test_thresholds_save_never_writes_a_value_for_a_label_nobody_chose(browser, served):
    demo = served.extra["demo"]
    active = demo.models[PLOT_TYPE][-1]
    before = thresholds_and_changes(served, active)
    context, page = sign_in(browser, served, "expert")
    open_thresholds(page, served)
    select, save = label_select(page), page.get_by_role("button", name="Save threshold")
    shown_label = select.evaluate("s => s.selectedIndex >= 0 ? s.options[s.selectedIndex].text : ''")
    shown_value = value_box(page).input_value()
    if save.is_enabled():
        # a label must be shown, and the value must be that label's threshold
        assert shown_label in demo.labels[PLOT_TYPE], f"label box shows {shown_label!r} with Save enabled"
        expected = before[0][demo.labels[PLOT_TYPE][shown_label]]
        assert shown_value and abs(float(shown_value) - expected) < 1e-6
        save.click()
        page.wait_for_timeout(1500)
        assert thresholds_and_changes(served, active)[0] == before[0]
    else:
        assert shown_label not in demo.labels[PLOT_TYPE] and shown_value == ""
    assert thresholds_and_changes(served, active)[1] == before[1], "Save wrote a threshold nobody chose"
    # choosing a label shows its own threshold and enables Save
    select.select_option(label="Bad")
    page.wait_for_timeout(800)
    assert abs(float(value_box(page).input_value()) - before[0][demo.labels[PLOT_TYPE]["Bad"]]) < 1e-6
    assert save.is_enabled()
    context.close()


@pytest.mark.parametrize("typed", ["1.7", "-1", "abc"])
def test_a_threshold_out_of_range_is_refused_with_a_reason_and_nothing_is_written(browser, served, typed):
    demo = served.extra["demo"]
    active = demo.models[PLOT_TYPE][-1]
    context, page = sign_in(browser, served, "expert")
    open_thresholds(page, served)
    label_select(page).select_option(label="Bad")
    page.wait_for_timeout(800)
    before = thresholds_and_changes(served, active)
    box = value_box(page)
    box.fill(typed)
    box.press("Enter")
    page.wait_for_timeout(800)
    save = page.get_by_role("button", name="Save threshold")
    if save.is_enabled():
        save.click()
        page.wait_for_timeout(1500)
    page.get_by_text(re.compile(r"between 0 and 1")).first.wait_for(timeout=5000)
    assert page.get_by_text(re.compile(r"→")).count() == 0  # no "0.500 → 0.500" success message
    assert thresholds_and_changes(served, active) == before
    context.close()


def test_after_a_save_f1_at_threshold_shows_a_figure(browser, served):
    demo = served.extra["demo"]
    active = demo.models["FDC_efficiency"][-1]
    context, page = sign_in(browser, served, "expert")
    open_thresholds(page, served)
    page.locator("select").first.select_option(label="FDC_efficiency")
    page.wait_for_timeout(1500)
    page.get_by_text("Thresholds", exact=True).first.click()
    label_select(page).select_option(label="Bad")
    page.wait_for_timeout(800)
    value_box(page).fill("0.6")
    value_box(page).press("Enter")
    page.wait_for_timeout(500)
    page.get_by_role("button", name="Save threshold").click()
    page.get_by_text(re.compile(r"0\.700 → 0\.600")).first.wait_for(timeout=10000)
    assert thresholds_and_changes(served, active)[0][demo.labels["FDC_efficiency"]["Bad"]] == pytest.approx(0.6)
    rows = page.locator("table.hy tr").evaluate_all(
        "rows => rows.map(r => Array.from(r.cells).map(c => c.innerText.trim()))")
    header = next(r for r in rows if "F1 at threshold" in r)
    bad = next(r for r in rows if r and r[0] == "Bad" and len(r) == len(header))
    f1 = bad[header.index("F1 at threshold")]
    assert re.match(r"\d\.\d{3}", f1), f"F1 at threshold shows {f1!r} after a save"
    context.close()


def test_run_page_card_says_the_image_is_unlike_the_training_data(browser, served):
    context, page = sign_in(browser, served, "viewer")
    page.goto(f"{served.url}/run")
    page.get_by_text("showing").first.wait_for(timeout=30000)
    card = page.locator('.card[data-plot-type="TOF_timing"]')
    card.wait_for(timeout=10000)
    text = card.inner_text()
    assert "unlike the training data" in text
    assert re.search(r"novelty 4\.20 > limit 1\.50", text)
    assert "BAD" not in text and "unconfirmed" in card.get_attribute("class")
    context.close()


def test_a_run_page_opened_after_alarms_were_raised_shows_them(browser, served):
    """Issue 18: a Run page opened after alarms were raised showed no banner for the unacknowledged ones."""
    context, page = sign_in(browser, served, "viewer")
    page.goto(f"{served.url}/run")
    page.get_by_text("showing").first.wait_for(timeout=30000)
    banner = page.locator(".alarm").first
    banner.wait_for(timeout=10000)
    assert "ALARM: confirmed Bad (" in banner.inner_text()
    assert page.get_by_role("button", name="Acknowledge alarm").is_visible()
    context.close()


def test_status_banner_leads_to_the_labeler_queue_of_exactly_those_images(browser, served):
    context, page = sign_in(browser, served, "labeler")
    page.goto(f"{served.url}/status")
    page.get_by_text("Retraining suggested").first.wait_for(timeout=30000)
    assert page.get_by_text(re.compile(r"FCAL_hits run 121281: 83% of 12 images unlike the training data")).count()
    page.get_by_role("link", name="label them in the Labeler").first.click()
    page.get_by_text("Queue: FCAL_hits run 121281").first.wait_for(timeout=30000)
    assert "plot_type=FCAL_hits" in page.url and "reason=novel" in page.url
    page.locator(".tile").nth(9).wait_for(timeout=10000)
    assert page.locator(".tile").count() == 10
    assert page.get_by_text("10 image(s), 10 not labeled yet").count() == 1
    context.close()


def test_validation_figures_agree_with_the_confusion_matrix_beside_them(browser, served):
    """Issue 18: P/R/F1 = 1.000 for every label next to a matrix with Bad images predicted Good."""
    context, page = sign_in(browser, served, "viewer")
    page.goto(f"{served.url}/library")
    page.get_by_text("Confusion matrix").first.wait_for(timeout=30000)
    page.locator("select").first.select_option(label="BCAL_energy")
    page.get_by_text(re.compile(r"Source: validation set")).first.wait_for(timeout=10000)
    page.get_by_text("Thresholds", exact=True).first.click()
    page.get_by_text("Validation at these thresholds").first.wait_for(timeout=10000)
    rows = page.locator("table.hy tr").evaluate_all(
        "rows => rows.map(r => Array.from(r.cells).map(c => c.innerText.trim()))")
    header = next(r for r in rows if r[:4] == ["label", "precision", "recall", "F1"])
    start = rows.index(header) + 1
    figures = [r for r in rows[start:start + 3]]
    assert [r[0] for r in figures] == ["Good", "Bad", "Hot"]
    assert any(r[2] != "1.000" for r in figures), f"every label shows recall 1.000: {figures}"
    context.close()
