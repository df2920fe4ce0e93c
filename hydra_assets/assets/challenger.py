"""`challenger_inference`: the chunk's images classified in shadow by their plot types' challengers.

Partitioned by run number and in the chunk job, after `inference` (Predict) but never before `keep`: the
Keeper's dependencies stay Predict and the reference score, and this step's low priority makes the
in-process executor run it last, so alarms never wait for it.  It writes shadow inferences only
(`hydra_assets/challenger.py`, `hydra_assets/shadow.py`), never inferences, keep decisions or alarms; a
plot type without a challenger costs one query, and a challenger that cannot classify leaves `error` rows
and a warning, never a failed run.  The forward pass runs where Predict's does: in the warm predictor
service when it is up, so the run imports no TensorFlow.
"""

from typing import Any

import dagster as dg

from hydra_assets.assets.ingest import _digests, chunk_files, waiting_out_database_outages
from hydra_assets.challenger import ChallengerPass, challenger_chunk
from hydra_assets.db.engine import HydraDB
from hydra_assets.partitions import run_number
from hydra_assets.resources.hydra import HydraResource
from hydra_assets.resources.predictor import PredictorResource
from hydra_assets.settings import HydraSettings
from hydra_assets.shadow import Scorer, local_scorer

GROUP = "ingest"
LAST = {"dagster/priority": "-10"}  # after keep and the run's flags when steps run one at a time


@dg.asset(
    deps=[dg.AssetKey("inference")],
    partitions_def=run_number,
    group_name=GROUP,
    kinds={"python", "keras"},
    op_tags=LAST,
)
def challenger_inference(context: dg.AssetExecutionContext, hydra: HydraResource,
                         predictor: PredictorResource) -> dg.MaterializeResult:
    """Challenger in shadow: the chunk's images classified by each plot type's challenger (never alarming)."""
    run = int(context.partition_key)

    def scorer(db: HydraDB, config: HydraSettings, model_id: int) -> Scorer:
        """Where Predict classifies: the warm service (no TensorFlow in this run), else this process."""
        classifier: Any = predictor.classifier(db, config, log=context.log)
        return getattr(classifier, "shadow_scorer", local_scorer)(db, config, model_id)

    with waiting_out_database_outages(context, hydra.settings):
        result: ChallengerPass = challenger_chunk(hydra.db, hydra.settings, run, _digests(chunk_files(context)),
                                                  dagster_run_id=context.run_id, scorer=scorer)
    for plot_type, why in result.errors.items():
        context.log.warning(f"challenger {result.challengers.get(plot_type)} of {plot_type} could not classify: {why}")
    return dg.MaterializeResult(metadata={
        "challengers": dg.MetadataValue.json(result.challengers),
        "classified": result.classified,
        "already_classified": sum(c.skipped for c in result.counts.values()),
        "errors": sum(c.errors for c in result.counts.values()),
        "would_alarm": sum(c.would_alarm for c in result.counts.values()),
        "predict_ms": dg.FloatMetadataValue(round(float(sum(c.predict_ms for c in result.counts.values())), 1)),
        "challenger_ms": dg.FloatMetadataValue(round(float(result.duration_ms), 1)),
    })


CHALLENGER_ASSETS = [challenger_inference]
