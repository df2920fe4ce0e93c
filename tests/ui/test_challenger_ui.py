"""The Library's Challenger tab in real Chromium: a viewer pressing "Make v1 the challenger" is refused next to
the button with nothing written; an expert names v1 the challenger, sees the running comparison per run
(its shadow results beside the live ones) and promotes it with one click: v1 becomes the active version and
the MLflow alias `active` moves to it."""

from __future__ import annotations

import re

import pytest
from pages_server import serve_populated, sign_in, stop_pages
from sqlalchemy import select

from hydra_assets.db.models import Inference, Label, Model, PlotType, ShadowInference, utcnow
from hydra_assets.tracking import ACTIVE_ALIAS, TrackingService

pytestmark = pytest.mark.ui
PLOT_TYPE = "BCAL_energy"  # the first plot type of the catalogue: the Library opens on it
NAME = f"hydra-{PLOT_TYPE}"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    served = serve_populated(tmp_path_factory.mktemp("ui_challenger"))
    client = TrackingService.from_settings(served.settings).client  # the demo's versions 1 and 2, in MLflow too
    client.create_registered_model(NAME)
    for _ in (1, 2):
        client.create_model_version(NAME, source=str(served.settings.models_dir), run_id=None)
    client.set_registered_model_alias(NAME, ACTIVE_ALIAS, "2")

    def shadow(s):  # type: ignore[no-untyped-def]
        """v1's shadow results on the live images of two runs: it calls every other image Bad."""
        plot = s.scalar(select(PlotType).where(PlotType.name == PLOT_TYPE))
        v1 = s.scalar(select(Model).where(Model.mlflow_name == NAME, Model.mlflow_version == "1"))
        bad = s.scalar(select(Label.id).where(Label.plot_type_id == plot.id, Label.is_bad.is_(True)))
        live = s.scalars(select(Inference).where(Inference.plot_type_id == plot.id,
                                                 Inference.run_number.in_([121262, 121263]))).all()
        for n, inference in enumerate(live):
            says_bad = n % 2 == 0
            s.add(ShadowInference(
                image_id=inference.image_id, plot_type_id=plot.id, run_number=inference.run_number,
                chunk=inference.chunk, model_id=v1.id, model_key=v1.key, purpose="challenger", status="classified",
                weights={}, top_label_id=bad if says_bad else inference.top_label_id, top_weight=0.9, confirmed=True,
                is_bad=says_bad, would_alarm=says_bad, predict_ms=3.5, classified_at=utcnow()))

    served.db.write(shadow)
    yield served
    stop_pages(served)


@pytest.fixture(autouse=True)
def no_failed_callback(served):
    yield
    assert "Callback failed" not in served.log.read_text(errors="replace")


def versions(served) -> dict[str, tuple[bool, bool]]:  # type: ignore[no-untyped-def]
    with served.db.read() as s:
        return {m.mlflow_version: (m.active, m.challenger)
                for m in s.scalars(select(Model).where(Model.mlflow_name == NAME))}


def open_challenger_tab(browser, served, user: str):  # type: ignore[no-untyped-def]
    """The Library as `user`, version 1 chosen, its Challenger tab open: (context, page)."""
    context, page = sign_in(browser, served, user)
    page.goto(f"{served.url}/library")
    page.get_by_text("Confusion matrix").first.wait_for(timeout=30000)
    chooser = page.locator("select").nth(1)
    options = chooser.locator("option").all_inner_texts()
    chooser.select_option(label=next(o for o in options if o.startswith("v1 ")))
    page.get_by_text("Challenger", exact=True).first.click()
    page.get_by_role("button", name="Make v1 the challenger").wait_for(timeout=15000)
    return context, page


def test_a_viewer_is_refused_next_to_the_button_and_nothing_changes(browser, served):
    before = versions(served)
    context, page = open_challenger_tab(browser, served, "viewer")
    page.get_by_text(re.compile("needs the activate_models permission")).first.wait_for(timeout=10000)
    page.get_by_role("button", name="Make v1 the challenger").click()
    page.locator(".challenger-note").get_by_text(re.compile(r"Refused: .*activate_models.*Nothing was changed")
                                                 ).wait_for(timeout=10000)
    assert versions(served) == before == {"1": (False, False), "2": (True, False)}
    assert "Traceback" not in page.content()
    context.close()


def test_an_expert_names_the_challenger_sees_the_comparison_and_promotes_it(browser, served):
    context, page = open_challenger_tab(browser, served, "expert")
    page.get_by_text("No challenger for this plot type").first.wait_for(timeout=10000)
    page.get_by_role("button", name="Make v1 the challenger").click()
    page.get_by_text(re.compile(rf"{NAME}/1 is now the challenger")).first.wait_for(timeout=10000)
    assert versions(served) == {"1": (False, True), "2": (True, False)}

    table = page.locator("table.challenger-comparison:visible")
    table.wait_for(timeout=15000)
    rows = table.locator("tr").all_inner_texts()
    assert [r.split("\t")[0] for r in rows[1:]] == ["121262", "121263", "all runs"]
    header = rows[0].split("\t")
    totals = dict(zip(header, rows[-1].split("\t"), strict=True))
    assert int(totals["alarms challenger"]) > int(totals["alarms active"])  # it calls every other image Bad
    assert totals["ms / image challenger"] == "3.500"
    link = page.locator("a.challenger-labeler:visible")
    assert link.get_attribute("href") == f"./labeler?plot_type={PLOT_TYPE}&queue=disagreement"

    page.get_by_role("button", name=f"Promote {NAME}/1 to active").click()
    page.get_by_text(re.compile(rf"{NAME}/1 \(the challenger\) is now the active version")).first.wait_for(
        timeout=15000)
    assert versions(served) == {"1": (True, False), "2": (False, False)}
    aliases = TrackingService.from_settings(served.settings).client.get_registered_model(NAME).aliases
    assert {k: str(v) for k, v in aliases.items()} == {ACTIVE_ALIAS: "1"}
    assert "Traceback" not in page.content()
    context.close()
