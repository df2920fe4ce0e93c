"""The file sensor on the incoming folder: new files → one `ingest_chunk` run per run number per tick.

All decisions live in `hydra_assets.ingest.tick.evaluate_tick` (tested without Dagster); this sensor adds
the run-number partitions the runs need and turns the plans into run requests.  Each request carries its
files as "<sha256> <name>" in the `image` op config (bounded far below the 64 KiB of a run body on MySQL
storage) and a `run_key` over names and digests: the same bytes never run twice, a corrected file does.
It also submits again the chunks whose runs Dagster has given up on (`hydra_assets.ingest.resubmit`).
It names its job, `ingest_chunk`, rather than importing it: a sensor module imports no asset or job module.
"""


import json
import time
from datetime import UTC, datetime, timedelta

import dagster as dg

from hydra_assets.ingest.resubmit import RESUBMISSION_TAG, FailedRun, Resubmission, next_key, plan_resubmissions
from hydra_assets.ingest.scan import MYSQL_TICK_CHARS, RUN_REQUEST_CHARS
from hydra_assets.ingest.tick import evaluate_tick
from hydra_assets.partitions import run_number
from hydra_assets.resources.hydra import HydraResource
from hydra_assets.resources.predictor import PredictorResource
from hydra_assets.settings import load_settings

DAEMON_LOOP_SECONDS = 5  # dagster/_daemon/sensor.py MIN_INTERVAL_LOOP_TIME: sensors are looked at every 5 s


def minimum_interval(wanted: int) -> int:
    """The sensor's `minimum_interval_seconds` for ticks every `wanted` seconds.

    The daemon looks at sensors once per 5-s loop and skips a sensor whose last tick is younger than its
    minimum interval.  Asking for exactly 5 s therefore skips every other loop (ticks alternate 5 s and
    10 s apart — measured), so at or below the loop time we ask for less and get one tick per loop.
    """
    return max(1, wanted - 2) if wanted <= DAEMON_LOOP_SECONDS + 2 else wanted - 1


def _interval() -> int:
    try:
        return minimum_interval(load_settings().sensor_interval_seconds)
    except Exception:  # a bad setting must not break loading the code location
        return minimum_interval(DAEMON_LOOP_SECONDS)


def failed_chunks(instance: dg.DagsterInstance) -> list[Resubmission]:
    """This tick's resubmissions of chunks whose runs failed for good in the last day (see ingest.resubmit)."""
    records = instance.get_run_records(
        dg.RunsFilter(job_name="ingest_chunk", statuses=[dg.DagsterRunStatus.FAILURE], tags={"hydra/source": "sensor"},
                      updated_after=datetime.now(UTC) - timedelta(days=1)),
        limit=200,
    )
    failed = []
    for record in records:
        run = record.dagster_run
        key, will_retry = run.tags.get("dagster/run_key"), run.tags.get("dagster/will_retry")
        if not key or "dagster/partition" not in run.tags:
            continue
        failed.append(FailedRun(
            run_id=run.run_id, run_key=key, partition=run.tags["dagster/partition"], tags=run.tags,
            run_config=run.run_config, ended_at=record.end_time or record.update_timestamp.timestamp(),
            will_retry=will_retry == "true" or (will_retry is None and instance.run_retries_enabled),
        ))
    if not failed:
        return []
    wanted = sorted({next_key(f.run_key)[0] for f in failed})
    existing = {r.tags.get("dagster/run_key", "") for r in instance.get_runs(
        dg.RunsFilter(tags={"dagster/run_key": wanted}))}
    return plan_resubmissions(failed, now=time.time(), existing_keys=existing)


def resubmissions_that_fit(
    again: list[Resubmission], *, cursor_chars: int, max_chars: int = MYSQL_TICK_CHARS
) -> tuple[list[Resubmission], int]:
    """The resubmissions one tick on MySQL storage can carry next to the cursor (each holds a whole run
    config), and the characters left for new files; the others come back next tick (their keys are unused)."""
    room, used = max_chars - 1_500 - cursor_chars, 0
    kept = []
    for plan in again:
        cost = RUN_REQUEST_CHARS + len(json.dumps(dict(plan.run_config), default=str)) + len(json.dumps(plan.tags))
        if used + cost > room:
            break
        kept.append(plan)
        used += cost
    return kept, max_chars - used


@dg.sensor(
    name="incoming_images",
    job_name="ingest_chunk",
    minimum_interval_seconds=_interval(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Watches HYDRA_INPUT_DIR; requests one ingest_chunk run per run number with its new files.",
)
def incoming_images(
    context: dg.SensorEvaluationContext, hydra: HydraResource, predictor: PredictorResource
) -> dg.SensorResult:
    """Plan this tick's runs; bad files are quarantined with their reason rather than failing the tick."""
    on_mysql = type(context.instance.schedule_storage).__name__.startswith("MySQL")  # ticks in 64-KiB TEXT
    again, room = failed_chunks(context.instance), None
    if on_mysql:
        again, room = resubmissions_that_fit(again, cursor_chars=len(context.cursor or ""))
    outcome = evaluate_tick(hydra.db, hydra.settings, context.cursor, max_tick_chars=room)
    for plan in again:
        context.log.warning(f"run {plan.partition}: submitting the chunk of failed run {plan.replaces} again "
                            f"({plan.tags[RESUBMISSION_TAG]})")
    if not outcome.plans and not again:
        return dg.SensorResult(skip_reason=dg.SkipReason(outcome.summary()), cursor=outcome.cursor)
    keys = sorted({str(plan.run) for plan in outcome.plans})
    new = [key for key in keys if not context.instance.has_dynamic_partition(run_number.name, key)]
    predictor.prewarm(hydra.settings)
    context.log.info(outcome.summary())
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(run_key=plan.run_key, partition_key=str(plan.run), tags=plan.tags,
                          run_config={"ops": {"image": {"config": {"files": plan.file_refs}}}})
            for plan in outcome.plans
        ] + [
            dg.RunRequest(run_key=plan.run_key, partition_key=plan.partition, tags=plan.tags,
                          run_config=dict(plan.run_config))
            for plan in again
        ],
        dynamic_partitions_requests=[run_number.build_add_request(new)] if new else [],
        cursor=outcome.cursor,
    )
