"""Flags computed from the database and stored (SQLite and MariaDB): ranges, counts, idempotence, labels
changing them, sign-offs surviving recomputation, exports."""

from __future__ import annotations

import csv
import io
import json

import pytest
from flags_support import add_run, image_id, labels, setup_groups
from sqlalchemy import func, select

from hydra_assets.catalog import PermissionDenied
from hydra_assets.db.models import AuditLog, FlagSignoff, Run, RunFlag
from hydra_assets.flags.compute import compute_run_flags
from hydra_assets.flags.export import flags_csv, golden_json
from hydra_assets.flags.rulebook import list_rules, set_rule
from hydra_assets.flags.rules import FlagError
from hydra_assets.flags.signoff import record_signoff, standing_flags
from hydra_assets.labeling import apply_labels

RUN = 4711


def went_bad_at_40(plot_type: str, chunk: int) -> str:
    return "bad" if plot_type == "A" and chunk >= 40 else "good"


def stored(db, run=RUN, scope="group", group="Tracker") -> list[tuple[int, int, str]]:
    with db.read() as s:
        rows = s.scalars(select(RunFlag).where(RunFlag.run_number == run, RunFlag.scope == scope,
                                               RunFlag.group_name == group).order_by(RunFlag.first_chunk))
        return [(r.first_chunk, r.last_chunk, r.flag) for r in rows]


@pytest.fixture
def run_db(db):
    setup_groups(db)
    add_run(db, RUN, range(50), went_bad_at_40)
    return db


def test_run_that_went_bad_at_40_is_stored_as_two_ranges_with_counts(run_db):
    result = compute_run_flags(run_db, RUN)
    assert stored(run_db) == [(0, 39, "Good"), (40, 49, "Bad")]
    assert stored(run_db, group="Calo") == [(0, 49, "Good")]
    assert stored(run_db, scope="super_group", group="Detector") == [(0, 39, "Good"), (40, 49, "Bad")]
    assert (result.chunks, result.images, result.alarms) == (50, 150, 10)
    with run_db.read() as s:
        run = s.get(Run, RUN)
        assert (run.chunk_count, run.alarm_count) == (50, 10)
        reasons = s.scalar(select(RunFlag.reasons).where(RunFlag.group_name == "Tracker", RunFlag.flag == "Bad"))
    assert reasons[0]["plot_type"] == "A" and reasons[0]["chunks"] == [[40, 49]] and len(reasons[0]["alarms"]) == 10


def test_computing_twice_changes_nothing_and_a_new_chunk_extends_the_range(run_db):
    compute_run_flags(run_db, RUN)
    compute_run_flags(run_db, RUN)
    with run_db.read() as s:
        assert s.scalar(select(func.count(RunFlag.id)).where(RunFlag.run_number == RUN)) == 2 + 1 + 2
    add_run(run_db, RUN, range(50, 51), lambda pt, c: "good")
    compute_run_flags(run_db, RUN)
    assert stored(run_db) == [(0, 39, "Good"), (40, 49, "Bad"), (50, 50, "Good")]


def test_a_human_label_changes_the_flag_when_recomputed(run_db):
    compute_run_flags(run_db, RUN)
    ids = labels(run_db)
    image = image_id(run_db, RUN, "B", 10)
    run_db.write(lambda s: apply_labels(s, {image: ids[("B", "Bad")]}, user_id=None))
    compute_run_flags(run_db, RUN)
    assert stored(run_db) == [(0, 9, "Good"), (10, 10, "Bad"), (11, 39, "Good"), (40, 49, "Bad")]
    good = {image_id(run_db, RUN, "A", c): ids[("A", "Good")] for c in range(40, 50)}  # the model was wrong
    run_db.write(lambda s: apply_labels(s, good, user_id=None))
    compute_run_flags(run_db, RUN)
    assert stored(run_db) == [(0, 9, "Good"), (10, 10, "Bad"), (11, 49, "Good")]


