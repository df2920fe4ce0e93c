"""Runs page, flags strip, alarm history and the run-condition filters: their queries on SQLite and MariaDB,
and the pages' logic without a browser (flags are inserted as the flags step leaves them)."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from hydra_assets import catalog
from hydra_assets.catalog import PermissionDenied
from hydra_assets.db.models import Alarm, AuditLog, FlagSignoff, Image, Inference, Run, RunFlag, utcnow
from hydra_assets.flags.rules import FlagError
from hydra_assets.flags.signoff import standing_flags
from hydra_assets.settings import load_settings
from panel_app.config import PagesConfig
from panel_app.pages.alarms import AlarmsPage
from panel_app.pages.run_flags import reasons_text, strip_html
from panel_app.pages.runs import RunsPage
from panel_app.queries import runs as runs_queries
from panel_app.store import SHARED, HydraStore
from panel_app.views_data import AlarmFilter, BrowseFilter, RunsFilter, needs_signoff

RUNS = list(range(1000, 1012))  # 12 runs; 1011 is the newest
GROUPS = {"CDC": "Tracking", "FDC": "Tracking", "BCAL": "Calorimetry"}


def experiment(db) -> dict:  # type: ignore[no-untyped-def]
    """Users, three plot groups in two systems, 12 runs with conditions, flags over chunk ranges, images and
    alarms: what the pipeline and the flags step leave behind."""
    now = utcnow().replace(microsecond=0)
    ids: dict = {"now": now}

    def work(s) -> None:  # type: ignore[no-untyped-def]
        catalog.ensure_roles(s)
        for name, role in (("coord", "coordinator"), ("viewer", "viewer"), ("admin", "admin")):
            catalog.add_user(s, name, role=role)
        for group, system in GROUPS.items():
            pt = catalog.add_plot_type(s, f"{group}_hits", ["Good", "Bad"], ["Bad"], groups=[group], super_group=system)
            ids[group] = pt.id
            ids[f"{group}_bad"] = next(lab.id for lab in pt.labels if lab.name == "Bad")
        s.flush()
        for run in RUNS:
            s.add(Run(number=run, first_seen=now - timedelta(hours=2 * (1012 - run)), last_seen=now,
                      conditions={"target": "LH2" if run % 2 else "Be", "energy": 11.6 if run < 1006 else 8.5},
                      chunk_count=10, image_count=30))
            for group in GROUPS:
                # runs 1003 and 1009: CDC Bad from chunk 5; 1007: FDC Medium; the rest Good
                bad = group == "CDC" and run in (1003, 1009)
                medium = group == "FDC" and run == 1007
                ranges = [(0, 4, "Good"), (5, 9, "Bad")] if bad else [(0, 9, "Medium" if medium else "Good")]
                for first, last, flag in ranges:
                    reasons = ([{"plot_type": f"{group}_hits", "flag": flag, "chunks": [[first, last]],
                                 "text": "Bad 0.93 >= threshold 0.70"}] if flag != "Good" else
                               [{"text": "all 1 plot types Good or without data"}])
                    s.add(RunFlag(run_number=run, scope="group", group_name=group, first_chunk=first, last_chunk=last,
                                  flag=flag, reasons=reasons, computed_at=now - timedelta(minutes=30)))
            for system in set(GROUPS.values()):
                worst = "Bad" if system == "Tracking" and run in (1003, 1009) else "Good"
                s.add(RunFlag(run_number=run, scope="super_group", group_name=system, first_chunk=0, last_chunk=9,
                              flag=worst, reasons=[], computed_at=now - timedelta(minutes=30)))
            for chunk in range(10):
                image = Image(plot_type_id=ids["CDC"], run_number=run, chunk=chunk, digest=f"{run}-{chunk}",
                              file_name=f"CDC_hits-{run}-{chunk}.png", received_at=now - timedelta(minutes=chunk),
                              queue_priority=0 if chunk >= 5 and run in (1003, 1009) else None)
                s.add(image)
        s.flush()
        # alarms: two on run 1009 (one acknowledged), one novel on 1003
        for k, (run, chunk, kind, acked) in enumerate(((1009, 6, "bad", True), (1009, 7, "bad", False),
                                                       (1003, 5, "novel", False))):
            image_id = s.scalar(select(Image.id).where(Image.run_number == run, Image.chunk == chunk))
            inference = Inference(image_id=image_id, plot_type_id=ids["CDC"], run_number=run, chunk=chunk,
                                  model_key="none")
            s.add(inference)
            s.flush()
            s.add(Alarm(inference_id=inference.id, image_id=image_id, plot_type_id=ids["CDC"], label_id=ids["CDC_bad"],
                        kind=kind, message=f"CDC_hits run {run} chunk {chunk}: Bad", raised_at=now - timedelta(hours=k),
                        acknowledged_by="viewer" if acked else None,
                        acknowledged_at=now - timedelta(minutes=5) if acked else None))

    db.write(work, what="runs experiment")
    return ids


def store_for(db, user: str | None) -> HydraStore:  # type: ignore[no-untyped-def]
    SHARED.clear()
    return HydraStore(db, PagesConfig(settings=load_settings(), sync_mlflow_alias=False), user=user)


@pytest.fixture
def world(db, hydra_home):  # type: ignore[no-untyped-def]
    return db, experiment(db)


# ---- the Runs page query ----------------------------------------------------------------------------


def test_runs_newest_first_with_paging_and_their_flags(world):
    db, _ids = world
    store = store_for(db, "viewer")
    first, more = store.runs_page(RunsFilter(), limit=5)
    assert [r.number for r in first] == [1011, 1010, 1009, 1008, 1007] and more
    last, more = store.runs_page(RunsFilter(), limit=5, offset=10)
    assert [r.number for r in last] == [1001, 1000] and not more
    assert store.runs_count(RunsFilter()) == 12 and store.runs_count(RunsFilter(run_min=1010)) == 2
    run = next(r for r in first if r.number == 1009)
    assert run.cells[("group", "CDC")].standing == "Bad"  # worst of Good 0-4, Bad 5-9
    assert [(p.first_chunk, p.last_chunk, p.standing) for p in run.cells[("group", "CDC")].ranges] == [
        (0, 4, "Good"), (5, 9, "Bad")]
    assert run.cells[("super_group", "Tracking")].standing == "Bad"
    assert run.cells[("group", "BCAL")].standing == "Good"
    assert run.conditions == {"target": "LH2", "energy": 8.5} and run.chunk_count == 10


def test_filters_by_run_range_flag_group_and_condition(world):
    db, _ids = world
    store = store_for(db, "viewer")

    def runs(**kw) -> list[int]:  # type: ignore[no-untyped-def]
        return [r.number for r in store.runs_page(RunsFilter(**kw), limit=50)[0]]

    assert runs(run_min=1004, run_max=1006) == [1006, 1005, 1004]
    assert runs(flag="Bad") == [1009, 1003]
    assert runs(flag="Medium") == [1007]
    assert runs(flag="Bad", group="BCAL") == []
    assert runs(flag="Bad", scope="super_group", group="Tracking") == [1009, 1003]
    assert runs(condition_key="target", condition_value="Be") == [1010, 1008, 1006, 1004, 1002, 1000]
    assert runs(condition_key="energy", condition_value="11.6") == [1005, 1004, 1003, 1002, 1001, 1000]
    assert runs(condition_key="energy", condition_value="8.5", flag="Bad") == [1009]
    assert runs(condition_key="no such key", condition_value="x") == []
    assert runs(condition_key="target", condition_value="' OR 1=1 --") == []  # a bound value, not SQL
    assert store.condition_keys() == ["energy", "target"]


def test_override_stands_survives_recomputation_and_is_audited(world):
    db, _ids = world
    coordinator = store_for(db, "coord")
    coordinator.sign_off_flag(1009, "group", "CDC", 5, 9, action="override", flag="Good",
                              comment="HV trip recovered, chunks fine on inspection")
    cells = coordinator.runs_page(RunsFilter(run_min=1009, run_max=1009))[0][0].cells
    assert cells[("group", "CDC")].standing == "Good"
    assert cells[("group", "CDC")].computed == "Bad"
    assert [r.number for r in coordinator.runs_page(RunsFilter(flag="Bad", group="CDC"))[0]] == [1003]
    assert [r.number for r in coordinator.runs_page(RunsFilter(flag="Good", group="CDC"))[0]][:3] == [1011, 1010, 1009]

    # the flags step recomputes run 1009 (new rows, same verdict): the override still stands
    def recompute(s) -> None:  # type: ignore[no-untyped-def]
        s.query(RunFlag).filter(RunFlag.run_number == 1009, RunFlag.group_name == "CDC").delete()
        for first, last, flag in ((0, 4, "Good"), (5, 9, "Bad")):
            s.add(RunFlag(run_number=1009, scope="group", group_name="CDC", first_chunk=first, last_chunk=last,
                          flag=flag, reasons=[], computed_at=utcnow() - timedelta(seconds=1)))

    db.write(recompute)
    cell, history = coordinator.flag_cell(1009, "group", "CDC")
    assert cell is not None and cell.standing == "Good"
    assert [(h.user, h.action, h.previous_flag, h.flag) for h in history] == [("coord", "override", "Bad", "Good")]
    assert "HV trip" in history[0].comment
    with db.read() as s:
        audit = s.scalars(select(AuditLog.detail).where(AuditLog.user_name == "coord", AuditLog.allowed)).all()
    assert any("1009" in d and "Bad -> Good" in d for d in audit)


def test_a_viewer_is_refused_and_nothing_is_written(world):
    db, _ids = world
    viewer = store_for(db, "viewer")
    with pytest.raises(PermissionDenied, match="certify"):
        viewer.sign_off_flag(1003, "group", "CDC", None, None, action="confirm", flag=None, comment="")
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(FlagSignoff)) == 0
        refused = s.scalars(select(AuditLog.detail).where(AuditLog.user_name == "viewer", ~AuditLog.allowed)).all()
    assert refused and "1003" in refused[-1]


def test_only_runs_needing_sign_off(world):
    db, _ids = world
    coordinator = store_for(db, "coord")
    needing = RunsFilter(needs_signoff=True, group="CDC")
    assert len(coordinator.runs_page(needing)[0]) == 12 and coordinator.runs_count(needing) is None  # not counted
    coordinator.sign_off_flag(1011, "group", "CDC", None, None, action="confirm", flag=None, comment="looked at it")
    coordinator.sign_off_flag(1009, "group", "CDC", 0, 4, action="confirm", flag=None, comment="")
    numbers = [r.number for r in coordinator.runs_page(needing)[0]]
    assert 1011 not in numbers and 1009 in numbers  # 1009's chunks 5-9 are not signed off yet
    cells = coordinator.run_flags(1011)
    assert not needs_signoff(cells[("group", "CDC")]) and needs_signoff(cells[("group", "FDC")])


def test_sql_flag_filter_agrees_with_the_standing_flags(world):
    """The filter's SQL and `flags.standing` decide the same runs, after whole-run, range and partial sign-offs."""
    db, _ids = world
    coordinator = store_for(db, "coord")
    coordinator.sign_off_flag(1003, "group", "CDC", None, None, action="override", flag="Medium", comment="partly ok")
    coordinator.sign_off_flag(1005, "group", "CDC", 2, 3, action="override", flag="Bad", comment="hot wire")
    coordinator.sign_off_flag(1007, "group", "FDC", None, None, action="override", flag="Good", comment="fine")
    coordinator.sign_off_flag(1007, "group", "FDC", None, None, action="override", flag="Bad", comment="not fine")
    with db.read() as s:
        standing = standing_flags(s, RUNS)
    with db.read() as s:
        page = {(run, *key): cell for run, cells in runs_queries.flag_cells(s, RUNS, reasons=True).items()
                for key, cell in cells.items()}
    assert page == {(f.run_number, f.scope, f.group_name): f for f in standing}  # the page reads the same rule

    def standing_of(cell):  # type: ignore[no-untyped-def]
        return cell.standing, [(r.first_chunk, r.last_chunk, r.standing, r.signed_by) for r in cell.ranges]

    matrix = {(run.number, *key): standing_of(cell) for run in coordinator.runs_page(RunsFilter(), limit=50)[0]
              for key, cell in run.cells.items()}  # read without reasons
    assert matrix == {key: standing_of(cell) for key, cell in page.items()}
    for flag in ("Good", "Medium", "Bad"):
        for group in GROUPS:
            expected = sorted({f.run_number for f in standing if f.group_name == group
                               and any(r.standing == flag for r in f.ranges)}, reverse=True)
            found = [r.number for r in coordinator.runs_page(RunsFilter(flag=flag, group=group), limit=50)[0]]
            assert found == expected, (flag, group)


