"""Pure ingestion rules: confirmation, keep and collect, folder triage, run planning, cursors, records."""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from pathlib import Path

import pytest

from hydra_assets import rules
from hydra_assets.ingest import scan
from hydra_assets.ingest.quarantine import db_text, safe_file_name
from hydra_assets.ingest.records import FIELDS, inference_record
from hydra_assets.naming import ImageName
from hydra_assets.settings import DEFAULT_FILE_PATTERN

REGEX = re.compile(DEFAULT_FILE_PATTERN)
NOW = 1_800_000_000 * 10**9


# ---- confirmation ------------------------------------------------------------------------------------


def test_top_label_confirmed_at_or_above_its_own_threshold():
    judged = rules.classify_weights([0.3, 0.7], ["Good", "Bad"], {"Good": 0.9, "Bad": 0.7}, {"Bad"})
    assert (judged.top_label, judged.confirmed, judged.is_bad, judged.flagged) == ("Bad", True, True, True)
    judged = rules.classify_weights([0.3, 0.69], ["Good", "Bad"], {"Bad": 0.7}, {"Bad"})
    assert not judged.confirmed and judged.flagged  # unconfirmed Bad is on the Log page too


def test_confirmed_good_is_not_flagged_and_missing_threshold_defaults():
    judged = rules.classify_weights([0.8, 0.2], ["Good", "Bad"], {}, {"Bad"})
    assert judged.threshold == rules.DEFAULT_THRESHOLD and judged.confirmed and not judged.flagged
    unsure = rules.classify_weights([0.45, 0.35, 0.2], ["Good", "Bad", "NoData"], {}, {"Bad"})
    assert unsure.top_label == "Good" and not unsure.confirmed and unsure.flagged


def test_non_finite_weights_never_confirm():
    judged = rules.classify_weights([math.nan, math.inf], ["Good", "Bad"], {"Good": 0.0}, {"Bad"})
    assert judged.weights == {"Good": 0.0, "Bad": 0.0}
    assert json.dumps(judged.weights)  # valid JSON (no NaN)


def test_weights_and_labels_must_match():
    with pytest.raises(ValueError):
        rules.classify_weights([0.5], ["Good", "Bad"], {}, set())


# ---- keep rules -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "confirmed", "is_bad", "draw", "expected"),
    [
        ("classified", True, True, 99.0, "bad"),
        ("classified", False, True, 99.0, "unconfirmed"),
        ("classified", False, False, 99.0, "unconfirmed"),
        ("classified", True, False, 4.9, "collect"),
        ("classified", True, False, 5.0, None),
        ("no_model", False, False, 1.0, "collect"),
        ("no_model", False, False, 50.0, None),
        ("error", False, False, 50.0, None),
    ],
)
def test_keep_reason(status, confirmed, is_bad, draw, expected):
    assert rules.keep_reason(status, confirmed=confirmed, is_bad=is_bad, collect_percent=5.0, draw=draw) == expected


def test_collect_draw_is_deterministic_and_near_the_percentage():
    digests = [f"{i:064x}" for i in range(4000)]
    draws = [rules.collect_draw(d, 12345) for d in digests]
    assert draws == [rules.collect_draw(d, 12345) for d in digests]
    assert all(0 <= d < 100 for d in draws)
    share = sum(d < 5.0 for d in draws) / len(draws)
    assert 0.04 < share < 0.06
    assert rules.collect_draw(digests[0], 1) != rules.collect_draw(digests[0], 2)


def test_queue_priority_never_demotes():
    assert rules.queue_priority("bad") == 0 and rules.queue_priority("collect") == 1
    assert rules.queue_priority("collect", 0) == 0
    assert rules.queue_priority(None, 1) == 1 and rules.queue_priority(None) is None


# ---- folder triage ----------------------------------------------------------------------------------------


def seen(name: str, *, age: float = 10.0, size: int = 100, kind: str = "file") -> scan.Seen:
    mtime = NOW - int(age * 1e9)
    return scan.Seen(Path("/in") / name, size, mtime, mtime, kind)


def sort_out(*items: scan.Seen, pending=frozenset(), plot_types=None) -> scan.Triage:
    return scan.triage(items, now_ns=NOW, min_age_s=1.0, regex=REGEX,
                       plot_types=plot_types if plot_types is not None else {"RF_FDC": True, "OFF": False},
                       pending=pending)


