"""The pages' queries and data store, on SQLite and MariaDB: what each page reads, and that writes check permission."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pages_factory import add_bad_image, isolated_settings, make_users_only, populate
from sqlalchemy import delete, func, select, update

from hydra_assets.catalog import CatalogError, PermissionDenied
from hydra_assets.db.engine import HydraDB
from hydra_assets.db.migrate import upgrade
from hydra_assets.db.models import (
    AuditLog,
    Image,
    Inference,
    KeepDecision,
    LabelHistory,
    Model,
    Threshold,
    utcnow,
)
from hydra_assets.rules import BAD, NOVEL, UNCONFIRMED
from panel_app import queries as q
from panel_app import views_data as v
from panel_app.config import PagesConfig
from panel_app.store import SHARED, HydraStore
from tests.conftest import fresh_mysql_database


@pytest.fixture
def config(hydra_home):
    return PagesConfig(settings=hydra_home, sync_mlflow_alias=False)


@pytest.fixture
def demo(db, hydra_home):
    """A fresh populated database, for tests that change it."""
    SHARED.clear()
    return populate(db, hydra_home)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def shared(request, tmp_path_factory):
    """One populated database per backend for the tests that only read (or are refused)."""
    home = tmp_path_factory.mktemp("pages_store")
    if request.param == "sqlite":
        url, drop = f"sqlite:///{home / 'hydra.db'}", None
    else:
        url, drop = fresh_mysql_database(request.getfixturevalue("mysql_server"), prefix="hydra_pages")
    settings = isolated_settings(home, url)
    upgrade(url)
    database = HydraDB(url)
    demo = populate(database, settings)
    yield database, settings, demo
    database.dispose()
    if drop:
        drop()


def store_for(db, config, user):
    SHARED.clear()
    return HydraStore(db, config, user=user)


def test_every_query_answers_on_an_empty_database(db):
    make_users_only(db)
    since = utcnow() - timedelta(days=1)
    with db.read() as s:
        assert q.catalogue(s) == {}
        assert q.run_grid(s) == []
        assert q.alarms_after(s, 0) == [] and q.last_alarm_id(s) == 0
        assert q.news(s) == []
        assert q.log_entries(s, since) == []
        assert q.queue_counts(s, []) == {}
        assert q.stage_timings(s, since) == [] and q.heartbeats(s) == [] and q.images_per_hour(s, since) == []
        assert q.browse(s, v.BrowseFilter()) == ([], False) and q.browse_count(s, v.BrowseFilter()) == 0
        assert q.reports(s) == [] and q.latest_run(s) is None


def test_run_grid_puts_confirmed_bad_then_unconfirmed_first(shared):
    db, _settings, demo = shared
    with db.read() as s:
        cards = q.run_grid(s)
    assert len(cards) == len(demo.plot_types)
    ranks = [{"bad": 0, "unconfirmed": 1}.get(c.state, 2) for c in cards]
    assert ranks == sorted(ranks)
    assert any(c.state == "bad" for c in cards)
    bad = next(c for c in cards if c.state == "bad")
    assert bad.gradcam and bad.label and bad.colour.startswith("#")


def test_new_confirmed_bad_reaches_grid_and_alarms(db, hydra_home, demo):
    with db.read() as s:
        last = q.last_alarm_id(s)
    image_id = add_bad_image(db, hydra_home, "TOF_timing", 121265, 1)
    with db.read() as s:
        alarms = q.alarms_after(s, last)
        card = next(c for c in q.run_grid(s) if c.plot_type == "TOF_timing")
    assert [a.image_id for a in alarms] == [image_id]
    assert alarms[0].run == 121265 and alarms[0].label == "Bad"
    assert card.state == "bad" and card.image_id == image_id



def test_pages_show_the_keep_reason_the_keeper_stored(db, hydra_home, demo):
    """The grid, the Log and the tiles read the stored keep decision; they never judge the weights again."""
    image_id = add_bad_image(db, hydra_home, "TOF_timing", 121265, 1)  # a confirmed Bad, kept as "bad"
    since, until = v.window(1)

    def shown() -> tuple[str, list[str], str | None]:
        with db.read() as s:
            card = next(c for c in q.run_grid(s) if c.image_id == image_id)
            kinds = [e.kind for e in q.log_entries(s, since, until) if e.image_id == image_id]
            tile = next(t for t in q.browse(s, v.BrowseFilter(), limit=500)[0] if t.image_id == image_id)
        return card.state, kinds, tile.keep_reason

    assert shown() == (BAD, ["confirmed Bad"], BAD)
    db.write(lambda s: s.execute(update(KeepDecision).where(KeepDecision.image_id == image_id)
                                 .values(reason=UNCONFIRMED)))
    assert shown() == (UNCONFIRMED, ["unconfirmed"], UNCONFIRMED)
    db.write(lambda s: s.execute(update(KeepDecision).where(KeepDecision.image_id == image_id)
                                 .values(reason=NOVEL)))
    assert shown() == (UNCONFIRMED, ["unlike the training data"], NOVEL)  # novel: an unconfirmed card, not Bad
    db.write(lambda s: s.execute(delete(KeepDecision).where(KeepDecision.image_id == image_id)))
    assert shown() == ("pending", [], None)  # Predict flagged it; the Keeper has not decided yet

def test_log_lists_flagged_newest_first_grouped_by_plot_group(shared):
    db, _settings, _demo = shared
    since, until = v.window(24)
    with db.read() as s:
        entries = q.log_entries(s, since, until)
        groups = {pt.id: pt.groups for pt in q.catalogue(s).values()}
        flagged = s.scalar(select(func.count()).select_from(Inference).where(Inference.flagged.is_(True)))
    assert len(entries) == flagged
    times = [e.classified_at for e in entries]
    assert times == sorted(times, reverse=True)
    assert {e.kind for e in entries} <= {"confirmed Bad", "unconfirmed"}
    grouped = v.group_log(entries, groups)
    assert list(grouped)[-1] == v.UNGROUPED  # TOF_timing has no group; Ungrouped comes last
    assert {"CDC", "FDC", "BCAL", "FCAL"} <= set(grouped)
    with db.read() as s:  # a narrower window holds fewer
        assert len(q.log_entries(s, until - timedelta(hours=2), until)) < len(entries)


def test_labeler_queue_is_bad_and_unconfirmed_first_with_keyset_pages(shared):
    db, _settings, demo = shared
    pt = demo.plot_types["CDC_occupancy"]
    with db.read() as s:
        total = q.queue_counts(s, [pt])[pt]
        first = q.labeler_queue(s, pt, limit=10)
        seen = [t.image_id for t in first]
        cursor = first[-1].queue_key
        while True:
            page = q.labeler_queue(s, pt, limit=10, after=cursor)
            if not page:
                break
            seen += [t.image_id for t in page]
            cursor = page[-1].queue_key
        everything = q.labeler_queue(s, pt, limit=1000)
    assert total == len(demo.queue["CDC_occupancy"]) == len(seen) == len(set(seen))
    priorities = [t.priority for t in everything]
    assert priorities == sorted(priorities) and priorities[0] == 0 and priorities[-1] == 1
    assert all(t.label_id is None for t in everything)
    assert all(t.model_label_id is not None for t in everything)  # the model's label comes along


def test_editor_pages_through_labeled_images_by_label_and_time(shared):
    db, _settings, demo = shared
    pt = demo.plot_types["BCAL_energy"]
    labels = list(demo.labels["BCAL_energy"].values())
    with db.read() as s:
        labeled = s.scalar(select(func.count()).select_from(Image).where(Image.plot_type_id == pt,
                                                                          Image.label_id.is_not(None)))
        seen, cursor = [], None
        while True:
            page = q.editor_page(s, pt, labels, before=cursor, limit=7)
            if not page:
                break
            seen += page
            cursor = page[-1].editor_key
        good = q.editor_page(s, pt, [demo.labels["BCAL_energy"]["Good"]], limit=1000)
        recent = q.editor_page(s, pt, labels, start=utcnow() - timedelta(hours=30), limit=1000)
    keys = [t.editor_key for t in seen]
    assert len(seen) == labeled == len({t.image_id for t in seen})
    assert keys == sorted(keys, reverse=True)
    assert good and all(t.label_id == demo.labels["BCAL_energy"]["Good"] for t in good)
    assert len(recent) < labeled  # the validation images were labeled two days ago


def test_browse_filters_sorts_and_caps_the_count(shared):
    db, _settings, demo = shared
    cdc = demo.plot_types["CDC_occupancy"]
    with db.read() as s:
        everything, more = q.browse(s, v.BrowseFilter(), limit=500)
        total = q.browse_count(s, v.BrowseFilter())
        runs, _ = q.browse(s, v.BrowseFilter(run_min=121263, run_max=121263), limit=500)
        one, more_one = q.browse(s, v.BrowseFilter(plot_type_ids=[cdc]), limit=5, sort="run, chunk (ascending)")
        n_one = q.browse_count(s, v.BrowseFilter(plot_type_ids=[cdc]))
        human_bad, _ = q.browse(s, v.BrowseFilter(label_name="Bad"), limit=500)
        model_bad, _ = q.browse(s, v.BrowseFilter(label_source="model", label_name="Bad"), limit=500)
        model_count = q.browse_count(s, v.BrowseFilter(label_source="model", label_name="Bad"))
        unlabeled, _ = q.browse(s, v.BrowseFilter(label_name=v.UNLABELED), limit=500)
        capped = q.browse_count(s, v.BrowseFilter(), cap=10)
        nothing = q.browse(s, v.BrowseFilter(plot_type_ids=[]))
    assert total == len(everything) and not more and {t.run for t in runs} == {121263}
    assert n_one == len(demo.images["CDC_occupancy"]) and len(one) == 5 and more_one
    assert model_count is None  # not counted: it would scan the run history
    assert [(t.run, t.chunk) for t in one] == sorted((t.run, t.chunk) for t in one)
    assert human_bad and all(t.label_id is not None for t in human_bad)
    assert model_bad and all(t.model_label_id is not None for t in model_bad)
    assert unlabeled and all(t.label_id is None for t in unlabeled)
    assert capped == 11  # "more than 10"
    assert nothing == ([], False)


def test_novelty_reaches_grid_log_trend_and_tiles_with_thresholds(db, hydra_home, demo):
    """The queries carry each image's novelty, its limit and the threshold of its top label."""
    from pages_factory import add_novel_run

    novel = add_novel_run(db, hydra_home, "TOF_timing", 121280)
    since, until = v.window(1)
    pt = demo.plot_types["TOF_timing"]
    with db.read() as s:
        card = next(c for c in q.run_grid(s) if c.plot_type == "TOF_timing")
        entries = [e for e in q.log_entries(s, since, until) if e.plot_type == "TOF_timing"]
        points = [p for p in q.trend(s, pt, since, until) if p.run == 121280]
        tiles = q.tiles_of(s, list(reversed(novel)))
        bad_card = next(c for c in q.run_grid(s) if c.state == BAD)
    assert card.image_id == novel[-1] and card.novel and card.state == UNCONFIRMED
    assert (card.novelty, card.novelty_limit, card.threshold) == (pytest.approx(5.3), 1.5, 0.75)
    assert bad_card.threshold == 0.7 and bad_card.reason.endswith("≥ threshold 0.700")
    assert sorted(e.image_id for e in entries) == sorted(novel) and {e.kind for e in entries} == {v.LOG_KINDS[NOVEL]}
    assert all(e.threshold == 0.75 and e.novelty > e.novelty_limit for e in entries)
    assert len(points) == 12 and sum(p.novelty > p.novelty_limit for p in points) == 10
    assert [t.image_id for t in tiles] == list(reversed(novel)) and all(t.novel and t.unconfirmed for t in tiles)


