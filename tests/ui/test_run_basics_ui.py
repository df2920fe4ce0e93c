"""Run page basics (issue 18): clicking a checkbox's text toggles it, Mute says its state in its label, and
the Group, GradCAM, Mute, opacity and card size choices persist in this browser across a reload.  Each test
failed on the code before."""

from __future__ import annotations

import pytest
from pages_server import serve_populated, sign_in, stop_pages

pytestmark = pytest.mark.ui
WAIT = 30000
DEFAULT_OPACITY = 0.8  # the Run page's default GradCAM opacity (RunPage.opacity; chosen with save_overlay)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    served = serve_populated(tmp_path_factory.mktemp("ui_run_basics"))
    yield served
    stop_pages(served)


@pytest.fixture
def page(browser, served):
    context, page = sign_in(browser, served, "viewer", width=1500)
    page.set_default_timeout(WAIT)
    yield page
    context.close()


def open_run(page, served) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{served.url}/run")
    page.get_by_text("showing").first.wait_for()


def saved(page, text: str) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_function("(text) => document.cookie.split('; ').some((c) => c.startsWith('hydra_run=') && "
                           "decodeURIComponent(c).includes(text))", arg=text)


def test_clicking_a_checkbox_text_toggles_it(page, served):
    open_run(page, served)
    box = page.get_by_role("checkbox", name="GradCAM overlay")
    assert not box.is_checked()
    page.get_by_text("GradCAM overlay", exact=True).click()
    page.locator("img.cam").first.wait_for()  # the server took it: overlays are drawn
    assert box.is_checked()
    page.get_by_text("Bad & unconfirmed only", exact=True).click()
    assert page.get_by_role("checkbox", name="Bad & unconfirmed only").is_checked()


def test_mute_says_its_state_in_its_label(page, served):
    open_run(page, served)
    button = page.get_by_role("button", name="Sound on (click to mute)")
    button.click()
    page.get_by_role("button", name="Muted (click to unmute)").wait_for()
    page.get_by_role("button", name="Muted (click to unmute)").click()
    page.get_by_role("button", name="Sound on (click to mute)").wait_for()


def test_group_gradcam_mute_opacity_and_card_size_survive_a_reload(page, served):
    open_run(page, served)
    group = page.locator("select").first
    choice = next(o for o in group.locator("option").all_text_contents() if o != "All plot types")
    group.select_option(label=choice)
    page.get_by_role("checkbox", name="GradCAM overlay").check()
    page.get_by_role("button", name="Sound on (click to mute)").click()
    page.get_by_role("button", name="Muted (click to unmute)").wait_for()
    saved(page, '"muted":true')
    saved(page, '"gradcam":true')
    open_run(page, served)
    assert page.locator("select").first.input_value() == choice
    assert page.get_by_role("checkbox", name="GradCAM overlay").is_checked()
    page.get_by_role("button", name="Muted (click to unmute)").wait_for()


def test_opacity_and_card_size_survive_a_reload(page, served):
    open_run(page, served)
    sliders = page.get_by_role("slider")
    sliders.nth(0).press("ArrowLeft")  # opacity one step down
    sliders.nth(1).press("ArrowRight")  # card size one step up
    saved(page, '"card_width":280')
    saved(page, '"opacity":0.')
    remembered_opacity = page.evaluate("() => JSON.parse(decodeURIComponent(document.cookie.split('; ')"
                                       ".find((c) => c.startsWith('hydra_run=')).slice(10))).opacity")
    open_run(page, served)
    page.locator(".grid").first.wait_for()
    assert "--card:280px" in (page.locator(".grid").first.get_attribute("style") or "")
    assert remembered_opacity == pytest.approx(DEFAULT_OPACITY - 0.05)  # the default, one step down
    page.get_by_text(f"GradCAM opacity: {remembered_opacity:.2f}").wait_for()
    page.get_by_text("Card size: 280").wait_for()