def test_runs_page_detail_sign_off_form_and_downloads(world):
    db, ids = world
    page = RunsPage(store=store_for(db, "viewer"), args={"run": "1009", "scope": "group", "group": "CDC"})
    assert page.picked == (1009, "group", "CDC")
    detail = page.detail.object
    assert "CDC_hits Bad in chunks 5-9" in detail and "Nobody has signed" in detail
    assert "./browser?run=1009&amp;group=CDC" in detail
    assert len(re.findall(r'<div class="tile( bad)?">', detail)) == 5  # chunks 5-9, where the flag is Bad
    assert "chunk 5<" in detail and "chunk 4<" not in detail
    page._sign_off()  # as a viewer: refused, with the reason where the form is
    assert page.feedback.alert_type == "danger" and "certify" in page.feedback.object

    page = RunsPage(store=store_for(db, "coord"), args={"run": "1009", "scope": "group", "group": "CDC"})
    page.action.value = "override"
    page._sign_off()  # no flag chosen: nothing written
    assert page.feedback.alert_type == "warning" and "choose the new flag" in page.feedback.object
    page.range_choice.value = "5-9"
    page.new_flag.value = "Medium"
    page._sign_off()  # no comment
    assert page.feedback.alert_type == "warning" and "comment" in page.feedback.object
    page.comment.value = "beam halo, physics usable"
    page._sign_off()
    assert page.feedback.alert_type == "success" and "Medium" in page.feedback.object
    assert "beam halo" in page.detail.object and "Bad → Medium" in page.detail.object
    assert json.loads(page.export("json").getvalue())["1009"] == [[0, 4]]
    page.group = "CDC"
    golden = json.loads(page.export("json").getvalue())
    assert golden["1011"] == [[0, 9]] and golden["1009"] == [[0, 4]]
    csv_text = page.export("csv").getvalue()
    assert "beam halo" in csv_text and csv_text.splitlines()[0].startswith("run,")
    assert ids