def test_suggestions_and_their_labeler_queue_through_the_store(db, hydra_home, demo, config):
    from pages_factory import add_novel_run

    store = store_for(db, config, "viewer")
    assert store.suggestions() == []
    novel = add_novel_run(db, hydra_home, "TOF_timing", 121280)
    store = store_for(db, config, "viewer")
    found = store.suggestions()
    assert [(x.plot_type, x.run, x.kind) for x in found] == [("TOF_timing", 121280, "novel")]
    assert store.suggestions("FCAL_hits") == [] and store.suggestions("TOF_timing") == found
    tiles = store.suggested_tiles("TOF_timing", 121280, "novel")
    assert [t.image_id for t in tiles] == list(reversed(novel))  # the most novel first
    assert v.labeler_link("TOF_timing", 121280, "novel") == "./labeler?plot_type=TOF_timing&run=121280&reason=novel"


def test_f1_at_a_hand_set_threshold_from_the_validation_report(db, config, demo):
    store = store_for(db, config, "expert")
    info = store.model(demo.models["FDC_efficiency"][-1])
    names, true, weights = store.validation_predictions(info)
    assert names == ["Good", "Bad"] and len(true) == len(weights) == 24
    f1 = store.f1_at_threshold(info, "Bad", 0.6)
    assert f1 is not None and 0.0 <= f1 <= 1.0
    assert store.f1_at_threshold(info, "Bad", 1.0) in (0.0, None) or store.f1_at_threshold(info, "Bad", 1.0) <= f1
    assert v.f1_at(["Good", "Bad"], [1, 1, 0], [[0.2, 0.8], [0.6, 0.4], [0.9, 0.1]], "Bad", 0.5) == pytest.approx(2 / 3)
    assert v.f1_at(["Good", "Bad"], [], [], "Bad", 0.5) is None