def test_rule_consecutive_and_ignored_nodata(db):
    setup_groups(db)
    add_run(db, RUN, range(20), lambda pt, c: "bad" if pt == "A" and c in (3, 10, 11, 12) else
            "nodata" if pt == "C" else "good")
    db.write(lambda s: set_rule(s, "Tracker", rule="consecutive", consecutive=3, user="carol"))
    db.write(lambda s: set_rule(s, "Calo", ignore_labels=["NoData"], user="carol"))
    compute_run_flags(db, RUN)
    assert stored(db) == [(0, 2, "Good"), (3, 3, "Medium"), (4, 9, "Good"), (10, 12, "Bad"), (13, 19, "Good")]
    assert stored(db, group="Calo") == [(0, 19, "Null")]
    with db.read() as s:
        rules = {(r.scope, r.group_name): r for r in list_rules(s)}
    assert rules[("group", "Tracker")].configured and rules[("group", "Tracker")].spec.consecutive == 3
    assert not rules[("super_group", "Detector")].configured


def test_unknown_group_in_a_rule_names_the_known_ones(db):
    setup_groups(db)
    with pytest.raises(FlagError, match=r"unknown plot group 'Trackr'; known plot groups: Calo, Tracker"):
        db.write(lambda s: set_rule(s, "Trackr"))
    with pytest.raises(FlagError, match="known super groups: Detector"):
        db.write(lambda s: set_rule(s, "Tracker", scope="super_group"))


def test_override_survives_recomputation_and_is_audited(run_db):
    compute_run_flags(run_db, RUN)
    row = record_signoff(run_db, RUN, "group", "Tracker", "override", "Good", "beam tuning, not the detector",
                         "carol", 40, 44)
    assert (row.previous_flag, row.flag) == ("Bad", "Good")
    compute_run_flags(run_db, RUN)
    with run_db.read() as s:
        (flag,) = standing_flags(s, [RUN], groups=["Tracker"])
        audit = s.scalars(select(AuditLog).where(AuditLog.action == "sign off flag")).all()
    assert flag.computed == "Bad" and flag.standing == "Bad" and flag.overridden
    assert [(r.first_chunk, r.last_chunk, r.computed, r.standing, r.signed_by) for r in flag.ranges] == [
        (0, 39, "Good", "Good", None), (40, 44, "Bad", "Good", "carol"), (45, 49, "Bad", "Bad", None)]
    assert len(audit) == 1 and audit[0].user_name == "carol" and "Bad -> Good (override)" in audit[0].detail


def test_confirm_whole_run_and_refusals(run_db):
    compute_run_flags(run_db, RUN)
    row = record_signoff(run_db, RUN, "group", "Calo", "confirm", None, "looked at it", "carol")
    assert (row.previous_flag, row.flag, row.first_chunk) == ("Good", "Good", None)
    with pytest.raises(FlagError, match="several flags"):
        record_signoff(run_db, RUN, "group", "Tracker", "confirm", None, "", "carol")
    with pytest.raises(FlagError, match="override needs a comment"):
        record_signoff(run_db, RUN, "group", "Tracker", "override", "Good", " ", "carol")
    with pytest.raises(FlagError, match="reversed"):
        record_signoff(run_db, RUN, "group", "Tracker", "override", "Good", "x", "carol", 44, 40)
    with pytest.raises(FlagError, match="outside run 4711's chunks 0-49"):
        record_signoff(run_db, RUN, "group", "Tracker", "override", "Good", "x", "carol", 40, 80)
    with pytest.raises(FlagError, match="no computed flags"):
        record_signoff(run_db, RUN + 1, "group", "Tracker", "override", "Good", "x", "carol")
    with pytest.raises(PermissionDenied, match="needs 'certify'"):
        record_signoff(run_db, RUN, "group", "Tracker", "override", "Good", "x", "vic")
    with run_db.read() as s:
        assert s.scalar(select(func.count(FlagSignoff.id))) == 1
        refused = s.scalars(select(AuditLog).where(AuditLog.allowed.is_(False))).all()
    assert [r.user_name for r in refused] == ["vic"]


