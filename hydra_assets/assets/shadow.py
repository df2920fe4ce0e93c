"""`backtest_inference`: one run's stored images classified in shadow for one backtest (its id in the config).

Partitioned by run number like the ingestion assets, but in no ingestion job: a backtest is a backfill of
this asset over the runs it covers (`hydra model backtest`, the Library's button through the
`backtest_requests` sensor), so the Dagster UI shows its runs and progress.  It writes shadow inferences
only (`hydra_assets/shadow.py`) — never inferences, keep decisions or alarms — and the last run to finish
writes the comparison report (`hydra_assets/backtest.py`).  Rerunning a partition classifies nothing again.
"""

import dagster as dg

from hydra_assets.backtest import backtest_run
from hydra_assets.partitions import run_number
from hydra_assets.resources.hydra import HydraResource

GROUP = "backtest"


class BacktestConfig(dg.Config):
    """Which backtest this run belongs to (its candidate, active version and runs are stored with it)."""

    backtest_id: int


@dg.asset(partitions_def=run_number, group_name=GROUP, kinds={"python", "tensorflow"})
def backtest_inference(context: dg.AssetExecutionContext, config: BacktestConfig,
                       hydra: HydraResource) -> dg.MaterializeResult:
    """Shadow inferences of a backtest's candidate (and of the active version where it has no live one)."""
    run = int(context.partition_key)
    counts = backtest_run(hydra.db, hydra.settings, config.backtest_id, run, dagster_run_id=context.run_id)
    candidate = counts["candidate"]
    if candidate.error:
        context.log.warning(f"backtest {config.backtest_id} run {run}: {candidate.error}")
    metadata: dict[str, dg.RawMetadataValue] = {
        "backtest_id": config.backtest_id,
        "images": candidate.images,
        "classified": candidate.classified,
        "already_classified": candidate.skipped,
        "errors": candidate.errors,
        "would_alarm": candidate.would_alarm,
        "predict_ms": dg.FloatMetadataValue(round(candidate.predict_ms, 1)),
    }
    if "active" in counts:
        metadata["active_classified_in_shadow"] = counts["active"].classified
    return dg.MaterializeResult(metadata=metadata)


BACKTEST_ASSETS = [backtest_inference]