def test_validation_weights_only_from_a_report_that_holds_agreements_too(db, config, demo):
    """Training writes reports of disagreements only: figures from those alone would be all wrong."""
    from hydra_assets.db.models import TrainingReportItem

    model_id = demo.models["FDC_efficiency"][-1]
    with db.read() as s:
        assert len(q.validation_weights(s, model_id)) == 24
    db.write(lambda s: s.execute(delete(TrainingReportItem).where(
        TrainingReportItem.human_label_id == TrainingReportItem.model_label_id)))
    with db.read() as s:
        assert q.validation_weights(s, model_id) == []
    store = store_for(db, config, "viewer")
    assert store.validation_predictions(store.model(model_id))[1] == []
    figures = v.quality_at(["Good", "Bad"], [1, 1, 0], [[0.2, 0.8], [0.6, 0.4], [0.9, 0.1]], {"Bad": 0.5})
    assert figures["Bad"]["recall"] == 0.5 and figures["Good"]["precision"] == 0.5 and v.quality_at([], [], [], {}) == {}


def test_validation_summary_reads_whatever_training_wrote():
    from pages_factory import VALIDATION_METRICS

    full = v.validation_summary(VALIDATION_METRICS)
    assert full.split == "runs" and full.n_runs == 2 and full.runs == [121250, 121251]
    assert set(full.per_run) == {"121250", "121251"} and len(full.warnings) == 2
    assert full.precision_target == 0.95 and "Bad" in full.threshold_rules and full.novelty["limit"] == 1.5
    old = v.validation_summary({"val_accuracy": 1.0, "validation": {"per_label": {}}})
    assert old.split == "" and old.n_runs == 0 and old.warnings == [] and old.novelty == {}
    assert v.validation_summary({"validation": "broken", "novelty": 3}).split == ""


