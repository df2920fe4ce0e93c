"""`reference_score`: each image of the chunk scored against its plot type's reference, beside the classifier.

Partitioned by run number like the ingestion assets and in the same chunk job, after `inference` and before
`keep` (the Keeper keeps and alarms on images unlike their reference).  Idempotent: one `ReferenceScore`
per (image, reference version), so a rerun writes nothing and a backfill after a reference change scores
every image of the run against the new version.  Plot types without a model are scored too; an image that
cannot be scored (no reference yet, another size, unreadable) gets a "missing" row with the reason and the
chunk goes on (docs/reference.md).  The Feeder hands each image's grid over (`ingest/reference_grids.py`),
so no image is decoded here in the normal path.
"""

import time

import dagster as dg

from hydra_assets.assets.ingest import _digests, _record_stage, chunk_files, waiting_out_database_outages
from hydra_assets.partitions import run_number
from hydra_assets.references import ScoreResult, score_run_in
from hydra_assets.resources.hydra import HydraResource

GROUP = "ingest"


@dg.asset(
    deps=[dg.AssetKey("inference")],
    partitions_def=run_number,
    group_name=GROUP,
    kinds={"python", "numpy"},
)
def reference_score(context: dg.AssetExecutionContext, hydra: HydraResource) -> dg.MaterializeResult:
    """Reference score: how far each image of the chunk is from its plot type's reference (missing: why)."""
    run = int(context.partition_key)
    refs = chunk_files(context)
    started = time.time()
    with waiting_out_database_outages(context, hydra.settings):
        result: ScoreResult = score_run_in(hydra.db, run, _digests(refs), config=hydra.settings)
        _record_stage(hydra.db, "reference", run, result.chunks, started, result.duration_ms, context.run_id,
                      f"run {run}: {result.scored} scored, {result.flagged} unlike their reference, "
                      f"{result.missing} missing")
    for reason, images in result.reasons.most_common(5):
        context.log.warning(f"reference score missing for {images} image(s): {reason}")
    return dg.MaterializeResult(metadata={
        "scored": result.scored,
        "unlike_reference": result.flagged,
        "missing": result.missing,
        "already_scored": result.already,
        "grids_from_feeder": result.handed_over,
        "missing_reasons": dg.MetadataValue.json(dict(result.reasons.most_common(20))),
        "reference_ms": dg.FloatMetadataValue(round(result.duration_ms, 1)),
    })


REFERENCE_ASSETS = [reference_score]
