"""Run quality flags, partitioned by run number: recomputed after every chunk's keep step and after labels.

The asset is thin: `hydra_assets.flags.compute` reads the run's verdicts, applies the configured rules and
replaces the run's stored flags in one transaction (idempotent; sign-offs are never touched).
"""

import dagster as dg

from hydra_assets.assets.ingest import keep, waiting_out_database_outages
from hydra_assets.flags.compute import ComputeResult, compute_run_flags
from hydra_assets.partitions import run_number
from hydra_assets.resources.hydra import HydraResource

GROUP = "flags"


@dg.asset(deps=[keep], partitions_def=run_number, group_name=GROUP, kinds={"python"})
def run_flags(context: dg.AssetExecutionContext, hydra: HydraResource) -> dg.MaterializeResult:
    """Good / Medium / Bad / Null chunk ranges of the run for every plot group and super group."""
    run = int(context.partition_key)
    with waiting_out_database_outages(context, hydra.settings):
        result: ComputeResult = compute_run_flags(hydra.db, run)
    context.log.info(f"run {run}: {result.rows} flag ranges over {result.chunks} chunks, {result.images} images")
    return dg.MaterializeResult(metadata={
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
