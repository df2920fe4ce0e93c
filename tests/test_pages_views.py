"""Each page's logic without a browser: what it shows on an empty and a populated database, and its callbacks."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from pages_factory import (
    EMPTY_MESSAGES,
    add_bad_image,
    database_copy,
    make_users_only,
    populate,
    template_database,
)
from sqlalchemy import func, select

from hydra_assets.db.models import Image, LabelHistory, NewsLine, Threshold, utcnow
from panel_app.config import PagesConfig
from panel_app.pages import PAGES
from panel_app.pages.browser import BrowserPage
from panel_app.pages.labeler import EDITOR, LabelerPage
from panel_app.pages.library import LibraryPage
from panel_app.pages.log import LogPage, brief_markdown
from panel_app.pages.report import ReportPage
from panel_app.pages.run import RunPage
from panel_app.pages.status import StatusPage, beat_state, per_run_means
from panel_app.pages.trends import TrendsPage
from panel_app.store import SHARED, HydraStore


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A populated SQLite database made once; each test gets a copy of the file (images are shared, read only)."""
    return template_database(tmp_path_factory.mktemp("pages_views"), populate)


@pytest.fixture
def demo_db(template, tmp_path):
    settings, demo = template
    database, settings = database_copy(settings, tmp_path)
    SHARED.clear()
    yield database, settings, demo
    database.dispose()


def store(db, settings, user="labeler"):
    SHARED.clear()
    return HydraStore(db, PagesConfig(settings=settings, sync_mlflow_alias=False), user=user)


# ---- empty database --------------------------------------------------------------------------------


def _text(viewable) -> str:  # type: ignore[no-untyped-def]
    """Every HTML/Markdown/Alert text inside a rendered page (what a person would read)."""
    import panel as pn

    texts = []
    for pane in viewable.select(lambda o: isinstance(o, pn.pane.HTML | pn.pane.Markdown | pn.pane.Alert)):
        if getattr(pane, "visible", True) and pane.object:
            texts.append(str(pane.object))
    return "\n".join(texts)


@pytest.mark.parametrize("slug", list(PAGES))
def test_every_page_explains_an_empty_database(sqlite_db, hydra_home, slug):
    make_users_only(sqlite_db)
    page = PAGES[slug].view(store=store(sqlite_db, hydra_home, "viewer"))
    assert EMPTY_MESSAGES[slug] in _text(page.__panel__())


@pytest.mark.parametrize("slug", list(PAGES))
def test_every_page_renders_the_demo(demo_db, slug):
    db, settings, _demo = demo_db
    text = _text(PAGES[slug].view(store=store(db, settings, "viewer")).__panel__())
    assert text and EMPTY_MESSAGES[slug] not in text



def test_routes_navigation_and_index_all_come_from_the_page_registry(sqlite_db, hydra_home):
    from tornado.template import Loader

    from panel_app.app import INDEX_TEMPLATE, build_app
    from panel_app.navigation import nav_bar

    make_users_only(sqlite_db)
    routes, _images, _db = build_app(PagesConfig(settings=hydra_home), sqlite_db, auth=False)
    assert list(routes) == list(PAGES)
    nav = nav_bar(store(sqlite_db, hydra_home, "viewer"), "log", auth=False).object
    index = Loader(str(INDEX_TEMPLATE.parent)).load(INDEX_TEMPLATE.name).generate(prefix="", items=[]).decode()
    first = next(iter(PAGES.values()))
    assert f"url=./{first.slug}" in index
    for page in PAGES.values():
        assert f'href="./{page.slug}"' in nav and f">{page.title}</a>" in nav
        assert f'href="./{page.slug}">{page.title}' in index

# ---- Run -------------------------------------------------------------------------------------------


def acknowledge_all(db) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import update

    from hydra_assets.db.models import Alarm

    db.write(lambda s: s.execute(update(Alarm).values(acknowledged_by="earlier shift", acknowledged_at=utcnow())))


def test_run_page_announces_a_new_confirmed_bad(demo_db):
    db, settings, _demo = demo_db
    acknowledge_all(db)  # the demo's own alarms would be shown when the page opens (next test)
    page = RunPage(store(db, settings))
    assert page.alarms == [] and page.sound.beeps == 0
    image_id = add_bad_image(db, settings, "TOF_timing", 121265, 1)
    page.refresh()
    assert page.sound.beeps == 1 and page.alarm_pane.visible
    assert "TOF_timing run 121265" in page.alarm_pane.object
    assert page.cards[0].state == "bad"
    assert f"hydra/image/{image_id}" in page.grid_pane.object
    assert "last run <b>121265</b>" in page.status_pane.object
    page.refresh()  # no new alarm, no new beep
    assert page.sound.beeps == 1
    page._acknowledge()
    assert not page.alarm_pane.visible


