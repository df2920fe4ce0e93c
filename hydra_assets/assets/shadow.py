"""`backtest_inference`: one run's stored images classified in shadow for one backtest (its id in the config).

Partitioned by run number like the ingestion assets, but in no ingestion job: a backtest is a backfill of
this asset over the runs it covers (`hydra model backtest`, the Library's button through the
`backtest_requests` sensor), so the Dagster UI shows its runs and progress.  It writes shadow inferences
only (`hydra_assets/shadow.py`) — never inferences, keep decisions or alarms — and the last run to finish
writes the comparison report (`hydra_assets/backtest.py`).  Rerunning a partition classifies nothing again.
"""

import warnings

import dagster as dg

from hydra_assets.backtest import backtest_run
from hydra_assets.partitions import run_number
from hydra_assets.resources.hydra import HydraResource

GROUP = "backtest"


class BacktestConfig(dg.Config):
    """Which backtest this run belongs to (its candidate, active version and runs are stored with it)."""

    backtest_id: int


# Runs of one backtest launched by the daemon: each Dagster run classifies up to this many run numbers, so
# the per-run cost (a process, TensorFlow imported, both models loaded: ~1 min on 2 busy cores) is paid once
# per ten run numbers instead of once per run number; the backfill page still shows progress run by run.
RUN_NUMBERS_PER_DAGSTER_RUN = 10


with warnings.catch_warnings():  # backfill_policy is marked beta in Dagster 1.13: said once here, not per import
    warnings.simplefilter("ignore", dg.BetaWarning)
    POLICY = dg.BackfillPolicy.multi_run(max_partitions_per_run=RUN_NUMBERS_PER_DAGSTER_RUN)
    ASSET = dg.asset(partitions_def=run_number, group_name=GROUP, kinds={"python", "tensorflow"},
                     backfill_policy=POLICY)


@ASSET
def backtest_inference(context: dg.AssetExecutionContext, config: BacktestConfig,
                       hydra: HydraResource) -> dg.MaterializeResult:
    """Shadow inferences of a backtest's candidate (and of the active version where it has no live one)."""
    totals = {"images": 0, "classified": 0, "already_classified": 0, "errors": 0, "would_alarm": 0,
              "active_classified_in_shadow": 0}
    predict_ms = 0.0
    runs = []
    for key in context.partition_keys:  # one run number, or a range of them in a backfill
        counts = backtest_run(hydra.db, hydra.settings, config.backtest_id, int(key), dagster_run_id=context.run_id)
        if not counts:
            continue  # another run number of the range, outside this backtest
        runs.append(int(key))
        candidate = counts["candidate"]
        if candidate.error:
            context.log.warning(f"backtest {config.backtest_id} run {key}: {candidate.error}")
        totals["images"] += candidate.images
        totals["classified"] += candidate.classified
        totals["already_classified"] += candidate.skipped
        totals["errors"] += candidate.errors
        totals["would_alarm"] += candidate.would_alarm
        totals["active_classified_in_shadow"] += counts["active"].classified if "active" in counts else 0
        predict_ms += candidate.predict_ms
    context.log.info(f"backtest {config.backtest_id}: runs {runs}: {totals}")
    return dg.MaterializeResult(metadata={"backtest_id": config.backtest_id, "runs": dg.MetadataValue.json(runs),
                                          **totals, "predict_ms": dg.FloatMetadataValue(round(predict_ms, 1))})


BACKTEST_ASSETS = [backtest_inference]
