"""The file sensor against a real folder, database and ephemeral Dagster instance (no TensorFlow)."""

from __future__ import annotations

import json
import os
import time

import dagster as dg
import pytest
from sqlalchemy import select
from test_ingest_support import PLOT, drop, home, png_bytes, tick  # noqa: F401 - fixtures

from hydra_assets.db.models import Heartbeat, Image
from hydra_assets.definitions import defs
from hydra_assets.ingest.scan import FileRef

pytestmark = pytest.mark.usefixtures("home")


@pytest.fixture
def instance():
    return dg.DagsterInstance.ephemeral()


def files_of(request: dg.RunRequest) -> list[FileRef]:
    return [FileRef.decode(t) for t in request.run_config["ops"]["image"]["config"]["files"]]


def quarantined(db) -> dict[str, str]:
    with db.read() as s:
        return {i.file_name: i.quarantine_reason for i in s.scalars(select(Image).where(Image.status == "quarantined"))}


def test_sensor_is_running_by_default_with_a_short_interval():
    sensor = defs.resolve_sensor_def("incoming_images")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.minimum_interval_seconds < 5  # one tick per 5-s daemon loop, not one per two


def test_minimum_interval_avoids_skipping_daemon_loops():
    from hydra_assets.sensors.incoming import minimum_interval

    assert minimum_interval(5) == 3 and minimum_interval(1) == 1 and minimum_interval(30) == 29


def test_one_run_per_run_number_carrying_its_chunks(home, instance, sqlite_db):
    for chunk in (1, 2):
        drop(home.input_dir, f"{PLOT}-121264-{chunk:04d}.png", png_bytes(chunk))
    drop(home.input_dir, f"{PLOT}-121265-0001.png", png_bytes(3))
    result = tick(instance)
    assert sorted(r.partition_key for r in result.run_requests) == ["121264", "121265"]
    first = next(r for r in result.run_requests if r.partition_key == "121264")
    assert [f.name for f in files_of(first)] == [f"{PLOT}-121264-0001.png", f"{PLOT}-121264-0002.png"]
    assert first.tags["hydra/chunks"] == f"{PLOT}:1,{PLOT}:2" and first.tags["hydra/source"] == "sensor"
    (partition_request,) = result.dynamic_partitions_requests
    assert sorted(partition_request.partition_keys) == ["121264", "121265"]
    assert len(result.cursor) < 200
    # Next tick: the files are still there (no run took them) but are not requested again.
    again = tick(instance, result.cursor)
    assert not again.run_requests and "waiting for their run" in again.skip_reason.skip_message
    with sqlite_db.read() as s:
        assert "2 file(s)" in s.get(Heartbeat, "sensor").detail or "waiting" in s.get(Heartbeat, "sensor").detail


def test_existing_partitions_are_not_added_again(home, instance):
    instance.add_dynamic_partitions("run_number", ["7"])
    drop(home.input_dir, f"{PLOT}-7-0001.png", png_bytes(1))
    result = tick(instance)
    assert len(result.run_requests) == 1 and not result.dynamic_partitions_requests


def test_nothing_to_do_is_a_skip_with_a_cursor(home, instance):
    result = tick(instance)
    assert not result.run_requests and result.skip_reason.skip_message == "no new files"
    assert result.cursor