def test_a_run_page_opened_later_shows_unacknowledged_alarms_without_sounding(demo_db):
    """Issue 18: a Run page opened after alarms were raised showed no banner for them."""
    from hydra_assets.db.models import Alarm

    db, settings, _demo = demo_db
    with db.read() as s:
        open_ids = s.scalars(select(Alarm.id).where(Alarm.acknowledged_at.is_(None))).all()
    assert open_ids, "the demo data should hold unacknowledged alarms"
    page = RunPage(store(db, settings))
    assert page.alarms and page.alarm_pane.visible and page.acknowledge.visible
    assert {a.id for a in page.alarms} <= set(open_ids) and len(page.alarms) == min(10, len(open_ids))
    assert page.sound.beeps == 0  # shown, not sounded: they were announced when they were raised
    assert page.alarm_pane.object.startswith('<div class="alarm">⚠ ALARM: confirmed Bad (')
    shown = {a.id for a in page.alarms}
    page._acknowledge()
    later = RunPage(store(db, settings))  # acknowledged ones are gone; older unseen ones come up, if any
    assert not shown & {a.id for a in later.alarms}
    assert len(later.alarms) == min(10, len(open_ids) - len(shown))


def test_a_novel_alarm_is_not_called_confirmed_bad():
    from panel_app.pages.run import alarm_heading
    from panel_app.views_data import AlarmInfo

    def alarm(kind: str) -> AlarmInfo:
        return AlarmInfo(1, "CDC_timing", 5, 1, "Good", "", datetime(2026, 12, 1), 1, kind)

    assert alarm_heading([alarm("novel")]) == "unlike the training data (1)"
    assert alarm_heading([alarm("bad"), alarm("novel")]) == "confirmed Bad (1), unlike the training data (1)"


def test_an_alarm_acknowledged_on_one_run_page_goes_from_every_run_page(demo_db):
    from hydra_assets.db.models import Alarm, AuditLog

    db, settings, _demo = demo_db
    acknowledge_all(db)  # the demo's own alarms
    shift, expert = RunPage(store(db, settings, "viewer")), RunPage(store(db, settings, "expert"))
    add_bad_image(db, settings, "TOF_timing", 121266, 1)
    shift.refresh()
    expert.refresh()
    assert len(shift.alarms) == len(expert.alarms) == 1 and expert.acknowledge.visible
    shift._acknowledge()
    with db.read() as s:
        alarm = s.get(Alarm, shift._last_alarm)
        audit = s.scalars(select(AuditLog).where(AuditLog.action == "acknowledge alarms")).all()
    assert alarm.acknowledged_by == "viewer" and alarm.acknowledged_at is not None
    assert [(a.user_name, a.allowed) for a in audit] == [("viewer", True)]
    expert.refresh()
    assert expert.alarms == [] and not expert.alarm_pane.visible and not expert.acknowledge.visible
    late = RunPage(store(db, settings, "expert"))  # opened later: nothing to announce
    add_bad_image(db, settings, "TOF_timing", 121266, 2)
    late.refresh()
    assert [a.chunk for a in late.alarms] == [2]


def test_run_page_filters_by_group_and_flags_and_escapes(demo_db):
    db, settings, _demo = demo_db
    db.write(lambda s: s.add(NewsLine(text="<script>alert(1)</script> beam off", created_by="<i>x</i>")))
    page = RunPage(store(db, settings))
    assert "showing <b>6 / 6</b>" in page.status_pane.object
    assert "&lt;script&gt;" in page.status_pane.object and "<script>" not in page.status_pane.object
    page.group = "FDC"
    assert {c.plot_type for c in page.cards} == {"FDC_efficiency", "RF_FDC_selftiming"}
    assert "showing <b>2 / 6</b>" in page.status_pane.object
    page.group = "Calorimetry (system)"
    assert {c.plot_type for c in page.cards} == {"BCAL_energy", "FCAL_hits"}
    page.group = "All plot types"
    page.only_flagged = True
    assert page.cards and all(c.state in ("bad", "unconfirmed") for c in page.cards)
    page.gradcam, page.opacity = True, 0.3
    assert "hydra/gradcam/" in page.grid_pane.object and "opacity:0.30" in page.grid_pane.object
    page.muted = True
    assert page.sound.muted


