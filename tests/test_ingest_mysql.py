"""Dagster storage on MariaDB (deploy/dagster-mysql.yaml): the real sensor daemon tick and a chunk job.

Fails (not skips) under CI when MariaDB at 127.0.0.1:3306 is unreachable (the `mysql_server` fixture).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy import func, select
from test_ingest_support import PLOT, SIZE, activate, drop, model_files, png_bytes, resources  # noqa: F401

from hydra_assets import catalog
from hydra_assets.db.engine import HydraDB
from hydra_assets.db.migrate import upgrade
from hydra_assets.db.models import Image, Inference, KeepDecision
from tests.conftest import fresh_mysql_database

pytestmark = [pytest.mark.mysql, pytest.mark.slow]
DEPLOY_YAML = Path(__file__).resolve().parents[1] / "deploy" / "dagster-mysql.yaml"


@pytest.fixture
def mysql_instance(mysql_server, tmp_path, monkeypatch):
    """A Dagster instance whose dagster.yaml is deploy/dagster-mysql.yaml, on a fresh MariaDB database."""
    url, drop_database = fresh_mysql_database(mysql_server)
    name = url.rsplit("/", 1)[1].split("?")[0]
    for key, value in {"HOST": "127.0.0.1", "USER": "root", "PASSWORD": "", "DB": name}.items():
        monkeypatch.setenv(f"HYDRA_DAGSTER_MYSQL_{key}", value)
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    shutil.copyfile(DEPLOY_YAML, dagster_home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    yield instance
    instance.dispose()
    drop_database()


@pytest.fixture
def mysql_home(hydra_home, mysql_server, monkeypatch):
    """The Hydra database on MariaDB too, with plot type RF_FDC."""
    url, drop_database = fresh_mysql_database(mysql_server)
    monkeypatch.setenv("HYDRA_DB_URL", url)
    monkeypatch.setenv("HYDRA_PREDICTOR", "inprocess")
    hydra_home.ensure_folders()
    upgrade(url)
    db = HydraDB(url)
    db.write(lambda s: catalog.add_plot_type(s, PLOT, "Good,Bad", "Bad", collect_percent=0.0, input_size=SIZE))
    yield db
    db.dispose()
    drop_database()


def test_sensor_daemon_tick_and_chunk_job_on_mysql_storage(mysql_instance, mysql_home, hydra_home, model_files):
    from dagster._core.storage.dagster_run import DagsterRunStatus, RunsFilter
    from dagster._core.test_utils import create_test_daemon_workspace_context
    from dagster._core.workspace.load_target import ModuleTarget
    from dagster._daemon.sensor import execute_sensor_iteration

    from hydra_assets.assets.challenger import CHALLENGER_ASSETS
    from hydra_assets.assets.flags import FLAG_ASSETS
    from hydra_assets.assets.ingest import INGEST_ASSETS
    from hydra_assets.assets.reference import REFERENCE_ASSETS
    from hydra_assets.jobs.ingest import ingest_chunk_job
    from hydra_assets.sensors.incoming import incoming_images

    assert type(mysql_instance.run_storage).__name__ == "MySQLRunStorage"
    activate(mysql_home, model_files["good"])
    # Two runs; the first carries 150 files, a run body far from 64 KiB but well past a few KiB.
    for chunk in range(150):
        drop(hydra_home.input_dir, f"{PLOT}-121264-{chunk:04d}.png", png_bytes(chunk, size=(8, 8)))
    drop(hydra_home.input_dir, f"{PLOT}-121265-0001.png", png_bytes(999))

    # The sensor evaluated by the daemon's own code path, in a code server loading hydra_assets.definitions.
    target = ModuleTarget(module_name="hydra_assets.definitions", attribute=None,
                          working_directory=str(Path(__file__).resolve().parents[1]), location_name="hydra")
    with create_test_daemon_workspace_context(target, mysql_instance) as workspace:
        list(execute_sensor_iteration(workspace, logging.getLogger("test"), None, None))
    (state,) = [s for s in mysql_instance.all_instigator_state() if s.name == "incoming_images"]
    (last_tick,) = mysql_instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=1)
    assert last_tick.status.value == "SUCCESS", last_tick.error
    assert len(last_tick.run_ids) == 2 and last_tick.cursor and len(last_tick.cursor) < 64 * 1024
    assert set(mysql_instance.get_dynamic_partitions("run_number")) == {"121264", "121265"}
    queued = mysql_instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.QUEUED]))  # queued coordinator
    assert sorted(r.tags["dagster/partition"] for r in queued) == ["121264", "121265"]

    # Execute the queued runs' job in this process, with their stored config and tags.
    defs = dg.Definitions(assets=[*INGEST_ASSETS, *REFERENCE_ASSETS, *FLAG_ASSETS, *CHALLENGER_ASSETS],
                          jobs=[ingest_chunk_job()], sensors=[incoming_images],
                          resources=resources("inprocess"))
    job = defs.resolve_job_def("ingest_chunk")
    for run in queued:
        result = job.execute_in_process(run_config=run.run_config, partition_key=run.tags["dagster/partition"],
                                        tags={k: v for k, v in run.tags.items() if not k.startswith("dagster/")},
                                        instance=mysql_instance)
        assert result.success
    with mysql_home.read() as s:
        assert s.scalar(select(func.count(Image.id))) == 151
        assert s.scalar(select(func.count(Inference.id))) == 151
        assert s.scalar(select(func.count(KeepDecision.id))) == 151
    records = mysql_instance.get_run_records(RunsFilter(statuses=[DagsterRunStatus.SUCCESS]))
    assert len(records) == 2
    materialized = mysql_instance.get_materialized_partitions(dg.AssetKey("inference"))
    assert materialized == {"121264", "121265"}


# ---- bad input: run bodies and ticks near MySQL's 64-KiB TEXT columns -----------------------------------

LONG_PLOT = "RF_" + "X" * 125  # a plot type name as long as the catalog takes (128 characters)
NAME_MAX = 255  # bytes of a file name on Linux file systems


def longest_name(run: int, chunk: int) -> str:
    """The longest file name the default naming pattern and the file system allow: the chunk number
    zero-padded until the name is 255 bytes."""
    head = f"{LONG_PLOT}-{run}-"
    return f"{head}{chunk:0{NAME_MAX - len(head) - len('.png')}d}.png"


def drop_renamed(folder: Path, name: str, data: bytes) -> None:
    """Written under a short temporary name, then renamed (a 255-byte name leaves no room for a suffix)."""
    import os
    import time

    partial = folder / f".partial-{abs(hash(name))}"
    partial.write_bytes(data)
    stamp = time.time() - 30
    os.utime(partial, (stamp, stamp))
    os.replace(partial, folder / name)


def _ticks(instance: dg.DagsterInstance) -> list:
    (state,) = [s for s in instance.all_instigator_state() if s.name == "incoming_images"]
    return list(instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=100))


def sensor_ticks_on(instance: dg.DagsterInstance, iterations: int, *, pause_s: float, until=None) -> list:  # type: ignore[no-untyped-def]
    """Up to `iterations` ticks of the file sensor evaluated by the daemon's own code path (fewer once
    `until(newest tick)` holds); the stored ticks, newest first."""
    import time

    from dagster._core.test_utils import create_test_daemon_workspace_context
    from dagster._core.workspace.load_target import ModuleTarget
    from dagster._daemon.sensor import execute_sensor_iteration

    target = ModuleTarget(module_name="hydra_assets.definitions", attribute=None,
                          working_directory=str(Path(__file__).resolve().parents[1]), location_name="hydra")
    with create_test_daemon_workspace_context(target, instance) as workspace:
        for i in range(iterations):
            if i:
                time.sleep(pause_s)  # the sensor's minimum interval
            list(execute_sensor_iteration(workspace, logging.getLogger("test"), None, None))
            if until is not None and until(_ticks(instance)[0]):
                break
    return _ticks(instance)


def stored_sizes(instance: dg.DagsterInstance) -> tuple[int, int]:
    """The largest run body and the largest tick body, in bytes, as MariaDB stores them."""
    from sqlalchemy import text

    with instance.run_storage.connect() as connection:
        run_body = connection.execute(text("SELECT MAX(LENGTH(run_body)) FROM runs")).scalar() or 0
    with instance.schedule_storage.connect() as connection:
        tick_body = connection.execute(text("SELECT MAX(LENGTH(tick_body)) FROM job_ticks")).scalar() or 0
    return int(run_body), int(tick_body)


@pytest.mark.timeout(900)
def test_files_with_the_longest_names_in_one_run_number_are_split_into_runs_that_fit(
        mysql_instance, mysql_home, hydra_home, model_files, monkeypatch):
    from dagster._core.storage.dagster_run import DagsterRunStatus, RunsFilter

    from hydra_assets.assets.challenger import CHALLENGER_ASSETS
    from hydra_assets.assets.flags import FLAG_ASSETS
    from hydra_assets.assets.ingest import INGEST_ASSETS
    from hydra_assets.assets.reference import REFERENCE_ASSETS
    from hydra_assets.jobs.ingest import ingest_chunk_job
    from hydra_assets.sensors.incoming import incoming_images

    files = 300
    monkeypatch.setenv("HYDRA_MAX_FILES_PER_RUN", "100000")  # only the file-list budget splits the run
    monkeypatch.setenv("HYDRA_SENSOR_INTERVAL_SECONDS", "1")
    mysql_home.write(lambda s: catalog.add_plot_type(s, LONG_PLOT, "Good,Bad", "Bad", collect_percent=0.0,
                                                     input_size=SIZE))
    activate(mysql_home, model_files["good"], plot_type=LONG_PLOT)
    names = [longest_name(121300, chunk) for chunk in range(files)]
    assert {len(n.encode()) for n in names} == {NAME_MAX}
    for chunk, name in enumerate(names):
        drop_renamed(hydra_home.input_dir, name, png_bytes(10_000 + chunk, size=(8, 8)))

    ticks = sensor_ticks_on(mysql_instance, 6, pause_s=1.5)
    assert ticks and all(t.status.value in ("SUCCESS", "SKIPPED") for t in ticks), [t.error for t in ticks]
    queued = mysql_instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.QUEUED]))
    carried = [n for r in queued for n in r.run_config["ops"]["image"]["config"]["files"]]
    run_body, tick_body = stored_sizes(mysql_instance)
    print(f"\n{files} files with 255-byte names in one run number: {len(queued)} runs of "
          f"{sorted(len(r.run_config['ops']['image']['config']['files']) for r in queued)} files; largest run body "
          f"{run_body} B, largest tick {tick_body} B (TEXT: 65,535 B)")
    assert len(queued) >= 3, "one run for all: the file list was not split"
    assert len(carried) == len(set(carried)) and files - 150 < len(carried) <= files
    assert run_body < 65_535 and tick_body < 65_535

    defs = dg.Definitions(assets=[*INGEST_ASSETS, *REFERENCE_ASSETS, *FLAG_ASSETS, *CHALLENGER_ASSETS],
                          jobs=[ingest_chunk_job()], sensors=[incoming_images], resources=resources("inprocess"))
    job = defs.resolve_job_def("ingest_chunk")
    # While full runs of a run number wait, the sensor holds its partial rest (tick.py): run what is queued,
    # then tick again, until every file is in.
    done: set[str] = set()
    for _ in range(4):
        for run in [r for r in queued if r.run_id not in done]:
            result = job.execute_in_process(run_config=run.run_config, partition_key=run.tags["dagster/partition"],
                                            tags={k: v for k, v in run.tags.items() if not k.startswith("dagster/")},
                                            instance=mysql_instance)
            assert result.success
            done.add(run.run_id)
        if not any(p.is_file() for p in hydra_home.input_dir.iterdir()):
            break
        sensor_ticks_on(mysql_instance, 2, pause_s=1.5)
        queued = mysql_instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.QUEUED]))
    run_body, tick_body = stored_sizes(mysql_instance)
    assert run_body < 65_535 and tick_body < 65_535
    with mysql_home.read() as s:
        assert s.scalar(select(func.count(Image.id))) == files
        assert s.scalar(select(func.count(func.distinct(Image.file_name)))) == files
        assert s.scalar(select(func.count(Inference.id))) == files
        assert s.scalar(select(func.count(KeepDecision.id))) == files
    assert not any(p.is_file() for p in hydra_home.input_dir.iterdir())


@pytest.mark.timeout(900)
def test_ticks_with_many_run_keys_up_to_a_full_cursor_are_stored(mysql_instance, mysql_home, hydra_home,
                                                                  monkeypatch):
    from dagster._core.storage.dagster_run import RunsFilter

    from hydra_assets.ingest.scan import MAX_PENDING

    runs, per_run = 300, 10  # MAX_PENDING files: requested and not yet taken, the cursor at its largest
    assert runs * per_run == MAX_PENDING
    monkeypatch.setenv("HYDRA_MAX_RUNS_PER_TICK", str(runs))
    monkeypatch.setenv("HYDRA_SENSOR_INTERVAL_SECONDS", "1")
    for i in range(runs * per_run + 100):  # 100 more than the cursor takes: the backlog is then full
        drop(hydra_home.input_dir, f"{PLOT}-{130000 + i % runs}-{i // runs + 1:04d}.png", png_bytes(i, size=(8, 8)))

    ticks = sensor_ticks_on(mysql_instance, 25, pause_s=1.5,  # nothing runs the queued runs meanwhile
                            until=lambda tick: "backlog full" in (tick.skip_reason or ""))
    run_body, tick_body = stored_sizes(mysql_instance)
    requested = [t for t in ticks if t.run_ids]
    print(f"\n{len(ticks)} ticks, {len(requested)} with runs: {sorted(len(t.run_ids) for t in requested)} run keys; "
          f"largest cursor {max(len(t.cursor or '') for t in ticks)} B; largest stored tick {tick_body} B, "
          f"run body {run_body} B (TEXT: 65,535 B)")
    assert all(t.status.value in ("SUCCESS", "SKIPPED") for t in ticks), [t.error for t in ticks]
    assert tick_body < 65_535
    assert max(len(t.run_ids) for t in requested) >= 20
    queued = mysql_instance.get_runs(RunsFilter(tags={"hydra/source": "sensor"}))
    carried = [n for r in queued for n in r.run_config["ops"]["image"]["config"]["files"]]
    assert len(carried) == len(set(carried)) == MAX_PENDING  # requested once each, up to the backlog cap
    assert max(len(t.cursor or "") for t in ticks) > 10 * MAX_PENDING  # the cursor reached its largest
    assert ticks[0].skip_reason and "backlog full" in ticks[0].skip_reason  # newest tick: waiting for runs


@pytest.mark.parametrize("name_chars, runs, files_per_run, pending", [
    (255, 3, 400, 0),      # the longest names, one full run config and more
    (25, 300, 10, 0),      # hundreds of run keys in one tick
    (25, 25, 2000, 2900),  # a burst with the cursor nearly full
])
def test_a_fitted_tick_serialises_below_mysql_text(name_chars, runs, files_per_run, pending):
    """fit_tick's cost model against what Dagster really stores for a tick: the cursor, and every run request
    with its run config (the sensor's own construction), run keys and run ids twice."""
    import uuid

    from dagster._core.scheduler.instigation import InstigatorType, TickData, TickStatus
    from dagster._serdes import serialize_value

    from hydra_assets.ingest.scan import FINGERPRINT_CHARS, ReadyFile, RunPlan, Seen, SensorCursor, fit_tick
    from hydra_assets.naming import ImageName

    def ready(run: int, chunk: int) -> ReadyFile:
        head = f"{PLOT}-{run}-"
        name = f"{head}{chunk:0{max(4, name_chars - len(head) - 4)}d}.png"
        seen = Seen(Path(name), size=1, mtime_ns=chunk, ctime_ns=chunk, kind="file")
        return ReadyFile(seen, ImageName(PLOT, run, chunk, name), f"{chunk:064x}")

    plans = [RunPlan(121000 + r, tuple(ready(121000 + r, c) for c in range(files_per_run))) for r in range(runs)]
    old = SensorCursor(frozenset(f"{i:0{FINGERPRINT_CHARS}x}" for i in range(pending)))
    fitted, deferred = fit_tick(plans, cursor_chars=FINGERPRINT_CHARS * pending + 40)
    assert fitted and deferred
    assert sum(len(p.files) for p in fitted) + len(deferred) == runs * files_per_run
    requests = [dg.RunRequest(run_key=p.run_key, partition_key=str(p.run), tags=p.tags,
                              run_config={"ops": {"image": {"config": {"files": p.file_refs}}}}) for p in fitted]
    cursor = old.advance(present=old.pending, requested=[f.seen.fingerprint for p in fitted for f in p.files])
    ids = [str(uuid.uuid4()) for _ in requests]
    tick = TickData(instigator_origin_id="0" * 40, instigator_name="incoming_images",
                    instigator_type=InstigatorType.SENSOR, status=TickStatus.SUCCESS, timestamp=1.0, run_ids=ids,
                    run_keys=[r.run_key for r in requests], cursor=cursor.encode(), selector_id="0" * 40,
                    log_key=["0" * 40] * 3, run_requests=requests, reserved_run_ids=ids)
    size = len(serialize_value(tick).encode())
    print(f"\n{len(fitted)} runs, {sum(len(p.files) for p in fitted)} files, tick {size} B")
    assert 0.6 * 65_535 < size < 65_535  # fits, and does not waste most of the room either


def test_resubmitted_chunks_share_the_tick_with_the_cursor_and_new_files():
    """Each resubmission carries a whole run config (up to 40 kB): a tick on MySQL takes those that fit next
    to the cursor, leaves the rest for the next tick, and gives new files only what is left."""
    from hydra_assets.ingest.resubmit import Resubmission
    from hydra_assets.ingest.scan import MYSQL_TICK_CHARS
    from hydra_assets.sensors.incoming import resubmissions_that_fit

    def failed(i: int) -> Resubmission:
        files = [f"{i:064x} {PLOT}-121000-{c:04d}.png" for c in range(400)]  # ~40 kB of file list
        return Resubmission(run_key=f"ingest-121000-{i}~1", partition="121000", tags={"hydra/resubmission": "1"},
                            run_config={"ops": {"image": {"config": {"files": files}}}}, replaces=str(i))

    again = [failed(i) for i in range(3)]
    kept, room = resubmissions_that_fit(again, cursor_chars=0)
    assert len(kept) == 1 and 0 < room < MYSQL_TICK_CHARS - 30_000
    kept, room = resubmissions_that_fit(again, cursor_chars=30_020)  # a full cursor: none this tick
    assert kept == [] and room == MYSQL_TICK_CHARS
    assert resubmissions_that_fit([], cursor_chars=100) == ([], MYSQL_TICK_CHARS)
