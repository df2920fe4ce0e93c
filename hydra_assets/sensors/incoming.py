"""The file sensor on the incoming folder: new files → one `ingest_chunk` run per run number per tick.

All decisions live in `hydra_assets.ingest.tick.evaluate_tick` (tested without Dagster); this sensor adds
the run-number partitions the runs need and turns the plans into run requests.  Each request carries its
files as "<sha256> <name>" in the `image` op config (bounded far below the 64 KiB of a run body on MySQL
storage) and a `run_key` over names and digests: the same bytes never run twice, a corrected file does.
"""


import dagster as dg

from hydra_assets.assets.ingest import PredictorResource
from hydra_assets.ingest.tick import evaluate_tick
from hydra_assets.partitions import run_number
from hydra_assets.resources.hydra import HydraResource


def _interval() -> int:
    try:
        from hydra_assets.settings import load_settings

        return load_settings().sensor_interval_seconds
    except Exception:  # noqa: BLE001 - a bad setting must not break loading the code location
        return 5


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
    outcome = evaluate_tick(hydra.db, hydra.settings, context.cursor)
    if not outcome.plans:
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
        ],
        dynamic_partitions_requests=[run_number.build_add_request(new)] if new else [],
        cursor=outcome.cursor,
    )