# ---- Log -------------------------------------------------------------------------------------------


def test_log_page_window_kinds_and_daily_brief(demo_db):
    db, settings, _demo = demo_db
    page = LogPage(store(db, settings))
    entries = [e for items in page.grouped.values() for e in items]
    assert entries and list(page.grouped)[-1] == "Ungrouped"
    page.kind = "confirmed Bad"
    assert all(e.kind == "confirmed Bad" for items in page.grouped.values() for e in items)
    page.kind = "all"
    page.hours = 1
    assert sum(len(v) for v in page.grouped.values()) < len(entries)
    page.hours = 24
    markdown = page.markdown_brief().getvalue()
    assert markdown.startswith("# Hydra daily brief") and "## CDC" in markdown and "| time (UTC) |" in markdown
    html = page.html_brief().getvalue()
    assert html.startswith("<!DOCTYPE html>") and "data:image/png;base64," in html and "http" not in html


def test_run_card_says_why_bad_unconfirmed_or_novel(demo_db):
    from pages_factory import add_novel_image

    from panel_app.pages.run import card_html

    db, settings, _demo = demo_db
    add_novel_image(db, settings, "TOF_timing", 121270, 3)
    page = RunPage(store(db, settings))
    cards = {c.plot_type: c for c in page.cards}
    novel = cards["TOF_timing"]
    assert novel.state == "unconfirmed" and novel.novel and novel.rank[0] == 1
    html = card_html(novel, gradcam=False, opacity=0.5, now=utcnow())
    assert "unlike the training data" in html and "novelty 4.20 &gt; limit 1.50" in html and "BAD" not in html
    assert "1 unlike the training data" in page.status_pane.object
    for card in page.cards:
        if card.state == "bad":
            assert "≥ threshold 0.700" in card.reason
        elif card.state == "unconfirmed" and not card.novel:
            assert card.reason.startswith("no label confirmed") and "< threshold" in card.reason
        else:
            assert card.novel or card.reason == ""


def test_log_lists_novel_images_and_suggestions_with_their_labeler_link(demo_db):
    from pages_factory import add_novel_run

    db, settings, _demo = demo_db
    add_novel_run(db, settings, "TOF_timing", 121280)
    page = LogPage(store(db, settings))
    novel = [e for items in page.grouped.values() for e in items if e.kind == "unlike the training data"]
    assert len(novel) == 10 and all("novelty" in e.reason and "> limit 1.50" in e.reason for e in novel)
    assert "10</b> unlike the training data" in page.body.object
    assert "Retraining suggested" in page.suggestions_pane.object
    assert "reason=novel" in page.suggestions_pane.object
    page.kind = "unlike the training data"
    assert sum(len(v) for v in page.grouped.values()) == 10
    assert "unlike the training data: **10**" in page.markdown_brief().getvalue()


def test_status_page_banner_lists_retraining_suggestions(demo_db):
    from pages_factory import add_novel_run

    db, settings, _demo = demo_db
    assert StatusPage(store(db, settings, "viewer")).suggestions_pane.object == ""
    add_novel_run(db, settings, "TOF_timing", 121280)
    banner = StatusPage(store(db, settings, "viewer")).suggestions_pane.object
    assert "TOF_timing run 121280" in banner and "83%" in banner and "./labeler?plot_type=TOF_timing" in banner


def test_trends_page_draws_novelty_with_its_limit(demo_db):
    from pages_factory import add_novel_run

    db, settings, demo = demo_db
    add_novel_run(db, settings, "TOF_timing", 121280)
    page = TrendsPage(store(db, settings, "viewer"))
    page.plot_type = demo.plot_types["TOF_timing"]
    assert len(page.chart) == 3 and "<b>10</b> above the limit" in page.chart[1].object
    figure = page.chart[2].object
    assert "novelty" in figure.title.text
    plain = TrendsPage(store(db, settings, "viewer"))
    plain.plot_type = demo.plot_types["FCAL_hits"]
    assert len(plain.chart) == 1  # no novelty scores: no novelty chart