def test_reasons_in_words():
    assert reasons_text([{"plot_type": "CDC_hits", "flag": "Bad", "chunks": [[5, 9], [12, 12]], "text": "why",
                          "alarms": [3, 4], "more_alarms": 7}, {"rule": "bad_share 0.2"}, "plain",
                         {"group": "CDC", "flag": "Medium", "chunks": [[1, 1]]}]) == (
        "CDC_hits Bad in chunks 5-9, 12 (why) alarms 3, 4 and 7 more; bad_share 0.2; plain; CDC Medium in chunks 1")


def test_run_page_strip_shows_the_live_runs_flags(world):
    db, _ids = world
    store = store_for(db, "viewer")
    html = strip_html(1009, store.run_flags(1009))
    assert 'data-group="CDC" data-flag="Bad"' in html and "<b>B</b>" in html and "#D55E00" in html
    assert "./runs?run=1009&amp;scope=group&amp;group=CDC" in html
    assert "no flags computed yet" in strip_html(5555, store.run_flags(5555))


# ---- Plot Browser: run conditions -------------------------------------------------------------------


def test_browser_filters_images_by_a_run_condition(world):
    db, ids = world
    store = store_for(db, "viewer")
    tiles, _more = store.browse(BrowseFilter(condition_key="target", condition_value="Be"), limit=200)
    assert tiles and {t.run for t in tiles} == {1000, 1002, 1004, 1006, 1008, 1010}
    assert store.browse_count(BrowseFilter(condition_key="energy", condition_value="8.5")) == 60
    assert ids["CDC"]


