"""Sensor → image → inference → keep on a real folder and database, with tiny Keras models (SQLite)."""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

import pytest
from sqlalchemy import func, select
from test_ingest_support import (  # noqa: F401 - fixtures
    PLOT,
    activate,
    backfill,
    checks,
    count,
    drop,
    home,
    ingest_all,
    instance,
    metadata,
    model_files,
    png_bytes,
    run_request,
    tick,
)

from hydra_assets.db.models import (
    Alarm,
    Heartbeat,
    Image,
    Inference,
    KeepDecision,
    PlotType,
    RunTime,
    StageTiming,
)
from hydra_assets.ingest import checks as ingest_checks
from hydra_assets.ingest.feeder import feed_files
from hydra_assets.ingest.records import log_records, run_records
from hydra_assets.ingest.scan import FileRef
from hydra_assets.rules import collect_draw

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("home")]


def images(db, **where) -> list[Image]:
    with db.read() as s:
        query = select(Image)
        for key, value in where.items():
            query = query.where(getattr(Image, key) == value)
        return list(s.scalars(query.order_by(Image.id)))


def png_header_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A tiny PNG whose header claims a huge image (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")


def test_a_chunk_is_registered_classified_kept_and_shown(home, instance, sqlite_db, model_files):
    model = activate(sqlite_db, model_files["good"])
    for chunk in (1, 2, 3):
        drop(home.input_dir, f"{PLOT}-121264-{chunk:04d}.png", png_bytes(chunk))
    result, (run,) = ingest_all(instance)
    assert run.success
    assert not list(home.input_dir.iterdir())  # every file taken
    registered = images(sqlite_db, status="registered")
    assert len(registered) == 3 and all(Path(i.stored_path).is_file() for i in registered)
    assert all(Path(i.stored_path).is_relative_to(home.images_dir) for i in registered)
    assert {i.width for i in registered} == {48}
    with sqlite_db.read() as s:
        inferences = list(s.scalars(select(Inference)))
        assert len(inferences) == 3
        first = inferences[0]
        assert first.model_key == model.key and first.status == "classified"
        assert first.weights == pytest.approx({"Good": 0.9, "Bad": 0.1}, abs=1e-4)
        assert first.confirmed and not first.is_bad and not first.flagged and first.gradcam_path is None
        assert first.dagster_run_id == run.run_id
        decisions = list(s.scalars(select(KeepDecision)))
        assert len(decisions) == 3 and not any(d.keep for d in decisions)  # collect 0 %
        run_time = s.get(RunTime, registered[0].plot_type_id)
        assert (run_time.image_id, run_time.chunk) == (registered[-1].id, 3)
        stages = {t.stage for t in s.scalars(select(StageTiming).where(StageTiming.dagster_run_id == run.run_id))}
        assert stages == {"feeder", "predict", "keeper"}
        assert {h.stage for h in s.scalars(select(Heartbeat))} == {"sensor", "feeder", "predict", "keeper"}
        records = run_records(s, 121264)
    assert checks(run) == {"files_accounted_for": True, "every_image_classified": True,
                           "every_inference_decided": True, "model_in_its_depth": True}
    assert metadata(run, "image")["registered"] == 3 and metadata(run, "inference")["classified"] == 3
    assert [r["chunk"] for r in records] == [1, 2, 3]
    assert records[0]["label"] == "Good" and records[0]["keep_reason"] is None and records[0]["model"] == model.key


def test_confirmed_bad_gets_gradcam_alarm_kept_copy_and_queue(home, instance, sqlite_db, model_files):
    activate(sqlite_db, model_files["bad"])
    drop(home.input_dir, f"{PLOT}-5-0001.png", png_bytes(1))
    ingest_all(instance)
    with sqlite_db.read() as s:
        inference = s.scalar(select(Inference))
        assert inference.is_bad and inference.confirmed and inference.flagged
        assert inference.gradcam_path and Path(inference.gradcam_path).is_file()
        assert Path(inference.gradcam_path).is_relative_to(home.gradcam_dir)
        decision = s.scalar(select(KeepDecision))
        assert (decision.keep, decision.reason) == (True, "bad") and Path(decision.kept_path).is_file()
        assert Path(decision.kept_path).is_relative_to(home.kept_dir)
        assert s.scalar(select(Image)).queue_priority == 0
        alarm = s.scalar(select(Alarm))
        assert alarm.inference_id == inference.id and alarm.kind == "bad"
        assert alarm.message == f"{PLOT} run 5 chunk 1: Bad, weight 0.95 ≥ threshold 0.50"  # each fact once
        (logged,) = log_records(s, inference.classified_at.replace(year=2000))
    assert logged["keep_reason"] == "bad" and logged["gradcam"] == inference.gradcam_path


def test_unconfirmed_is_queued_and_logged_without_alarm(home, instance, sqlite_db, model_files):
    activate(sqlite_db, model_files["unsure"], thresholds={"Good": 0.8, "Bad": 0.8})
    drop(home.input_dir, f"{PLOT}-5-0001.png", png_bytes(1))
    ingest_all(instance)
    with sqlite_db.read() as s:
        inference = s.scalar(select(Inference))
        assert inference.top_label.name == "Good" and not inference.confirmed and inference.flagged
        assert s.scalar(select(KeepDecision)).reason == "unconfirmed"
        assert s.scalar(select(Image)).queue_priority == 0
        assert s.scalar(select(func.count(Alarm.id))) == 0


def test_collect_percentage_is_deterministic_per_image(home, instance, sqlite_db, model_files):
    sqlite_db.write(lambda s: setattr(s.scalar(select(PlotType)), "collect_percent", 50.0))
    activate(sqlite_db, model_files["good"])
    for chunk in range(12):
        drop(home.input_dir, f"{PLOT}-9-{chunk:04d}.png", png_bytes(100 + chunk))
    ingest_all(instance)
    expected = {i.id for i in images(sqlite_db) if collect_draw(i.digest, home.seed) < 50.0}
    with sqlite_db.read() as s:
        kept = {d.image_id for d in s.scalars(select(KeepDecision).where(KeepDecision.keep.is_(True)))}
        assert {d.reason for d in s.scalars(select(KeepDecision).where(KeepDecision.keep.is_(True)))} <= {"collect"}
        assert {i.id for i in s.scalars(select(Image).where(Image.queue_priority == 1))} == kept
    assert kept == expected and 0 < len(kept) < 12
    activate(sqlite_db, model_files["good"])  # a new version: the backfill draws the same images
    backfill(instance, 9)
    with sqlite_db.read() as s:
        rows = s.execute(select(KeepDecision.image_id, Inference.model_key).join(Inference)
                         .where(KeepDecision.keep.is_(True))).all()
    by_model: dict[str, set[int]] = {}
    for image_id, key in rows:
        by_model.setdefault(key, set()).add(image_id)
    assert len(by_model) == 2 and all(ids == expected for ids in by_model.values())


def test_plot_type_without_model_is_recorded_as_no_model(home, instance, sqlite_db):
    drop(home.input_dir, f"{PLOT}-4-0001.png", png_bytes(1))
    _, (run,) = ingest_all(instance)
    assert run.success and checks(run)["every_image_classified"]
    with sqlite_db.read() as s:
        inference = s.scalar(select(Inference))
        assert (inference.status, inference.model_key, inference.weights) == ("no_model", "none", {})
        assert s.scalar(select(RunTime)).inference_id == inference.id  # still on the Run page
        (record,) = run_records(s, 4)
    assert record["status"] == "no_model" and record["model"] is None and record["label"] is None


def test_bad_files_are_quarantined_and_the_rest_of_the_chunk_processed(home, instance, sqlite_db, model_files,
                                                                        monkeypatch):
    monkeypatch.setenv("HYDRA_MAX_IMAGE_PIXELS", "1000000")
    activate(sqlite_db, model_files["good"])
    good = png_bytes(1)
    bad = {
        f"{PLOT}-6-0001.png": b"",  # zero bytes
        f"{PLOT}-6-0002.png": good[: len(good) // 2],  # truncated
        f"{PLOT}-6-0003.png": b"this is not an image at all",  # not an image
        f"{PLOT}-6-0004.jpg": good,  # PNG bytes under a .jpg name still decode: accepted
        f"{PLOT}-6-0005.png": png_header_bomb(),  # decompression bomb (Pillow's own guard)
        f"{PLOT}-6-0007.png": png_header_bomb(2000, 2000),  # above Hydra's pixel limit
    }
    for name, data in bad.items():
        drop(home.input_dir, name, data)
    drop(home.input_dir, f"{PLOT}-6-0006.png", png_bytes(2))
    _, (run,) = ingest_all(instance)
    assert run.success and checks(run)["files_accounted_for"]
    reasons = {i.file_name: i.quarantine_reason for i in images(sqlite_db, status="quarantined")}
    assert "empty file" in reasons[f"{PLOT}-6-0001.png"]
    assert "not a readable image" in reasons[f"{PLOT}-6-0002.png"]
    assert "not a readable image" in reasons[f"{PLOT}-6-0003.png"]
    assert "decompression bomb" in reasons[f"{PLOT}-6-0005.png"]
    assert "exceeds the limit of 1000000" in reasons[f"{PLOT}-6-0007.png"]
    assert {i.file_name for i in images(sqlite_db, status="registered")} == {f"{PLOT}-6-0004.jpg", f"{PLOT}-6-0006.png"}
    assert count(sqlite_db, Inference) == 2
    moved = [p for p in home.quarantine_dir.rglob("*") if p.is_file()]
    assert len(moved) == 5 and not list(home.input_dir.iterdir())
    with sqlite_db.read() as s:
        q = s.scalar(select(Image).where(Image.file_name == f"{PLOT}-6-0002.png"))
        assert (q.run_number, q.chunk, q.plot_type_id) == (6, 2, images(sqlite_db, status="registered")[0].plot_type_id)
        assert Path(q.stored_path).read_bytes() == good[: len(good) // 2]


def test_same_file_dropped_twice_is_one_image(home, instance, sqlite_db, model_files):
    activate(sqlite_db, model_files["good"])
    name = f"{PLOT}-7-0001.png"
    drop(home.input_dir, name, png_bytes(1))
    result, _ = ingest_all(instance)
    drop(home.input_dir, name, png_bytes(1))
    again, runs = ingest_all(instance, result.cursor)
    assert not runs
    assert len(images(sqlite_db, status="registered")) == 1 and count(sqlite_db, Inference) == 1
    (duplicate,) = images(sqlite_db, status="quarantined")
    assert "duplicate" in duplicate.quarantine_reason and duplicate.plot_type_id is None
    assert not list(home.input_dir.iterdir())


def test_feeder_quarantines_a_duplicate_a_concurrent_run_registered(home, sqlite_db):
    data = png_bytes(1)
    ref = FileRef(hashlib.sha256(data).hexdigest(), f"{PLOT}-7-0001.png")
    drop(home.input_dir, ref.name, data)
    assert len(feed_files(sqlite_db, home, 7, [ref]).registered) == 1
    drop(home.input_dir, ref.name, data)  # a second request for the same bytes, racing the first
    second = feed_files(sqlite_db, home, 7, [ref])
    assert not second.registered and second.duplicates == 1
    again = feed_files(sqlite_db, home, 7, [ref])  # the request replayed: file gone, image there
    assert again.already == 1 and not again.unaccounted


@pytest.mark.parametrize("where", ["sensor", "feeder"])
def test_file_left_by_a_run_that_died_after_registering_is_not_a_duplicate(home, instance, sqlite_db, where):
    from hydra_assets.db.models import PlotType as PT
    from hydra_assets.ingest.quarantine import landed_at

    data = png_bytes(1)
    path = drop(home.input_dir, f"{PLOT}-7-0001.png", data)
    digest = hashlib.sha256(data).hexdigest()
    result = tick(instance) if where == "feeder" else None

    def registered_then_died(s):  # the Feeder's transaction committed, the process died before the unlink
        plot_type_id = s.scalar(select(PT.id))
        s.add(Image(plot_type_id=plot_type_id, run_number=7, chunk=1, digest=digest, file_name=path.name,
                    stored_path=str(path), received_at=landed_at(path.lstat()), status="registered"))
    sqlite_db.write(registered_then_died)
    if where == "sensor":
        assert not tick(instance).run_requests
    else:
        fed = feed_files(sqlite_db, home, 7, [FileRef(digest, path.name)])
        assert fed.already == 1 and not fed.duplicates and result is not None
    assert not path.exists() and not images(sqlite_db, status="quarantined")


def test_same_name_with_new_bytes_is_a_new_image(home, instance, sqlite_db, model_files):
    activate(sqlite_db, model_files["good"])
    name = f"{PLOT}-8-0001.png"
    drop(home.input_dir, name, png_bytes(1))
    result, _ = ingest_all(instance)
    drop(home.input_dir, name, png_bytes(2))
    _, runs = ingest_all(instance, result.cursor)
    assert len(runs) == 1
    first, second = images(sqlite_db, status="registered")
    assert first.file_name == second.file_name and first.digest != second.digest
    assert first.stored_path != second.stored_path
    with sqlite_db.read() as s:
        assert s.scalar(select(RunTime)).image_id == second.id
    assert count(sqlite_db, Inference) == 2


def test_file_changed_after_the_sensor_saw_it_is_left_for_a_new_request(home, instance, sqlite_db, model_files):
    activate(sqlite_db, model_files["good"])
    name = f"{PLOT}-10-0001.png"
    drop(home.input_dir, name, png_bytes(1))
    result = tick(instance)
    drop(home.input_dir, name, png_bytes(2), age=5)  # rewritten before its run started
    run = run_request(instance, result.run_requests[0])
    assert metadata(run, "image")["changed_since_sensor"] == 1 and checks(run)["files_accounted_for"]
    assert not images(sqlite_db) and (home.input_dir / name).exists()
    _, (second,) = ingest_all(instance, result.cursor)
    assert images(sqlite_db)[0].digest == hashlib.sha256(png_bytes(2)).hexdigest()


def test_a_file_deleted_before_its_run_fails_the_check(home, instance, sqlite_db):
    drop(home.input_dir, f"{PLOT}-11-0001.png", png_bytes(1))
    result = tick(instance)
    (home.input_dir / f"{PLOT}-11-0001.png").unlink()
    run = run_request(instance, result.run_requests[0])
    assert run.success and checks(run)["files_accounted_for"] is False


def test_reruns_and_backfills_never_duplicate_and_new_models_reclassify(home, instance, sqlite_db, model_files):
    first_model = activate(sqlite_db, model_files["good"])
    for chunk in (1, 2):
        drop(home.input_dir, f"{PLOT}-12-{chunk:04d}.png", png_bytes(chunk))
    result = tick(instance)
    (request,) = result.run_requests
    run_request(instance, request)
    run_request(instance, request)  # the same run again (re-executed from the UI)
    backfill(instance, 12)  # whole partition, nothing new
    assert count(sqlite_db, Image) == 2 and count(sqlite_db, Inference) == 2 and count(sqlite_db, KeepDecision) == 2
    new_model = activate(sqlite_db, model_files["bad"])
    run = backfill(instance, 12)
    assert metadata(run, "inference")["classified"] == 2 and checks(run)["every_image_classified"]
    backfill(instance, 12)
    with sqlite_db.read() as s:
        keys = sorted(s.scalars(select(Inference.model_key)))
        assert keys == sorted([first_model.key] * 2 + [new_model.key] * 2)
        assert ingest_checks.duplicate_inferences(s, 12) == 0 and ingest_checks.duplicate_decisions(s, 12) == 0
        assert s.scalar(select(func.count(KeepDecision.id))) == 4
        assert s.scalar(select(func.count(Alarm.id))) == 0  # a backfill does not wake the shift crew
        latest = s.scalar(select(RunTime))
        assert s.get(Inference, latest.inference_id).model_key == new_model.key
        assert {r["model"] for r in run_records(s, 12)} == {new_model.key}


def test_backfill_of_an_old_run_does_not_hide_the_live_image(home, instance, sqlite_db, model_files):
    activate(sqlite_db, model_files["good"])
    drop(home.input_dir, f"{PLOT}-20-0001.png", png_bytes(1))
    drop(home.input_dir, f"{PLOT}-21-0001.png", png_bytes(2))
    ingest_all(instance)
    live = images(sqlite_db, run_number=21)[0]
    activate(sqlite_db, model_files["unsure"])
    backfill(instance, 20)
    with sqlite_db.read() as s:
        assert s.scalar(select(RunTime)).image_id == live.id


def test_a_model_that_fails_to_load_is_recorded_and_retried(home, instance, sqlite_db, model_files):
    from hydra_assets.ml.active import register_local_model

    register_local_model(sqlite_db, PLOT, model_files["corrupt"], ["Good", "Bad"], input_size=(32, 32))
    drop(home.input_dir, f"{PLOT}-13-0001.png", png_bytes(1))
    drop(home.input_dir, f"{PLOT}-13-0002.png", png_bytes(2))
    _, (run,) = ingest_all(instance)
    assert run.success
    assert checks(run)["every_image_classified"] is False  # the gate a user sees in the UI
    assert checks(run)["every_inference_decided"]
    with sqlite_db.read() as s:
        errors = list(s.scalars(select(Inference)))
        assert {e.status for e in errors} == {"error"} and len(errors) == 2
        assert "corrupt.keras" in errors[0].error
        assert "corrupt.keras" in s.get(Heartbeat, "predict").detail or errors[0].error
    assert len(images(sqlite_db, status="registered")) == 2  # nothing lost
    fixed = activate(sqlite_db, model_files["good"])
    retry = backfill(instance, 13)
    assert checks(retry)["every_image_classified"]
    with sqlite_db.read() as s:
        assert sorted(s.scalars(select(Inference.model_key).where(Inference.status == "classified"))) == [fixed.key] * 2


def test_other_plot_types_still_classified_when_one_model_fails(home, instance, sqlite_db, model_files):
    from hydra_assets import catalog
    from hydra_assets.ml.active import register_local_model

    sqlite_db.write(lambda s: catalog.add_plot_type(s, "EC_X", "Good,Bad", "Bad", collect_percent=0.0,
                                                     input_size=(32, 32)))
    register_local_model(sqlite_db, "EC_X", model_files["corrupt"], ["Good", "Bad"], input_size=(32, 32))
    activate(sqlite_db, model_files["good"])
    drop(home.input_dir, "EC_X-14-0001.png", png_bytes(1))
    drop(home.input_dir, f"{PLOT}-14-0001.png", png_bytes(2))
    _, (run,) = ingest_all(instance)
    with sqlite_db.read() as s:
        statuses = dict(s.execute(select(PlotType.name, Inference.status).join(Inference,
                                  Inference.plot_type_id == PlotType.id)).all())
    assert statuses == {"EC_X": "error", PLOT: "classified"}