def test_labeler_shows_the_queue_a_suggestion_names(demo_db):
    from pages_factory import add_novel_run

    db, settings, demo = demo_db
    novel = add_novel_run(db, settings, "TOF_timing", 121280)
    args = {"plot_type": "TOF_timing", "run": "121280", "reason": "novel"}
    page = LabelerPage(store(db, settings, "labeler"), args=args)
    assert page.plot_type == demo.plot_types["TOF_timing"]
    assert sorted(t.image_id for t in page.tiles) == sorted(novel)
    assert [t.image_id for t in page.tiles][0] == novel[-1]  # the most novel first
    assert "TOF_timing run 121280" in page.queue_header.object and "unlike the training data" in page.queue_header.object
    assert page.queue_header.visible
    assert "unlike the training data" in page.grid.images[0]["detail"]
    page.grid.painted = {str(i): demo.labels["TOF_timing"]["Good"] for i in novel[:4]}
    assert page.apply() == 4
    assert {t.image_id for t in page.tiles[:6]} == set(novel[4:])  # unlabeled first after Apply
    assert "6 not labeled yet" in page.queue_header.object
    page.plot_type = demo.plot_types["FCAL_hits"]  # another plot type: its whole queue, no header
    assert page.suggestion is None and not page.queue_header.visible
    for wrong, said in (({"plot_type": "nope", "run": "1", "reason": "novel"}, "No plot type named"),
                        ({"plot_type": "TOF_timing", "run": "x", "reason": "novel"}, "not a run number"),
                        ({"plot_type": "TOF_timing", "run": "1", "reason": "bad"}, "neither")):
        other = LabelerPage(store(db, settings, "labeler"), args=wrong)
        assert other.suggestion is None and said in other.feedback.object and other.feedback.visible


def test_daily_brief_escapes_user_text():
    from hydra_assets.rules import BAD
    from panel_app.views_data import LogEntry

    now = utcnow()
    entry = LogEntry(1, 1, 1, "<b>x</b>|y", 5, 1, now, "Bad*", "#f00", 0.9, BAD, False, {}, "<img src=x>")
    text = brief_markdown({"<script>": [entry]}, now - timedelta(hours=1), now)
    assert "<script>" not in text and "<img" not in text and "\\|y" in text


# ---- Library ---------------------------------------------------------------------------------------


def test_library_read_only_for_viewer_and_editable_for_expert(demo_db):
    db, settings, demo = demo_db
    viewer = LibraryPage(store(db, settings, "viewer"))
    viewer.plot_type = demo.plot_types["FCAL_hits"]
    assert "★" in viewer.models_pane.object and viewer.selected().active
    assert not viewer.save_threshold.visible and "read-only" in viewer.permission_note.object
    bad = demo.labels["FCAL_hits"]["Bad"]
    assert viewer.edit_threshold(bad, 0.2) is False  # the callback itself refuses, widget hidden or not
    assert "Refused" in viewer.feedback.object
    viewer.model_id = demo.models["FCAL_hits"][0]
    assert viewer.activate() is False
    with db.read() as s:
        assert s.scalar(select(Threshold.value).where(Threshold.label_id == bad,
                                                      Threshold.model_id == demo.models["FCAL_hits"][1])) == 0.7
    expert = LibraryPage(store(db, settings, "expert"))
    expert.plot_type = demo.plot_types["FCAL_hits"]
    assert expert.save_threshold.visible
    assert expert.edit_threshold(bad, 0.33) is True and "0.700 → 0.330" in expert.feedback.object
    assert expert.feedback.visible and expert.feedback.alert_type == "success"  # shown, not hidden by the redraw
    assert "0.330" in expert.thresholds_pane.object
    expert.model_id = demo.models["FCAL_hits"][0]
    assert "has no backtest" in expert.permission_note.object  # said before the button is pressed (issue 15)
    assert expert.activate_button.visible and expert.activate() is True
    assert expert.feedback.visible and "is now active" in expert.feedback.object
    assert expert.selected().active and any(n.startswith("★ v1") for n in expert.param.model_id.names)
    tabs = [name for name, _ in zip(expert.tabs._names, expert.tabs, strict=False)]
    assert tabs == ["Confusion matrix", "Validation", "Backtest", "Challenger", "Loss & accuracy", "Thresholds",
                    "Reference", "Mask"]
    assert "has no backtest" in expert.feedback.object  # activation says so (issue 15)