def test_half_written_file_waits_until_complete(home, instance, monkeypatch):
    monkeypatch.setenv("HYDRA_MIN_FILE_AGE_SECONDS", "2")
    data = png_bytes(1)
    path = home.input_dir / f"{PLOT}-5-0001.png"
    path.write_bytes(data[: len(data) // 2])  # a writer without a temporary name, mid-write
    result = tick(instance)
    assert not result.run_requests and "still being written" in result.skip_reason.skip_message
    path.write_bytes(data)
    stamp = time.time() - 5
    os.utime(path, (stamp, stamp))
    result = tick(instance, result.cursor)
    assert [f.digest for f in files_of(result.run_requests[0])] == [__import__("hashlib").sha256(data).hexdigest()]


def test_a_young_but_complete_image_does_not_wait_for_the_minimum_age(home, instance, monkeypatch):
    monkeypatch.setenv("HYDRA_MIN_FILE_AGE_SECONDS", "30")
    drop(home.input_dir, f"{PLOT}-5-0001.png", png_bytes(1), age=0)  # complete PNG, renamed just now
    drop(home.input_dir, f"{PLOT}-5-0002.png", png_bytes(2)[:-20], age=0)  # no IEND yet: still written
    result = tick(instance)
    assert [f.name for f in files_of(result.run_requests[0])] == [f"{PLOT}-5-0001.png"]


def test_temporary_names_are_left_alone(home, instance):
    (home.input_dir / f".{PLOT}-5-0001.png.tmp").write_bytes(b"partial")
    (home.input_dir / f"{PLOT}-5-0002.png.part").write_bytes(b"partial")
    result = tick(instance)
    assert not result.run_requests and not list(home.quarantine_dir.rglob("*.*"))


@pytest.mark.parametrize("name", [
    "bad name.png", "RF_FDC..x-1-1.png", "ünïcødé-1-1.png", "it's-1-1.png", 'say "hi"-1-1.png',
    "<script>alert(1)<script>-1-1.png", "RF_FDC-1-1.gif", "readme",
])
def test_bad_names_are_quarantined_with_reason_and_moved(home, instance, sqlite_db, name):
    drop(home.input_dir, name, png_bytes(1))
    drop(home.input_dir, f"{PLOT}-1-0001.png", png_bytes(2))  # the rest of the chunk goes on
    result = tick(instance)
    assert [f.name for f in files_of(result.run_requests[0])] == [f"{PLOT}-1-0001.png"]
    reasons = quarantined(sqlite_db)
    assert "bad file name" in reasons[name]
    assert not (home.input_dir / name).exists()
    (moved,) = [p for p in home.quarantine_dir.rglob("*") if p.is_file()]
    assert moved.parent.parent == home.quarantine_dir and "/" not in moved.name and not moved.name.startswith(".")
    assert moved.read_bytes() == png_bytes(1)


def test_unknown_plot_type_is_quarantined(home, instance, sqlite_db):
    drop(home.input_dir, "NOPE-1-0001.png", png_bytes(1))
    result = tick(instance)
    assert not result.run_requests
    assert "unknown plot type 'NOPE'" in quarantined(sqlite_db)["NOPE-1-0001.png"]


def test_undecodable_file_name_is_quarantined(home, instance, sqlite_db):
    name = os.fsdecode(b"RF_FDC-\xff-1.png")
    (home.input_dir / name).write_bytes(png_bytes(1))
    stamp = time.time() - 30
    os.utime(home.input_dir / name, (stamp, stamp))
    tick(instance)
    (reason,) = quarantined(sqlite_db).values()
    assert "bad file name" in reason


def test_symlink_is_quarantined_without_following_it(home, instance, sqlite_db, tmp_path):
    secret = tmp_path / "secret.png"
    secret.write_bytes(png_bytes(9))
    link = home.input_dir / f"{PLOT}-1-0001.png"
    link.symlink_to(secret)
    os.utime(link, (time.time() - 30,) * 2, follow_symlinks=False)
    result = tick(instance)
    assert not result.run_requests
    assert "symbolic link" in quarantined(sqlite_db)[f"{PLOT}-1-0001.png"]
    assert secret.exists()


def test_run_key_includes_content_digest(home, instance):
    name = f"{PLOT}-3-0001.png"
    drop(home.input_dir, name, png_bytes(1))
    first = tick(instance).run_requests[0]
    (home.input_dir / name).unlink()  # taken by its run
    drop(home.input_dir, name, png_bytes(1), age=20)  # the same bytes again
    same = tick(instance).run_requests[0]
    assert same.run_key == first.run_key  # Dagster will not run it twice
    (home.input_dir / name).unlink()
    drop(home.input_dir, name, png_bytes(2), age=10)  # corrected file
    corrected = tick(instance).run_requests[0]
    assert corrected.run_key != first.run_key


def test_caps_per_tick_and_per_run(home, instance, monkeypatch):
    monkeypatch.setenv("HYDRA_MAX_RUNS_PER_TICK", "2")
    monkeypatch.setenv("HYDRA_MAX_FILES_PER_RUN", "3")
    for run in (1, 2, 3):
        for chunk in range(5):
            drop(home.input_dir, f"{PLOT}-{run}-{chunk:04d}.png", png_bytes(run * 10 + chunk), age=100 - run)
    first = tick(instance)
    assert [r.partition_key for r in first.run_requests] == ["1", "2"]
    assert [len(files_of(r)) for r in first.run_requests] == [3, 3]
    second = tick(instance, first.cursor)
    assert sorted(r.partition_key for r in second.run_requests) == ["1", "2"]  # the rest of the oldest runs
    assert sum(len(files_of(r)) for r in second.run_requests) == 4
    third = tick(instance, second.cursor)
    assert [r.partition_key for r in third.run_requests] == ["3"]
    body = json.dumps(first.run_requests[0].run_config) + json.dumps(first.run_requests[0].tags)
    assert len(body) < 64 * 1024


def test_a_missing_incoming_folder_is_not_an_error(home, instance):
    home.input_dir.rmdir()
    assert not tick(instance).run_requests


def test_sensor_in_the_definitions_targets_the_chunk_job():
    sensor = defs.resolve_sensor_def("incoming_images")
    assert sensor.job_name == "ingest_chunk"
    job = defs.resolve_job_def("ingest_chunk")
    assert job.partitions_def.name == "run_number"
    assert job.executor_def.name == "in_process"
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"image", "inference", "keep"} <= keys
    check_names = {c.name for c in defs.resolve_asset_graph().asset_check_keys}
    assert {"files_accounted_for", "every_image_classified", "every_inference_decided"} <= check_names
