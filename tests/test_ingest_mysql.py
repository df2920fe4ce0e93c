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