def test_library_threshold_form_writes_only_a_chosen_label_and_a_weight(demo_db):
    from hydra_assets.db.models import ThresholdChange
    from panel_app.pages.library import parse_threshold

    db, settings, demo = demo_db
    page = LibraryPage(store(db, settings, "expert"))
    page.plot_type = demo.plot_types["FDC_efficiency"]
    assert page.label_select.value is None and page.threshold_input.value == "" and page.save_threshold.disabled
    assert page.edit_threshold(None, "0.5") is False and "Choose a label" in page.threshold_note.object
    bad = demo.labels["FDC_efficiency"]["Bad"]
    page.label_select.value = bad
    assert float(page.threshold_input.value) == 0.7 and not page.save_threshold.disabled
    for typed in ("1.7", "-1", "abc"):
        page.threshold_input.value_input = typed
        assert page.save_threshold.disabled and "between 0 and 1" in page.threshold_note.object
        assert page.edit_threshold(bad, typed) is False and "Nothing was saved" in page.threshold_note.object
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(ThresholdChange)) == 0
    assert page.edit_threshold(bad, "0.6") is True and "0.700 → 0.600" in page.feedback.object
    assert page.label_select.value == bad and page.threshold_input.value == "0.6"
    # the hand-set threshold has no stored F1: the page recomputes it on the validation report's images
    bad_row = next(r for r in page.thresholds_pane.object.split("<tr>") if ">Bad<" in r)
    assert "—" not in bad_row and "*" in bad_row
    assert parse_threshold(" 0,25 ") == (0.25, "") and parse_threshold("")[0] is None
    # the validation figures next to the thresholds come from the confusion matrix's images, at these thresholds
    assert "Validation at these thresholds" in page.thresholds_pane.object
    assert "24 validation images, the same as the confusion matrix" in page.thresholds_pane.object


def test_library_shows_validation_by_run_warnings_rules_novelty_and_suggestions(demo_db):
    from pages_factory import VALIDATION_METRICS, add_novel_run

    db, settings, demo = demo_db
    add_novel_run(db, settings, "TOF_timing", 121280)
    page = LibraryPage(store(db, settings, "viewer"))
    page.plot_type = demo.plot_types["TOF_timing"]
    assert "⚠" in page.models_pane.object and "2 runs" in page.models_pane.object
    for warning in VALIDATION_METRICS["validation"]["warnings"]:
        assert warning in page.warnings_pane.object
    validation = page.tabs[1].object
    assert "121250" in validation and "121251" in validation and "runs" in validation
    assert "lowest threshold whose confirmed precision reaches 0.95" in validation and "0.95" in validation
    assert "1.500" in validation and "99.0%" in validation and "2.0%" in validation  # limit, quantile, rate
    assert "run 121280" in page.suggestions_pane.object
    assert "labeler?plot_type=TOF_timing&amp;run=121280&amp;reason=novel" in page.suggestions_pane.object
    other = LibraryPage(store(db, settings, "viewer"))
    other.plot_type = demo.plot_types["FCAL_hits"]
    assert other.suggestions_pane.object == "" and other.warnings_pane.object == ""
    assert "No run-held-out validation recorded" in other.tabs[1].object


# ---- Labeler ---------------------------------------------------------------------------------------


def test_labeler_paint_twenty_and_apply_stores_twenty_and_refills(demo_db):
    db, settings, demo = demo_db
    page = LabelerPage(store(db, settings, "labeler"))
    page.plot_type = demo.plot_types["CDC_occupancy"]
    queued = page.counts[page.plot_type]
    shown = [t.image_id for t in page.tiles]
    assert len(shown) == min(50, queued) and page.tiles[0].priority == 0
    page.grid.selected = 1  # "Bad"
    page.grid.painted = {str(i): demo.labels["CDC_occupancy"]["Bad"] for i in shown[:20]}
    assert page.apply() == 20
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(LabelHistory).where(LabelHistory.image_id.in_(shown[:20]))) == 20
    assert page.counts[page.plot_type] == queued - 20
    assert not set(shown[:20]) & {t.image_id for t in page.tiles}  # refilled with the next images
    assert page.grid.painted == {} and "Stored 20" in page.feedback.object