# ---- alarm history ----------------------------------------------------------------------------------


def test_alarm_history_newest_first_with_filters(world):
    db, ids = world
    store = store_for(db, "viewer")
    rows, more = store.alarm_history(AlarmFilter())
    assert [(a.run, a.chunk) for a in rows] == [(1009, 6), (1009, 7), (1003, 5)] and not more
    assert rows[0].acknowledged_by == "viewer" and rows[1].acknowledged_at is None
    assert [a.chunk for a in store.alarm_history(AlarmFilter(acknowledged=False))[0]] == [7, 5]
    assert [a.kind for a in store.alarm_history(AlarmFilter(kind="novel"))[0]] == ["novel"]
    assert store.alarm_history(AlarmFilter(plot_type_id=ids["FDC"]))[0] == []
    since = ids["now"] - timedelta(minutes=90)
    assert [a.chunk for a in store.alarm_history(AlarmFilter(since=since))[0]] == [6, 7]
    page_one, more = store.alarm_history(AlarmFilter(), limit=2)
    assert len(page_one) == 2 and more


def test_alarms_page_shows_who_acknowledged(world):
    db, _ids = world
    page = AlarmsPage(store=store_for(db, "viewer"))
    assert "not acknowledged" in page.table.object and ">viewer<" in page.table.object
    page.acknowledged = "yes"
    assert page.table.object.count("<tr data-alarm") == 1
    page.kind = "novel"
    assert "No alarm matches" in page.table.object