def test_triage_sorts_ready_young_temporary_and_refused_files():
    out = sort_out(
        seen("RF_FDC-1-2.png"),
        seen("RF_FDC-1-3.png", age=0.2),  # still being written
        seen(".RF_FDC-1-4.png.tmp"), seen("RF_FDC-1-5.png.part"),  # writers' temporary names
        seen("RF_FDC-1-6.png.part", age=7200),  # abandoned
        seen("notes.txt"), seen("RF_FDC-1-7.png", kind="symlink"), seen("fifo", kind="other"),
        seen("NOPE-1-1.png"), seen("OFF-1-1.png"),
    )
    assert [s.name for s, _ in out.candidates] == ["RF_FDC-1-2.png"]
    assert out.waiting == 3
    reasons = {r.seen.name: r.reason for r in out.rejected}
    assert "unchanged for 2.0 h" in reasons["RF_FDC-1-6.png.part"]
    assert "does not match" in reasons["notes.txt"]
    assert "symbolic link" in reasons["RF_FDC-1-7.png"]
    assert "not a regular file" in reasons["fifo"]
    assert "unknown plot type 'NOPE'" in reasons["NOPE-1-1.png"] and "RF_FDC" in reasons["NOPE-1-1.png"]
    assert "disabled" in reasons["OFF-1-1.png"]


@pytest.mark.parametrize("name", ["RF..FDC-1-1.png", "RF FDC-1-1.png", "RF_FDC-1-1 .png", "RF_FDC-é-1.png",
                                  "RF_FDC-1-1.png'", 'RF_"FDC"-1-1.png', "<script>alert(1)</script>-1-1.png",
                                  "RF_FDC-1-1.gif", "RF_FDC-1.png"])
def test_hostile_or_wrong_names_are_refused_with_a_reason(name):
    out = sort_out(seen(name))
    assert not out.candidates and len(out.rejected) == 1
    assert "bad file name" in out.rejected[0].reason


def test_complete_trailer_detection(tmp_path):
    import io

    from PIL import Image as PILImage

    png, jpeg = io.BytesIO(), io.BytesIO()
    PILImage.new("RGB", (8, 8)).save(png, format="PNG")
    PILImage.new("RGB", (8, 8)).save(jpeg, format="JPEG")
    cases = {"a.png": png.getvalue(), "b.png": png.getvalue()[:-5], "c.jpg": jpeg.getvalue(),
             "d.jpeg": jpeg.getvalue()[:-1], "e.txt": png.getvalue(), "f.png": b""}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    assert {n for n in cases if scan.has_complete_trailer(tmp_path / n)} == {"a.png", "c.jpg"}
    assert not scan.has_complete_trailer(tmp_path / "missing.png")


def test_young_file_with_complete_trailer_is_ready():
    item = seen("RF_FDC-1-2.png", age=0.1)
    out = scan.triage([item], now_ns=NOW, min_age_s=1.0, regex=REGEX, plot_types={"RF_FDC": True},
                      complete=lambda path: True)
    assert len(out.candidates) == 1 and out.waiting == 0


def test_pending_files_are_not_requested_twice():
    item = seen("RF_FDC-1-2.png")
    out = sort_out(item, pending=frozenset({item.fingerprint}))
    assert out.pending == 1 and not out.candidates


def test_fingerprint_changes_with_new_bytes():
    assert seen("A-1-1.png").fingerprint != seen("A-1-1.png", size=101).fingerprint
    assert seen("A-1-1.png").fingerprint != seen("A-1-1.png", age=11).fingerprint
    assert len(seen("A-1-1.png").fingerprint) == scan.FINGERPRINT_CHARS


# ---- planning ----------------------------------------------------------------------------------------------


def ready(run: int, chunk: int, plot: str = "RF_FDC", digest: str = "a", age: float = 10.0) -> scan.ReadyFile:
    name = f"{plot}-{run}-{chunk:04d}.png"
    return scan.ReadyFile(seen(name, age=age), ImageName(plot, run, chunk, name), digest * 64)


def test_select_runs_oldest_first_and_capped():
    candidates = [(r.seen, r.name) for r in
                  [ready(5, c, age=10) for c in range(4)] + [ready(3, 1, age=50)] + [ready(9, 1, age=5)]]
    chosen = scan.select_runs(candidates, max_runs=2, max_files_per_run=3)
    assert list(chosen) == [3, 5]
    assert len(chosen[5]) == 3