def test_labeler_label_all_and_refusal_for_viewer(demo_db):
    db, settings, demo = demo_db
    page = LabelerPage(store(db, settings, "viewer"))
    page.plot_type = demo.plot_types["CDC_occupancy"]
    assert "read only" in page.info.object
    page.label_all()
    assert len(page.grid.painted) == len(page.tiles)
    assert page.apply() is None and "Refused" in page.feedback.object
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Image).where(
            Image.id.in_([t.image_id for t in page.tiles]), Image.label_id.is_not(None))) == 0
    assert len(page.grid.painted) == len(page.tiles)  # the paint stays, nothing is lost


def test_labeler_editor_mode_filters_and_pages(demo_db):
    db, settings, demo = demo_db
    page = LabelerPage(store(db, settings, "labeler"), page_size=20)
    page.plot_type = demo.plot_types["CDC_occupancy"]
    page.mode = EDITOR
    first = [t.image_id for t in page.tiles]
    assert len(first) == 20 and all(t.label_id is not None for t in page.tiles)
    page.next_page()
    second = [t.image_id for t in page.tiles]
    assert second and not set(first) & set(second)
    page.previous_page()
    assert [t.image_id for t in page.tiles] == first
    page.editor_label = demo.labels["CDC_occupancy"]["Good"]
    assert all(t.label_id == demo.labels["CDC_occupancy"]["Good"] for t in page.tiles)
    page.start = utcnow() - timedelta(hours=30)
    assert all(t.labeled_at >= page.start for t in page.tiles)
    # relabel in editor mode: Good -> NoData
    target = page.tiles[0].image_id
    page.grid.painted = {str(target): demo.labels["CDC_occupancy"]["NoData"]}
    assert page.apply() == 1
    with db.read() as s:
        assert s.get(Image, target).label_id == demo.labels["CDC_occupancy"]["NoData"]


# ---- Status, Browser, Trends, Report ---------------------------------------------------------------


def test_status_page_heartbeats_and_stage_summaries(demo_db):
    db, settings, _demo = demo_db
    page = StatusPage(store(db, settings))
    assert "last updated" in page.beats_pane.object and "predict: median" in page.summary_pane.object
    assert len(page.charts) == 3
    now = utcnow()
    assert beat_state(now - timedelta(seconds=5), now) == "ok" and beat_state(now - timedelta(hours=1), now) == "stale"
    means = per_run_means([("predict", 10.0, 2, now), ("predict", 30.0, 2, now), ("predict", 5.0, 1, now)])
    assert means == {"predict": ([1, 2], [5.0, 20.0])}


def test_browser_page_filters_and_pages(demo_db):
    db, settings, demo = demo_db
    page = BrowserPage(store(db, settings), page_size=30)
    total = page.total
    assert len(page.tiles) == 30 and "of " in page.pager.object
    page.next_page()
    assert page.page == 1 and page.tiles
    page.group = "BCAL"
    assert page.page == 0 and {t.plot_type_id for t in page.tiles} == {demo.plot_types["BCAL_energy"]}
    page.group = ""
    page.label_source, page.label_name = "model", "Bad"
    assert page.total is None and "next page" in page.pager.object or "last page" in page.pager.object
    assert page.tiles and all(t.model_label_id is not None for t in page.tiles)
    page.label_source, page.label_name = "human", "Bad"
    assert page.total < total
    page.run_min, page.run_max = 121264, 121264
    assert {t.run for t in page.tiles} == {121264}


def test_trends_page_points_and_thresholds(demo_db):
    db, settings, demo = demo_db
    page = TrendsPage(store(db, settings))
    page.plot_type = demo.plot_types["BCAL_energy"]
    assert len(page.points) == 12 and page.thresholds == {"Good": 0.75, "Bad": 0.7, "Hot": 0.7}
    page.hours = 0.25
    assert page.points == [] and "No classification" in page.note.object


def test_report_page_one_click_fix_checks_permission(demo_db):
    db, settings, demo = demo_db
    viewer = ReportPage(store(db, settings, "viewer"))
    viewer.plot_type = demo.plot_types["FDC_efficiency"]
    item = viewer.items[0]
    assert "Read only" in viewer.header.object
    assert viewer.fix(item.image_id, item.model_label_id) is False
    labeler = ReportPage(store(db, settings, "labeler"))
    labeler.plot_type = demo.plot_types["FDC_efficiency"]
    assert labeler.fix(item.image_id, item.model_label_id) is True
    assert next(i for i in labeler.items if i.image_id == item.image_id).fixed