def test_trend_status_and_report_queries(shared):
    db, _settings, demo = shared
    since, until = v.window(24)
    pt = demo.plot_types["FCAL_hits"]
    with db.read() as s:
        points = q.trend(s, pt, since, until)
        timings = q.stage_timings(s, since)
        hourly = q.images_per_hour(s, since)
        reports = q.reports(s, pt)
        items, total = q.disagreements(s, reports[0].id, limit=5)
    assert points and [p.at for p in points] == sorted(p.at for p in points)
    assert set(points[0].weights) == {"Good", "Bad"}
    assert {t[0] for t in timings} == {"feeder", "predict", "keeper"}
    assert sum(n for _, n in hourly) > 0
    assert total == reports[0].n_disagreements and all(i.model_label_id != i.human_label_id for i in items)


def test_labeler_apply_stores_labels_and_records_who(db, hydra_home, demo):
    config = PagesConfig(settings=hydra_home)
    store = store_for(db, config, "labeler")
    pt = demo.plot_types["CDC_occupancy"]
    shown = demo.queue["CDC_occupancy"][:20]
    good = demo.labels["CDC_occupancy"]["Good"]
    assert store.apply_labels(pt, {str(i): good for i in shown}, shown=shown) == 20
    with db.read() as s:
        rows = s.scalars(select(LabelHistory).where(LabelHistory.image_id.in_(shown))).all()
        audit = s.scalars(select(AuditLog).where(AuditLog.action == "apply labels")).all()
    assert len(rows) == 20 and {r.user_id for r in rows} == {demo.users["labeler"]}
    assert audit[-1].user_name == "labeler" and audit[-1].allowed


@pytest.mark.parametrize("user", ["viewer", "nobody", None])
def test_labeler_apply_without_permission_changes_nothing(shared, user):
    db, settings, demo = shared
    store = store_for(db, PagesConfig(settings=settings), user)
    pt = demo.plot_types["CDC_occupancy"]
    shown = demo.queue["CDC_occupancy"][:5]
    with pytest.raises(PermissionDenied):
        store.apply_labels(pt, {i: demo.labels["CDC_occupancy"]["Bad"] for i in shown}, shown=shown)
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Image).where(Image.id.in_(shown),
                                                                       Image.label_id.is_not(None))) == 0
        refused = s.scalars(select(AuditLog).where(AuditLog.allowed.is_(False))).all()
    assert refused and refused[-1].action == "apply labels"