def test_a_sign_off_of_an_unknown_group_is_refused(world):
    db, _ids = world
    with pytest.raises(FlagError, match="unknown plot group"):
        store_for(db, "coord").sign_off_flag(1009, "group", "NOPE", None, None, action="confirm", flag=None,
                                             comment="")


def test_flag_filters_search_the_newest_runs_unless_run_from_is_given(world, monkeypatch):
    import panel_app.queries.runs as runs_queries

    db, _ids = world
    monkeypatch.setattr(runs_queries, "LOOK_BACK", 5)  # 2,000 in production
    store = store_for(db, "viewer")
    assert [r.number for r in store.runs_page(RunsFilter(flag="Bad"))[0]] == [1009]  # 1003 is older than 5 runs
    assert store.look_back_start(RunsFilter(flag="Bad")) == 1007
    assert [r.number for r in store.runs_page(RunsFilter(flag="Bad", run_min=1000))[0]] == [1009, 1003]
    assert store.look_back_start(RunsFilter(flag="Bad", run_max=1004)) == 1000
    assert store.look_back_start(RunsFilter(condition_key="target", condition_value="Be")) is None
    page = RunsPage(store=store, flag="Bad")
    assert "searched the newest" in page.pager.object and "from run 1007" in page.pager.object


def test_group_names_and_reasons_from_the_database_are_escaped(world):
    from pages_factory import active_markup

    db, _ids = world
    forged = "<img src=x onerror=alert(7)>"
    db.write(lambda s: s.add(RunFlag(run_number=1011, scope="group", group_name=forged, first_chunk=0, last_chunk=9,
                                     flag="Bad", reasons=[{"plot_type": forged, "flag": "Bad", "chunks": [[0, 9]],
                                                           "text": forged}])))
    store = store_for(db, "viewer")
    strip = strip_html(1011, store.run_flags(1011))
    page = RunsPage(store=store, args={"run": "1011", "scope": "group", "group": forged})
    for markup in (strip, page.detail.object):
        assert forged not in markup and active_markup(markup) == []
        assert "&lt;img src=x onerror=alert(7)&gt;" in markup


def test_a_download_that_cannot_be_made_says_why(world, monkeypatch):
    db, _ids = world
    store = store_for(db, "viewer")
    page = RunsPage(store=store)

    def refuse(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise FlagError("unknown plot group 'CDC2'")

    monkeypatch.setattr(store, "export_flags", refuse)
    assert "unknown plot group" in page.export("json").getvalue()
    assert page.feedback.visible and "No certification file" in page.feedback.object


def test_runs_page_pages_forward_and_back(world):
    db, _ids = world
    page = RunsPage(store=store_for(db, "viewer"))
    page.param.page_size.objects = [5, 25, 50, 100]
    page.page_size = 5

    def shown() -> list[int]:
        return [r.number for r in page.runs]

    assert shown() == [1011, 1010, 1009, 1008, 1007] and page.has_more
    page.page = 1
    assert shown() == [1006, 1005, 1004, 1003, 1002] and "runs 6–10 of 12" in page.pager.object
    page.page = 2
    assert shown() == [1001, 1000] and not page.has_more
    page.page = 1
    assert shown() == [1006, 1005, 1004, 1003, 1002]
    page.flag = "Bad"  # a filter starts again at the first page
    assert page.page == 0 and shown() == [1009, 1003]
