"""Run quality flags, partitioned by run number: recomputed after every chunk's keep step and after labels.

The asset is thin: `hydra_assets.flags.compute` reads the run's verdicts, applies the configured rules and
replaces the run's stored flags in one transaction (idempotent; sign-offs are never touched).

Recomputing a whole run costs 1-2 s at 1,000 chunks x 80 plot types (bench/flags.py), after every chunk
job.  In a backlog that is wasted: a later chunk job of the same run number is already waiting and will
recompute it.  So the step skips when one is waiting and the stored flags are younger than
`FLAGS_MAX_AGE_SECONDS`; the last job of a backlog always computes, so the final state is always stored,
and the pages are never more than that much behind while the backlog drains.
"""

from datetime import timedelta

import dagster as dg
from sqlalchemy import func, select

from hydra_assets.assets.ingest import keep, waiting_out_database_outages
from hydra_assets.db.models import RunFlag, utcnow
from hydra_assets.flags.compute import ComputeResult, compute_run_flags
from hydra_assets.partitions import run_number
from hydra_assets.resources.hydra import HydraResource

GROUP = "flags"
FLAGS_MAX_AGE_SECONDS = 30.0
WAITING = ("QUEUED", "NOT_STARTED", "STARTING")


def later_chunk_job_waiting(instance: dg.DagsterInstance, run: int, this_run_id: str) -> bool:
    """Is another chunk job of run number `run` (the sensor tags it `hydra/run`) waiting to start?"""
    from dagster._core.storage.dagster_run import DagsterRunStatus, RunsFilter

    statuses = [DagsterRunStatus(status) for status in WAITING]
    records = instance.get_run_records(RunsFilter(tags={"hydra/run": str(run)}, statuses=statuses), limit=5)
    return any(record.dagster_run.run_id != this_run_id for record in records)


def flags_fresh(hydra: HydraResource, run: int, max_age_s: float = FLAGS_MAX_AGE_SECONDS) -> bool:
    """Were the run's flags stored less than `max_age_s` ago (no rows: never)?"""
    with hydra.db.read() as s:
        newest = s.scalar(select(func.max(RunFlag.computed_at)).where(RunFlag.run_number == run))
        s.rollback()
    return newest is not None and utcnow() - newest < timedelta(seconds=max_age_s)


@dg.asset(deps=[keep], partitions_def=run_number, group_name=GROUP, kinds={"python"})
def run_flags(context: dg.AssetExecutionContext, hydra: HydraResource) -> dg.MaterializeResult:
    """Good / Medium / Bad / Null chunk ranges of the run for every plot group and super group."""
    run = int(context.partition_key)
    with waiting_out_database_outages(context, hydra.settings):
        if later_chunk_job_waiting(context.instance, run, context.run_id) and flags_fresh(hydra, run):
            context.log.info(f"run {run}: flags left to the chunk job already waiting (stored < "
                             f"{FLAGS_MAX_AGE_SECONDS:.0f} s ago)")
            return dg.MaterializeResult(metadata={"skipped": True, "why": "a later chunk job of the run waits"})
        result: ComputeResult = compute_run_flags(hydra.db, run)
    context.log.info(f"run {run}: {result.rows} flag ranges over {result.chunks} chunks, {result.images} images")
    return dg.MaterializeResult(metadata={
        "skipped": False,
        "chunks": result.chunks,
        "images": result.images,
        "alarms": result.alarms,
        "flag_ranges": result.rows,
        "ranges_by_flag": dg.MetadataValue.json(result.flags),
        "read_ms": dg.FloatMetadataValue(round(result.read_ms, 1)),
        "rules_ms": dg.FloatMetadataValue(round(result.rules_ms, 1)),
        "write_ms": dg.FloatMetadataValue(round(result.write_ms, 1)),
    })


FLAG_ASSETS = [run_flags]