def test_one_plan_per_run_number_with_key_over_names_and_digests():
    plans, deferred = scan.plan_runs({7: [ready(7, 1), ready(7, 2, plot="EC_X")], 8: [ready(8, 1)]})
    assert not deferred and [p.run for p in plans] == [7, 8]
    plan = plans[0]
    assert plan.tags["hydra/run"] == "7" and plan.tags["hydra/files"] == "2"
    assert plan.tags["hydra/chunks"] == "EC_X:2,RF_FDC:1"
    assert plan.run_key.startswith("ingest-7-")
    same, _ = scan.plan_runs({7: [ready(7, 2, plot="EC_X"), ready(7, 1)]})
    assert same[0].run_key == plan.run_key  # order does not matter
    corrected, _ = scan.plan_runs({7: [ready(7, 1, digest="b"), ready(7, 2, plot="EC_X")]})
    assert corrected[0].run_key != plan.run_key  # new bytes, new run
    refs = [scan.FileRef.decode(t) for t in plan.file_refs]
    assert [r.name for r in refs] == ["RF_FDC-7-0001.png", "EC_X-7-0002.png"]


def test_run_config_stays_far_below_mysql_text_limit():
    files = [ready(7, c, digest="c") for c in range(2000)]
    plans, deferred = scan.plan_runs({7: files})
    size = len(json.dumps({"ops": {"image": {"config": {"files": plans[0].file_refs}}}}))
    assert size <= scan.MAX_FILES_CONFIG_CHARS + 100 < 64 * 1024
    assert len(plans[0].files) + len(deferred) == 2000
    assert len(plans[0].tags["hydra/chunks"]) <= scan.TAG_LIMIT


def test_file_ref_round_trip_and_refusal():
    ref = scan.FileRef("d" * 64, "RF_FDC-1-1.png")
    assert scan.FileRef.decode(ref.encode()) == ref
    with pytest.raises(ValueError):
        scan.FileRef.decode("nodigest RF_FDC-1-1.png")


# ---- cursor ------------------------------------------------------------------------------------------------


def test_cursor_round_trip_prunes_and_stays_small():
    fingerprints = [seen(f"RF_FDC-1-{i}.png").fingerprint for i in range(scan.MAX_PENDING)]
    cursor = scan.SensorCursor().advance(present=fingerprints, requested=fingerprints)
    text = cursor.encode()
    assert len(text) < 32 * 1024
    assert scan.SensorCursor.decode(text) == cursor
    pruned = cursor.advance(present=fingerprints[:10], requested=[])
    assert pruned.pending == frozenset(fingerprints[:10])


@pytest.mark.parametrize("garbage", [None, "", "not json", "[1, 2]", '{"pending": 5}'])
def test_unreadable_cursor_starts_afresh(garbage):
    assert scan.SensorCursor.decode(garbage).pending == frozenset()


# ---- names and records ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../etc/passwd", "<script>.png", "a b'c\".png", "ünïcødé.png", "..", ".hidden"])
def test_safe_file_name_cannot_escape_or_inject(name):
    safe = safe_file_name(name)
    assert "/" not in safe and not safe.startswith(".") and re.fullmatch(r"[A-Za-z0-9._-]+", safe)


def test_db_text_accepts_undecodable_names():
    raw = b"RF_\xff\xfe-1-1.png".decode("utf-8", "surrogateescape")
    assert db_text(raw).encode("utf-8")


def test_inference_record_has_the_documented_fields():
    record = inference_record(file_name="RF_FDC-1-2.png", plot_type="RF_FDC", run=1, chunk=2,
                              received_at=datetime(2026, 1, 2, 3, 4, 5), label="Bad",
                              weights={"Good": 0.1, "Bad": 0.9}, confirmed=True, keep_reason="bad",
                              model_key="hydra-RF_FDC/3", gradcam="/g.png",
                              classified_at=datetime(2026, 1, 2, 3, 4, 9), status="classified")
    assert list(record)[: len(FIELDS)] == list(FIELDS)
    assert record["received_at"] == "2026-01-02T03:04:05Z" and record["model"] == "hydra-RF_FDC/3"
    assert inference_record(file_name="x", plot_type="p", run=None, chunk=None, received_at=None,
                            model_key="none")["model"] is None