def test_labeler_apply_refuses_forged_images_and_labels(shared):
    db, settings, demo = shared
    store = store_for(db, PagesConfig(settings=settings), "labeler")
    cdc, fdc = demo.plot_types["CDC_occupancy"], demo.plot_types["FDC_efficiency"]
    shown = demo.queue["CDC_occupancy"][:3]
    other = demo.queue["FDC_efficiency"][0]
    with pytest.raises(CatalogError, match="not on this page"):
        store.apply_labels(cdc, {other: demo.labels["CDC_occupancy"]["Good"]}, shown=shown)
    with pytest.raises(CatalogError, match="not labels of this plot type"):
        store.apply_labels(cdc, {shown[0]: demo.labels["FDC_efficiency"]["Good"]}, shown=shown)
    with pytest.raises(CatalogError, match="another plot type"):  # a page claiming images of another plot type
        store.apply_labels(cdc, {other: demo.labels["CDC_occupancy"]["Good"]}, shown=[*shown, other])
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Image).where(Image.plot_type_id == fdc,
                                                                       Image.id == other, Image.label_id.is_not(None))) == 0


def test_thresholds_and_activation_need_their_permissions(db, config, demo):
    models = demo.models["FCAL_hits"]
    bad = demo.labels["FCAL_hits"]["Bad"]
    for user in ("viewer", "labeler"):
        store = store_for(db, config, user)
        with pytest.raises(PermissionDenied):
            store.set_threshold(models[1], bad, 0.42)
        with pytest.raises(PermissionDenied):
            store.activate_model(models[0])
    with db.read() as s:
        assert s.scalar(select(Threshold.value).where(Threshold.model_id == models[1], Threshold.label_id == bad)) == 0.7
        assert s.get(Model, models[1]).active and not s.get(Model, models[0]).active
    expert = store_for(db, config, "expert")
    assert expert.set_threshold(models[1], bad, 0.42) == pytest.approx(0.7)
    with pytest.raises(CatalogError):
        expert.set_threshold(models[1], bad, 1.5)
    expert.activate_model(models[0])
    with db.read() as s:
        assert s.scalar(select(Threshold.value).where(Threshold.model_id == models[1], Threshold.label_id == bad)) == 0.42
        assert s.get(Model, models[0]).active and not s.get(Model, models[1]).active
        assert s.get(Model, models[0]).activated_by == "expert"


def test_fix_label_from_training_report(db, config, demo):
    report = demo.reports["CDC_occupancy"]
    with db.read() as s:
        item = q.disagreements(s, report, limit=1)[0][0]
    with pytest.raises(PermissionDenied):
        store_for(db, config, "viewer").fix_label(item.image_id, item.model_label_id)
    store_for(db, config, "labeler").fix_label(item.image_id, item.model_label_id)
    with db.read() as s:
        again = next(i for i in q.disagreements(s, report, limit=100)[0] if i.image_id == item.image_id)
        history = s.scalars(select(LabelHistory).where(LabelHistory.image_id == item.image_id)
                            .order_by(LabelHistory.id.desc())).first()
    assert again.fixed and history.source == "training_report"


def test_confusion_matrix_from_a_validation_report(shared):
    db, settings, demo = shared
    store = store_for(db, PagesConfig(settings=settings), "viewer")
    with db.read() as s:
        active = q.active_model(s, demo.plot_types["BCAL_energy"])
    conf = store.confusion(active)
    assert conf.labels == ["Good", "Bad", "Hot"]
    assert conf.total == 24 and "validation" in conf.source
    assert 0 < conf.accuracy < 1
    assert all(0 <= w <= 1 for weights in conf.cells.values() for w in weights)


def test_confusion_matrix_from_recorded_predictions():
    import numpy as np

    conf = v.confusion_from_predictions(["Good", "Bad"], np.array([0, 0, 1, 1]),
                                        np.array([[0.9, 0.1], [0.3, 0.7], [0.2, 0.8], [0.6, 0.4]]))
    assert conf.count("Good", "Good") == 1 and conf.count("Good", "Bad") == 1 and conf.count("Bad", "Good") == 1
    assert conf.cells[("Bad", "Bad")] == [0.8] and conf.accuracy == 0.5


def test_curves_come_from_metrics_history():
    history = v.history_from_metrics({"history": {"loss": [1.0, 0.5], "accuracy": [0.5, 0.9], "note": "x"}})
    assert history == {"loss": [1.0, 0.5], "accuracy": [0.5, 0.9]}
    assert v.history_from_metrics({"val_accuracy": 0.9}) == {}
