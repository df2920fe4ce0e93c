"""The reference comparison on the pages (issue 14), on SQLite and MariaDB: each image's newest reference version,
the images the reference score flagged, the Browser's sort and filters, Trends points, the Library's reference
writes (permission, validation, only what changed), and each page's logic without a browser."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pages_factory import add_reference, populate
from sqlalchemy import func, select

from hydra_assets.catalog import CatalogError, PermissionDenied
from hydra_assets.db.models import AuditLog, Image, PlotType, ReferenceScore, ReferenceSet, Run, utcnow
from panel_app import views_data as v
from panel_app.config import PagesConfig
from panel_app.pages.browser import BrowserPage
from panel_app.pages.compare import ComparePage, as_grey_or_rgb, diverging
from panel_app.pages.library import LibraryPage
from panel_app.pages.log import LogPage, brief_html, brief_markdown
from panel_app.pages.run import RunPage
from panel_app.pages.trends import TrendsPage
from panel_app.queries import reference as rq
from panel_app.queries.browser import browse, browse_count
from panel_app.store import SHARED, HydraStore

PLOT_TYPE = "CDC_occupancy"


@pytest.fixture
def demo(db, hydra_home):
    """A populated database (images on disk) per backend."""
    SHARED.clear()
    return populate(db, hydra_home)


def store(db, settings, user="expert") -> HydraStore:
    SHARED.clear()
    return HydraStore(db, PagesConfig(settings=settings, sync_mlflow_alias=False), user=user)


def add_scores(db, plot_type_id: int, rows: list[tuple[int, int, float | None, bool]], *, limit: float = 2.0,
               ago: timedelta = timedelta(minutes=5)) -> None:
    """Reference versions (one per version number seen) and score rows (image id, version, score, flagged);
    a None score is stored as missing."""
    now = utcnow() - ago

    def work(s) -> None:  # type: ignore[no-untyped-def]
        for version in sorted({r[1] for r in rows}):
            if not s.scalar(select(ReferenceSet.id).where(ReferenceSet.plot_type_id == plot_type_id,
                                                          ReferenceSet.version == version)):
                s.add(ReferenceSet(plot_type_id=plot_type_id, version=version, runs=[1], chosen_by="expert",
                                   score_limit=limit, n_images=5))
        for k, (image_id, version, score, flagged) in enumerate(rows):
            image = s.get(Image, image_id)
            s.add(ReferenceScore(image_id=image_id, plot_type_id=plot_type_id, run_number=image.run_number,
                                 chunk=image.chunk, reference_version=version,
                                 status="missing" if score is None else "scored",
                                 reason="image of another size" if score is None else None, score=score,
                                 score_limit=limit, flagged=flagged, computed_at=now + timedelta(seconds=k)))

    db.write(work, what="reference scores")


def first_images(demo, n: int = 4, plot_type: str = PLOT_TYPE) -> list[int]:
    return demo.images[plot_type][:n]


# ---- queries -----------------------------------------------------------------------------------------------


def test_an_images_score_is_its_newest_reference_versions(db, demo):
    a, b, c, _d = first_images(demo)
    pt = demo.plot_types[PLOT_TYPE]
    add_scores(db, pt, [(a, 1, 5.0, True), (a, 2, 1.0, False), (b, 1, 3.0, True), (c, 1, 4.0, True), (c, 2, None, False)])
    with db.read() as s:
        found = rq.latest_scores(s, [a, b, c])
        tiles = [v.Tile(i, pt, 1, 1, utcnow()) for i in (a, b, c, _d)]
        rq.attach_reference_scores(s, tiles)
    assert found[a][:3] == (1.0, 2.0, 2) and found[b][:3] == (3.0, 2.0, 1)
    assert found[c][2:4] == (2, "missing")
    assert [(t.reference_score, t.reference_flagged) for t in tiles] == [(1.0, False), (3.0, True), (None, False),
                                                                         (None, False)]


def test_the_flagged_listing_holds_only_flags_a_newer_reference_did_not_take_back(db, demo):
    a, b, c, d = first_images(demo)
    pt = demo.plot_types[PLOT_TYPE]
    add_scores(db, pt, [(a, 1, 5.0, True), (a, 2, 1.0, False), (b, 1, 3.0, True), (c, 2, 4.5, True)])
    add_scores(db, pt, [(d, 1, 9.0, True)], ago=timedelta(hours=30))  # outside a 24 h window
    with db.read() as s:
        flags = rq.flagged_by_reference(s, utcnow() - timedelta(hours=24))
        older = rq.flagged_by_reference(s, utcnow() - timedelta(hours=48))
    assert [(f.image_id, f.version, f.score, f.limit) for f in flags] == [(c, 2, 4.5, 2.0), (b, 1, 3.0, 2.0)]
    assert flags[0].plot_type == PLOT_TYPE
    assert [f.image_id for f in older] == [c, b, d]


def test_browser_sorts_by_reference_score_and_filters_above_the_limit(db, demo):
    a, b, c, d = first_images(demo)
    pt = demo.plot_types[PLOT_TYPE]
    add_scores(db, pt, [(a, 1, 1.5, False), (b, 1, 7.0, True), (c, 1, 3.0, True), (c, 2, 0.5, False)])
    only = v.BrowseFilter(plot_type_ids=[pt])
    with db.read() as s:
        tiles, _more = browse(s, only, sort=v.REFERENCE_SORT, limit=200)
        above = v.BrowseFilter(plot_type_ids=[pt], reference_above_limit=True)
        above_tiles, _ = browse(s, above, sort=v.REFERENCE_SORT)
        at_least = v.BrowseFilter(plot_type_ids=[pt], reference_min=1.0)
        at_least_tiles, _ = browse(s, at_least, sort="newest first")
        counts = browse_count(s, above), browse_count(s, at_least), browse_count(s, only)
        images = s.scalar(select(func.count(Image.id)).where(Image.plot_type_id == pt))
    assert [t.image_id for t in tiles[:3]] == [b, a, c]  # c's newest version says 0.5
    assert [t.reference_score for t in tiles[:3]] == [7.0, 1.5, 0.5]
    assert all(t.reference_score is None for t in tiles[3:]) and len(tiles) == images  # unscored last, all kept
    assert [t.image_id for t in above_tiles] == [b]
    assert sorted(t.image_id for t in at_least_tiles) == sorted([a, b])
    assert counts == (1, 2, images)


def test_trend_points_are_the_scored_ones_oldest_first(db, demo):
    a, b, c, _d = first_images(demo)
    pt = demo.plot_types[PLOT_TYPE]
    add_scores(db, pt, [(a, 1, 1.0, False), (b, 1, None, False), (c, 1, 2.5, True)])
    with db.read() as s:
        points = rq.reference_trend(s, pt, utcnow() - timedelta(hours=1))
    assert [(p.score, p.limit, p.version, p.flagged) for p in points] == [(1.0, 2.0, 1, False), (2.5, 2.0, 1, True)]


# ---- writes: use run N as reference, settings ----------------------------------------------------------------


def test_use_run_as_reference_makes_a_new_version_in_the_history(db, demo, hydra_home):
    pt = demo.plot_types[PLOT_TYPE]
    expert = store(db, hydra_home, "expert")
    first = expert.choose_reference(pt, [121262], comment="quiet run")
    second = expert.choose_reference(pt, [121263, 121262])
    history = expert.reference_sets(pt)
    assert (first.version, second.version) == (1, 2)
    assert [(h.version, h.runs, h.chosen_by, h.active, h.rule) for h in history] == [
        (2, [121262, 121263], "expert", True, "expert"), (1, [121262], "expert", False, "expert")]
    assert history[1].comment == "quiet run" and history[0].n_images > 0 and history[0].score_limit is not None
    with db.read() as s:
        assert s.scalar(select(func.count(AuditLog.id)).where(AuditLog.action == "choose reference",
                                                              AuditLog.allowed.is_(True))) == 2


def test_a_viewer_is_refused_and_bad_runs_are_said_with_nothing_written(db, demo, hydra_home):
    pt = demo.plot_types[PLOT_TYPE]
    db.write(lambda s: s.add(Run(number=121299, first_seen=utcnow(), last_seen=utcnow())), what="empty run")
    with pytest.raises(PermissionDenied):
        store(db, hydra_home, "viewer").choose_reference(pt, [121262])
    expert = store(db, hydra_home, "expert")
    with pytest.raises(CatalogError, match="run 999999 is unknown to Hydra"):
        expert.choose_reference(pt, [121262, 999999])
    with pytest.raises(CatalogError, match=f"run 121299 has no image of {PLOT_TYPE}"):
        expert.choose_reference(pt, [121299])
    with db.read() as s:
        assert s.scalar(select(func.count(ReferenceSet.id))) == 0
        assert s.scalar(select(PlotType.reference_rule).where(PlotType.id == pt)) == "auto"
        refused = s.scalar(select(func.count(AuditLog.id)).where(AuditLog.action == "choose reference",
                                                                 AuditLog.allowed.is_(False)))
    assert refused == 1


def test_reference_settings_write_only_what_changed(db, demo, hydra_home):
    pt = demo.plot_types[PLOT_TYPE]
    expert = store(db, hydra_home, "expert")
    assert expert.set_reference_settings(pt, alarm=False, quantile=0.99, rule="auto") == []
    assert expert.set_reference_settings(pt, alarm=True) == ["reference alarm on"]
    assert expert.reference_settings(pt) == (True, 0.99, "auto")
    with pytest.raises(CatalogError, match="outside"):
        expert.set_reference_settings(pt, quantile=1.5)
    with pytest.raises(PermissionDenied):
        store(db, hydra_home, "viewer").set_reference_settings(pt, alarm=False)
    assert expert.reference_settings(pt) == (True, 0.99, "auto")


# ---- pages, without a browser ------------------------------------------------------------------------------


def test_pictures_become_pngs_and_the_difference_diverges_around_zero():
    import numpy as np

    grey = as_grey_or_rgb(np.full((4, 4), 0.5))
    assert grey.dtype == np.uint8 and grey.max() == 128 or grey.max() == 127
    rgb, peak = diverging(np.array([[-2.0, 0.0, 2.0]]))
    assert peak == 2.0
    assert tuple(rgb[0, 1]) == (255, 255, 255)  # agreement is white
    assert rgb[0, 2, 0] > rgb[0, 2, 2] and rgb[0, 0, 2] > rgb[0, 0, 0]  # higher red, lower blue


def test_pages_show_the_reference_score(db, demo, hydra_home):
    made = add_reference(db, hydra_home, PLOT_TYPE, [121262])
    flagged = [i for i, (_score, f) in made["scores"].items() if f]
    assert flagged, "the test data should hold images unlike run 121262"
    expert = store(db, hydra_home, "expert")
    pt = demo.plot_types[PLOT_TYPE]

    compare = ComparePage(store=expert, image=flagged[0])
    html = compare.body.object
    assert html.count('alt="image"') == html.count('alt="reference"') == html.count('alt="difference"') == 1
    assert "unlike its reference" in html and f"limit <b>{made['limit']:.2f}</b>" in html
    assert "reference v1 (run 121262)" in html
    with_cam = next(i for i in made["scores"] if expert.locator.gradcam_path(i) is not None)  # a Bad one
    assert 'alt="GradCAM"' in ComparePage(store=expert, image=with_cam).body.object  # "why" beside the difference
    assert 'alt="GradCAM"' not in ComparePage(store=expert, image=next(
        i for i in made["scores"] if expert.locator.gradcam_path(i) is None)).body.object

    run = RunPage(store=expert)
    card = next(c for c in run.cards if c.plot_type_id == pt)
    assert card.reference_score == pytest.approx(made["scores"][card.image_id][0], rel=1e-4)
    assert f"./compare?image={card.image_id}" in run.grid_pane.object

    log = LogPage(store=expert)
    assert {f.image_id for f in log.reference} == set(flagged)
    assert "Unlike their reference" in log.body.object
    brief = log.markdown_brief().getvalue()
    assert f"## Unlike their reference — {len(flagged)} image(s)" in brief
    assert f"| {made['limit']:.2f} | v1 |" in brief

    trends = TrendsPage(store=expert, plot_type=pt)
    assert len(trends.reference_points) == len(made["scores"])
    assert any("Reference score" in str(getattr(p, "object", "")) for p in trends.chart)

    browser = BrowserPage(store=expert, plot_types=[pt], sort=v.REFERENCE_SORT)
    top = max(score for score, _f in made["scores"].values())
    assert browser.tiles[0].reference_score == pytest.approx(top, rel=1e-4)  # MariaDB FLOAT: single precision
    browser.reference_above = True
    assert {t.image_id for t in browser.tiles} == set(flagged)


def test_compare_without_a_reference_says_so(db, demo, hydra_home):
    page = ComparePage(store=store(db, hydra_home), image=first_images(demo, 1)[0])
    assert "Nothing to compare this image with" in page.body.object and "no reference yet" in page.body.object
    missing = ComparePage(store=store(db, hydra_home), image=10**9)
    assert "No such image" in missing.body.object


def test_library_reference_tab_uses_runs_or_says_why_not(db, demo, hydra_home):
    pt = demo.plot_types[PLOT_TYPE]
    library = LibraryPage(store=store(db, hydra_home, "expert"))
    library.plot_type = pt  # the page opens on the first plot type
    section = library.reference
    assert section.plot_type_id == pt
    assert "No reference yet" in section.current_pane.object
    assert section.use_runs("121262, abc") is False and "“abc” is not a run number" in section.runs_note.object
    assert section.use_runs("999999") is False and "unknown to Hydra" in section.runs_note.object
    assert section.use_runs("121262", "first") is True
    assert "Current reference: v1" in section.current_pane.object and "reference-history" in section.history_pane.object
    assert section.save_settings("expert", False, "0.95") == ["quantile 0.99 → 0.95"]  # the rule is already expert

    viewer_page = LibraryPage(store=store(db, hydra_home, "viewer"))
    viewer_page.plot_type = pt
    viewer = viewer_page.reference
    assert "needs the <code>edit_reference</code> permission" in viewer.permission_note.object
    assert viewer.use_runs("121263") is False and "Refused" in viewer.feedback.object
    assert [s.version for s in store(db, hydra_home).reference_sets(pt)] == [1]


def test_brief_markdown_lists_reference_flags():
    flag = v.ReferenceFlag(1, 2, "A_*plot", 5, 3, utcnow(), 3.25, 1.5, 4)
    text = brief_markdown({}, utcnow() - timedelta(hours=24), utcnow(), [flag])
    assert "Unlike their reference (reference score above its limit): **1**" in text
    assert "| A\\_\\*plot | 5 | 3 | 3.25 | 1.50 | v4 |" in text
    page = brief_html({}, utcnow() - timedelta(hours=24), utcnow(), reference=[flag])
    assert "Unlike their reference (1)" in page and "<td>A_*plot</td>" in page and "<td>3.25</td><td>1.50</td>" in page


def test_run_page_names_reference_alarms_and_cards_as_stored():
    from panel_app.pages.run import alarm_heading, card_html

    now = utcnow()
    alarms = [v.AlarmInfo(k, "P", 1, 2, None, "", now, 9, kind=kind)
              for k, kind in enumerate(["bad", "reference", "reference", "novel"])]
    assert alarm_heading(alarms) == "confirmed Bad (1), unlike the training data (1), unlike its reference (2)"
    card = v.Card(1, "P", 5, 3, 42, now, inference_id=7, classified_at=now, status="classified", label="Good",
                  weight=0.9, decided=True, keep_reason="reference", reference_score=4.0, reference_limit=2.5)
    html = card_html(card, gradcam=False, opacity=0.8, now=now)
    assert "unlike its reference</span> score 4.00 &gt; limit 2.50" in html and "./compare?image=42" in html
    plain = v.Card(1, "A", 5, 3, 43, now, reference_score=1.0, reference_limit=2.5)
    assert "reference score 1.00 / limit 2.50" in card_html(plain, gradcam=False, opacity=0.8, now=now)
    flagged = v.Card(1, "Z", 5, 3, 44, now, reference_score=5.0, reference_limit=2.5, reference_flagged=True)
    assert [c.image_id for c in sorted([plain, flagged, card], key=lambda c: c.rank)] == [42, 44, 43]  # unlike first


def test_browser_uses_the_one_run_shown_as_reference(db, demo, hydra_home):
    pt = demo.plot_types[PLOT_TYPE]
    both = BrowserPage(store=store(db, hydra_home, "expert"), plot_types=[pt, demo.plot_types["FCAL_hits"]],
                       run_min=121262, run_max=121262)
    assert both.viewed_run() is None and "Show one run" in both.use_as_reference()
    viewer = BrowserPage(store=store(db, hydra_home, "viewer"), plot_types=[pt], run_min=121262, run_max=121262)
    assert viewer.use_as_reference().startswith("Refused")
    expert = BrowserPage(store=store(db, hydra_home, "expert"), plot_types=[pt], run_min=121262, run_max=121262)
    assert expert.viewed_run() == (pt, 121262)
    assert "reference version 1 from run 121262" in expert.use_as_reference()
    assert [(s.version, s.runs) for s in store(db, hydra_home).reference_sets(pt)] == [(1, [121262])]


def test_browser_asks_for_a_plot_type_before_sorting_every_image_by_score(db, demo, hydra_home):
    everything = BrowserPage(store=store(db, hydra_home), sort=v.REFERENCE_SORT)
    assert everything.tiles == [] and "Choose a plot type, plot group or system" in everything.results.object
    everything.group = "CDC"
    assert everything.tiles and "Choose a plot type" not in everything.results.object


def test_switching_the_rule_to_auto_follows_the_latest_good_runs_now(db, demo, hydra_home):
    pt = demo.plot_types[PLOT_TYPE]
    library = LibraryPage(store=store(db, hydra_home, "expert"))
    library.plot_type = pt
    section = library.reference
    assert section.use_runs("121262") is True  # an expert's reference: rule expert
    done = section.save_settings("auto", None, "0.99")
    assert len(done) == 1 and done[0].startswith("rule expert → auto: ")
    assert store(db, hydra_home).reference_settings(pt)[2] == "auto"
    assert "Saved: rule expert → auto" in section.feedback.object
    assert section.save_settings("auto", None, "0.99") == []  # nothing changed: nothing written
    assert "Nothing changed" in section.feedback.object


def test_library_reference_messages_belong_to_the_plot_type_shown(db, demo, hydra_home):
    library = LibraryPage(store=store(db, hydra_home, "viewer"))
    library.plot_type = demo.plot_types[PLOT_TYPE]
    section = library.reference
    assert section.save_settings("expert", True, "0.99") == [] and "Refused" in section.feedback.object
    assert section.feedback.visible and section.alarm_box.value is False  # the form shows what is stored
    assert section.use_runs("12x") is False and "not a run number" in section.runs_note.object
    library.plot_type = demo.plot_types["FCAL_hits"]
    assert not section.feedback.visible and section.runs_note.object == ""