def test_golden_json_and_csv(run_db):
    add_run(run_db, RUN + 1, range(10), lambda pt, c: "bad" if pt == "C" and c == 5 else "good")
    add_run(run_db, RUN + 2, range(5), lambda pt, c: "bad")
    for run in (RUN, RUN + 1, RUN + 2):
        compute_run_flags(run_db, run)
    record_signoff(run_db, RUN, "group", "Tracker", "override", "Good", "beam tuning", "carol", 40, 44)
    with run_db.read() as s:
        tracker = json.loads(golden_json(s, ["Tracker"], RUN, RUN + 2))
        both = json.loads(golden_json(s, ["Tracker", "Calo"], RUN, RUN + 2))
        text = flags_csv(s, RUN, RUN + 2)
        with pytest.raises(FlagError, match="unknown plot group 'Nope'"):
            golden_json(s, ["Nope"], RUN, RUN + 2)
    assert tracker == {str(RUN): [[0, 44]], str(RUN + 1): [[0, 9]]}
    assert both == {str(RUN): [[0, 44]], str(RUN + 1): [[0, 4], [6, 9]]}
    rows = list(csv.DictReader(io.StringIO(text)))
    signed = [r for r in rows if r["run"] == str(RUN) and r["group"] == "Tracker" and r["first_chunk"] == "40"]
    assert signed[0]["computed_flag"] == "Bad" and signed[0]["flag"] == "Good" and signed[0]["signed_by"] == "carol"
    assert "A Bad in chunks 40-49" in signed[0]["reasons"] and "alarms" in signed[0]["reasons"]
    assert "override chunks 40-44 Bad->Good: beam tuning" in signed[0]["signoff_history"]
    assert {r["run"] for r in rows} == {str(RUN), str(RUN + 1), str(RUN + 2)}
    assert {(r["scope"], r["group"]) for r in rows} == {("group", "Tracker"), ("group", "Calo"),
                                                        ("super_group", "Detector")}


def test_novel_reference_and_unclassified_images_from_the_database(db):
    """A novel alarm and an unconfirmed image are Medium, a reference-flagged Good image is Medium, a
    reference alarm is Bad, an image no model classified is Null; each image's newest classification counts."""
    from hydra_assets.db.models import Alarm, Inference, ReferenceScore

    setup_groups(db)
    add_run(db, RUN, range(6), lambda pt, c: "none" if pt != "A" else "unsure" if c == 0 else "good")
    ids = labels(db)

    def evidence(s) -> None:  # type: ignore[no-untyped-def]
        def newest(chunk: int) -> Inference:
            return s.scalars(select(Inference).where(Inference.image_id == image_id(db, RUN, "A", chunk))
                             .order_by(Inference.id.desc())).first()

        first = newest(1)
        s.add(Alarm(inference_id=first.id, image_id=first.image_id, plot_type_id=first.plot_type_id, kind="novel"))
        first.confirmed = False
        second = newest(2)
        s.add(ReferenceScore(image_id=second.image_id, plot_type_id=second.plot_type_id, run_number=RUN, chunk=2,
                             flagged=True, score=9.0))
        third = newest(3)
        s.add(Alarm(inference_id=third.id, image_id=third.image_id, plot_type_id=third.plot_type_id,
                    kind="reference"))
        fourth = newest(4)
        fourth.status, fourth.top_label_id = "no_model", None
        fifth = newest(5)  # an older Bad classification replaced by a newer Good one
        s.add(Inference(image_id=fifth.image_id, plot_type_id=fifth.plot_type_id, run_number=RUN, chunk=5,
                        model_key="m/2", status="classified", weights={}, top_label_id=ids[("A", "Good")],
                        confirmed=True))
        fifth.is_bad, fifth.top_label_id = True, ids[("A", "Bad")]

    db.write(evidence)
    compute_run_flags(db, RUN)
    assert stored(db) == [(0, 2, "Medium"), (3, 3, "Bad"), (4, 4, "Null"), (5, 5, "Good")]
    with db.read() as s:
        (flag,) = standing_flags(s, [RUN], groups=["Tracker"])
    assert flag.ranges[0].reasons[0]["text"] == "unconfirmed, unlike the training data, unlike its reference"
    assert flag.ranges[1].reasons[0]["text"] == "alarm: reference"


def test_concurrent_computations_of_one_run_leave_one_set_of_rows(run_db):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: compute_run_flags(run_db, RUN), range(8)))
    assert all(r.rows == 5 for r in results)
    with run_db.read() as s:
        assert s.scalar(select(func.count(RunFlag.id)).where(RunFlag.run_number == RUN)) == 5
    assert stored(run_db) == [(0, 39, "Good"), (40, 49, "Bad")]
