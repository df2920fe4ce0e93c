"""Fault 2 — the run worker is SIGKILLed mid-chunk (after the Feeder committed its images but before it
removed the incoming files; after Predict committed inferences; after the Keeper copied the kept files but
before its decisions committed).  Run retries are on: the run is marked failed (what run monitoring does
for a dead worker) and re-executed as the auto-retry daemon does, from failure or all steps.  The chunk
completes with no duplicate image, inference, keep decision, alarm or kept copy, and nothing quarantined.
"""

from __future__ import annotations

import dagster as dg
import pytest
from dagster._core.storage.dagster_run import DagsterRunStatus
from fault_support import counts, dagster_home, drop_many, ingest_job, killed_worker
from sqlalchemy import func, select
from test_ingest_support import activate, home, model_files, tick  # noqa: F401

from hydra_assets.db.models import Alarm
from hydra_assets.partitions import run_number

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("home")]
FILES = 40


@pytest.mark.parametrize("kill_at, strategy", [
    ("feeder_registered", "ALL_STEPS"),
    ("predict_written", "FROM_FAILURE"),
    ("keeper_before_commit", "FROM_FAILURE"),
])
def test_run_worker_killed_mid_chunk_then_retried(kill_at, strategy, home, sqlite_db, model_files, tmp_path,
                                                   monkeypatch):
    activate(sqlite_db, model_files["bad"])  # every image confirmed Bad: kept, alarmed, GradCAM
    dhome = dagster_home(tmp_path / "dagster")
    monkeypatch.setenv("DAGSTER_HOME", str(dhome))
    monkeypatch.setenv("HYDRA_PREDICTOR", "inprocess")
    drop_many(home.input_dir, FILES, runs=1)
    with dg.DagsterInstance.from_config(str(dhome)) as instance:
        (request,) = tick(instance).run_requests
        instance.add_dynamic_partitions(run_number.name, [request.partition_key])

    assert killed_worker(dhome, request.run_config, request.tags, request.partition_key, kill_at) == -9
    with dg.DagsterInstance.from_config(str(dhome)) as instance:
        (dead,) = instance.get_runs()
        assert dead.status == DagsterRunStatus.STARTED  # a dead worker leaves its run "started"
        instance.report_run_failed(dead)  # run monitoring: the worker is gone
        options = (dg.ReexecutionOptions.from_failure(dead.run_id, instance) if strategy == "FROM_FAILURE"
                   else dg.ReexecutionOptions(parent_run_id=dead.run_id))
        with dg.execute_job(ingest_job(), instance, reexecution_options=options,
                            tags={**dead.tags, "dagster/retry_strategy": strategy,
                                  "dagster/retry_number": "1"}) as retry:
            assert retry.success

    c = counts(sqlite_db, home.input_dir)
    print(f"\n{kill_at}/{strategy}: {c.as_dict()} duplicates={c.duplicates}")
    assert c.files_left == 0
    assert c.quarantined == 0, "a file the crashed run had registered was quarantined on retry"
    assert c.registered == c.distinct_files == FILES
    assert c.inferences == c.images_with_inference == FILES
    assert c.keep_decisions == c.inferences_with_decision == FILES
    with sqlite_db.read() as s:
        assert s.scalar(select(func.count(Alarm.id))) == s.scalar(select(func.count(func.distinct(Alarm.inference_id)))) == FILES
    kept = [p for p in home.kept_dir.rglob("*") if p.is_file()]
    assert len(kept) == FILES and not [p for p in kept if p.name.endswith(".partial")]
