"""Chunks whose runs failed for good are submitted again by the sensor: the rule, then the real job."""

from __future__ import annotations

import time
from types import SimpleNamespace

import dagster as dg
import pytest
from sqlalchemy import func, select
from test_ingest_support import PLOT, activate, drop, home, model_files, png_bytes, tick  # noqa: F401 - fixtures

from hydra_assets.db.models import Image, Inference, KeepDecision
from hydra_assets.definitions import defs
from hydra_assets.ingest.resubmit import (
    MAX_RESUBMISSIONS,
    RESUBMISSION_TAG,
    FailedRun,
    next_key,
    pause_before,
    plan_resubmissions,
    resubmission_number,
)

NOW = 1_000_000.0


def counts(db) -> tuple[int, int, int]:
    """Images, inferences, keep decisions."""
    with db.read() as s:
        return tuple(s.scalar(select(func.count(table.id))) for table in (Image, Inference, KeepDecision))


def failed(key="ingest-42-abc", *, ended=NOW - 3600, will_retry=False, run_id="r1") -> FailedRun:
    tags = {"hydra/run": "42", "hydra/source": "sensor", "hydra/files": "2", "hydra/chunks": "RF_FDC:1",
            "dagster/run_key": key, "dagster/retry_number": "2", "hydra/worker_pid": "123"}
    return FailedRun(run_id, key, "42", tags, {"ops": {"image": {"config": {"files": ["x a.png"]}}}}, ended, will_retry)


def test_keys_count_resubmissions():
    assert resubmission_number("ingest-42-abc") == ("ingest-42-abc", 0)
    assert resubmission_number("ingest-42-abc~2") == ("ingest-42-abc", 2)
    assert next_key("ingest-42-abc~2") == ("ingest-42-abc~3", 3)
    assert [pause_before(n) for n in (1, 2, 3)] == [60, 120, 240]


def test_a_run_given_up_on_is_submitted_again_with_its_files_and_hydra_tags():
    (plan,) = plan_resubmissions([failed()], now=NOW, existing_keys=set())
    assert plan.run_key == "ingest-42-abc~1" and plan.partition == "42" and plan.replaces == "r1"
    assert plan.run_config == {"ops": {"image": {"config": {"files": ["x a.png"]}}}}
    assert set(plan.tags) == {"hydra/run", "hydra/source", "hydra/files", "hydra/chunks", RESUBMISSION_TAG}
    assert plan.tags[RESUBMISSION_TAG].startswith("1 of 3")


@pytest.mark.parametrize("run, existing", [
    (failed(will_retry=True), set()),                         # Dagster's own retry comes first
    (failed(ended=NOW - 30), set()),                           # paused less than a minute
    (failed("ingest-42-abc~1", ended=NOW - 100), set()),      # second resubmission waits 2 min
    (failed(), {"ingest-42-abc~1"}),                          # already submitted again
    (failed(f"ingest-42-abc~{MAX_RESUBMISSIONS}"), set()),    # given up for good: the UI shows it
    (failed("backfill-42"), set()),                           # not a sensor chunk
])
def test_not_submitted_again(run, existing):
    assert plan_resubmissions([run], now=NOW, existing_keys=existing) == []


def test_a_chunk_whose_run_failed_is_completed_by_its_resubmission(home, sqlite_db, model_files, monkeypatch):
    """The real ingest_chunk job fails in Predict (after the Feeder registered the images); a later tick
    submits the chunk again and that run classifies every image once."""
    from hydra_assets.assets import ingest as ingest_assets
    from hydra_assets.sensors import incoming

    activate(sqlite_db, model_files["good"])
    for chunk in (1, 2, 3):
        drop(home.input_dir, f"{PLOT}-42-{chunk:04d}.png", png_bytes(chunk))
    instance = dg.DagsterInstance.ephemeral()  # run retries off: a failed run is given up on at once
    job = defs.resolve_job_def("ingest_chunk")

    def execute(request: dg.RunRequest) -> dg.ExecuteInProcessResult:
        instance.add_dynamic_partitions("run_number", [request.partition_key])
        return job.execute_in_process(run_config=request.run_config, instance=instance,
                                      partition_key=request.partition_key, raise_on_error=False,
                                      tags={**request.tags, "dagster/run_key": request.run_key})

    first = tick(instance)
    (request,) = first.run_requests
    original = ingest_assets.predict_run

    def broken(*_args, **_kwargs):
        raise RuntimeError("predictor crashed")

    monkeypatch.setattr(ingest_assets, "predict_run", broken)
    assert not execute(request).success
    monkeypatch.setattr(ingest_assets, "predict_run", original)
    assert counts(sqlite_db) == (3, 0, 0)

    soon = tick(instance, first.cursor)
    assert not soon.run_requests  # a minute has not passed yet
    monkeypatch.setattr(incoming, "time", SimpleNamespace(time=lambda: time.time() + 61))
    later = tick(instance, soon.cursor)
    (again,) = later.run_requests
    assert again.run_key == f"{request.run_key}~1" and again.run_config == request.run_config
    assert execute(again).success
    assert counts(sqlite_db) == (3, 3, 3)
    monkeypatch.setattr(incoming, "time", SimpleNamespace(time=lambda: time.time() + 3600))
    assert not tick(instance, later.cursor).run_requests  # succeeded: nothing more to do

