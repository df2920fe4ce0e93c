"""Live ingestion assets, partitioned by run number: image (Feeder) → inference (Predict) → keep (Keeper);
the reference score (`assets/reference.py`) runs between Predict and the Keeper.

A sensor run carries its chunk's files in the `image` op config; the two later steps read that list from
the run config, so all three work on exactly the chunk.  A run without files — a backfill selected in the
UI or `dagster asset materialize --partition N` — works on every image of the run number, which after a
model activation classifies them all with the new version (one inference per image and version).
"""


import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import dagster as dg
from pydantic import Field
from sqlalchemy.orm import configure_mappers

from hydra_assets.db.engine import HydraDB, is_outage, outage_waits
from hydra_assets.ingest.checks import decisions_missing, inference_coverage
from hydra_assets.ingest.feeder import FeedResult, feed_files
from hydra_assets.ingest.health import beat, write_resolving_conflicts
from hydra_assets.ingest.keeper import KeepResult, keep_run
from hydra_assets.ingest.predict import PredictResult, predict_run
from hydra_assets.ingest.scan import FileRef
from hydra_assets.partitions import run_number
from hydra_assets.resources.hydra import HydraResource
from hydra_assets.resources.predictor import PredictorResource
from hydra_assets.scores.suggestions import Suggestion
from hydra_assets.settings import HydraSettings
from hydra_assets.suggestions import retraining_suggestions

GROUP = "ingest"

# SQLAlchemy configures its mappers at the first query: 0.13 s, paid by every run process.  Done here, it is
# paid once by the warm launcher's worker that imports the definitions and forks the runs (dagster.yaml).
configure_mappers()


class ChunkFiles(dg.Config):
    """The files of a live chunk, as the sensor saw them ("<sha256> <name>"); empty: the whole run number."""

    files: list[str] = Field(default_factory=list, description="'<sha256> <file name>' per file")


def chunk_files(context: dg.AssetExecutionContext) -> list[FileRef] | None:
    """The files this run carries (from the `image` op config), or None for a whole-partition run."""
    config = context.run.run_config or {}
    files = (((config.get("ops") or {}).get("image") or {}).get("config") or {}).get("files") or []
    return [FileRef.decode(text) for text in files] if files else None


def _digests(refs: list[FileRef] | None) -> list[str] | None:
    return None if refs is None else [r.digest for r in refs]


@contextmanager
def waiting_out_database_outages(context: dg.AssetExecutionContext, config: HydraSettings) -> Iterator[None]:
    """A database that is down (a server restart) makes Dagster run the step again after a wait, for up to
    `db_outage_seconds`, instead of failing the chunk; every step is idempotent, so nothing is written twice."""
    try:
        yield
    except Exception as error:
        if not is_outage(error):
            raise
        # never longer than two sensor intervals between tries: back within that of the server's return
        waits = outage_waits(config.db_outage_seconds, first_s=1.0, longest_s=2.0 * config.sensor_interval_seconds)
        attempt = context.retry_number
        if attempt >= len(waits):
            raise
        first_line = (str(error).splitlines() or [""])[0][:200]
        context.log.warning(f"database unavailable ({type(error).__name__}: {first_line}); "
                            f"running the step again in {waits[attempt]:.0f} s "
                            f"(retry {attempt + 1} of {len(waits)}, {config.db_outage_seconds:.0f} s in all)")
        raise dg.RetryRequested(max_retries=len(waits), seconds_to_wait=waits[attempt]) from error


def _record_stage(db: HydraDB, stage: str, run: int, chunks: Mapping, started: float, duration_ms: float,
                  dagster_run_id: str, detail: str, status: str = "ok") -> None:
    """The stage's `stage_timings` rows (`health.record_timings`' rows: one per plot type and chunk, the
    stage's time shared by image count) in one INSERT, and its heartbeat: a run of 200 one-image chunks
    wrote 200 rows one flush at a time per step (bench/ingest.py --parts profile)."""
    from datetime import UTC, datetime

    from sqlalchemy import insert

    from hydra_assets.db.models import StageTiming, utcnow

    started_at = datetime.fromtimestamp(started, UTC).replace(tzinfo=None)
    finished = utcnow()
    chunks = dict(chunks) or {(None, None): 0}
    total = sum(chunks.values()) or 1
    rows = [dict(stage=stage, plot_type_id=plot_type_id, run_number=run, chunk=chunk, image_count=count,
                 started_at=started_at, finished_at=finished, status=status, dagster_run_id=dagster_run_id,
                 duration_ms=round(duration_ms * count / total if len(chunks) > 1 else duration_ms, 3))
            for (plot_type_id, chunk), count in chunks.items()]

    def work(session) -> None:  # type: ignore[no-untyped-def]
        session.execute(insert(StageTiming), rows)
        beat(session, stage, detail)

    write_resolving_conflicts(db, work, what=f"{stage} timings")


@dg.asset(
    partitions_def=run_number,
    group_name=GROUP,
    kinds={"python", "pillow"},
    check_specs=[dg.AssetCheckSpec("files_accounted_for", asset="image",
                                   description="Every file of the chunk was registered, quarantined or deferred.")],
)
def image(context: dg.AssetExecutionContext, config: ChunkFiles, hydra: HydraResource) -> dg.MaterializeResult:
    """Feeder: the chunk's files verified and registered as images (bad files quarantined with a reason)."""
    run = int(context.partition_key)
    refs = [FileRef.decode(text) for text in config.files]
    started = time.time()
    with waiting_out_database_outages(context, hydra.settings):
        result: FeedResult = feed_files(hydra.db, hydra.settings, run, refs, dagster_run_id=context.run_id)
        _record_stage(hydra.db, "feeder", run, result.chunks, started, result.duration_ms, context.run_id,
                      f"run {run}: {len(result.registered)} registered, {len(result.quarantined)} quarantined")
    for name, reason in result.quarantined:
        context.log.warning(f"quarantined {name!r}: {reason}")
    return dg.MaterializeResult(
        metadata={
            "files_requested": result.requested,
            "registered": len(result.registered),
            "quarantined": len(result.quarantined),
            "duplicates": result.duplicates,
            "already_registered": result.already,
            "changed_since_sensor": len(result.changed),
            "feeder_ms": dg.FloatMetadataValue(round(result.duration_ms, 1)),
            **{f"feeder_{k}_ms": dg.FloatMetadataValue(round(v, 1)) for k, v in result.timings_ms.items()},
            "quarantine_reasons": dg.MetadataValue.json(dict(result.quarantined[:50])),
        },
        check_results=[dg.AssetCheckResult(
            check_name="files_accounted_for",
            passed=not result.unaccounted,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"unaccounted": dg.MetadataValue.json(result.unaccounted[:50])},
        )],
    )


@dg.asset(
    deps=[image],
    partitions_def=run_number,
    group_name=GROUP,
    kinds={"python", "keras"},
    check_specs=[dg.AssetCheckSpec("every_image_classified", asset="inference",
                                   description="Inferences equal registered images: one per image for its plot "
                                               "type's current model (or 'no model'), none failed.")],
)
def inference(context: dg.AssetExecutionContext, hydra: HydraResource,
              predictor: PredictorResource) -> dg.MaterializeResult:
    """Predict: each registered image classified once by its plot type's active model (GradCAM when Bad)."""
    run = int(context.partition_key)
    refs = chunk_files(context)
    started = time.time()
    with waiting_out_database_outages(context, hydra.settings):
        classifier = predictor.classifier(hydra.db, hydra.settings, log=context.log)
        result: PredictResult = predict_run(hydra.db, hydra.settings, run, _digests(refs), classifier,
                                            dagster_run_id=context.run_id)
        status = "error" if result.errors else "ok"
        _record_stage(hydra.db, "predict", run, result.chunks, started, result.duration_ms, context.run_id,
                      f"run {run}: {result.classified} classified, {result.no_model} without model, "
                      f"{result.error_images} failed", status=status)
        for plot_type, message in result.errors.items():
            context.log.error(f"{plot_type}: {message}")
        with hydra.db.read() as s:
            coverage = inference_coverage(s, run, _digests(refs))
    return dg.MaterializeResult(
        metadata={
            "images": result.images,
            "classified": result.classified,
            "no_model": result.no_model,
            "already_classified": result.skipped,
            "failed": result.error_images,
            "gradcams": result.gradcams,
            "novel": result.novel,
            "models": dg.MetadataValue.json(result.models),
            "where": ", ".join(sorted(result.where)) or "-",
            **{f"{k}_ms": dg.FloatMetadataValue(round(v, 1)) for k, v in result.timings_ms.items()},
            "predict_ms": dg.FloatMetadataValue(round(result.duration_ms, 1)),
        },
        check_results=[dg.AssetCheckResult(
            check_name="every_image_classified",
            passed=coverage.images == coverage.covered and coverage.errors == 0,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"registered_images": coverage.images, "with_inference": coverage.covered,
                      "failed": coverage.errors, "errors": dg.MetadataValue.json(result.errors)},
        )],
    )


MODEL_IN_ITS_DEPTH = "model_in_its_depth"


def model_in_its_depth(run: int, suggestions: list[Suggestion]) -> dg.AssetCheckResult:
    """WARN with the retraining suggestions of the run (none: passed)."""
    return dg.AssetCheckResult(
        check_name=MODEL_IN_ITS_DEPTH, passed=not suggestions, severity=dg.AssetCheckSeverity.WARN,
        description="; ".join(s.message for s in suggestions) or f"run {run}: every model within its validation",
        metadata={"suggestions": dg.MetadataValue.json([
            {"plot_type": s.plot_type, "run": s.run, "model": s.model_key, "kind": s.kind, "images": s.images,
             "share": round(s.share, 4), "expected": round(s.expected, 4), "to_label": s.to_label,
             "labeler": f"/labeler?plot_type={s.plot_type}&run={s.run}&reason={s.kind}"} for s in suggestions])},
    )


@dg.asset(
    deps=[inference, dg.AssetKey("reference_score")],  # assets/reference.py: kept and alarmed when unlike it
    partitions_def=run_number,
    group_name=GROUP,
    kinds={"python"},
    check_specs=[dg.AssetCheckSpec("every_inference_decided", asset="keep",
                                   description="Each inference of the chunk has its keep decision."),
                 dg.AssetCheckSpec(MODEL_IN_ITS_DEPTH, asset="keep",
                                   description="The run's share of images unlike the training data (or left "
                                               "unconfirmed) is not well above what the model's validation "
                                               "predicts; otherwise: label some and retrain.")],
)
def keep(context: dg.AssetExecutionContext, hydra: HydraResource) -> dg.MaterializeResult:
    """Keeper: keep decisions, Labeler queue, Run page rows and alarms for the chunk's new inferences."""
    run = int(context.partition_key)
    refs = chunk_files(context)
    started = time.time()
    config = hydra.settings
    with waiting_out_database_outages(context, hydra.settings):
        result: KeepResult = keep_run(hydra.db, config.kept_dir, run, _digests(refs), seed=config.seed,
                                      live=refs is not None, dagster_run_id=context.run_id)
        _record_stage(hydra.db, "keeper", run, result.chunks, started, result.duration_ms, context.run_id,
                      f"run {run}: {result.decided} decided, {sum(result.kept.values())} kept, {result.alarms} alarms")
        with hydra.db.read() as s:
            missing = decisions_missing(s, run, _digests(refs))
            suggestions = retraining_suggestions(s, run=run)
    return dg.MaterializeResult(
        metadata={
            "decided": result.decided,
            "kept": dg.MetadataValue.json(dict(result.kept)),
            "alarms": result.alarms,
            "run_page_updated": ", ".join(result.run_time) or "-",
            "keeper_ms": dg.FloatMetadataValue(round(result.duration_ms, 1)),
        },
        check_results=[dg.AssetCheckResult(check_name="every_inference_decided", passed=missing == 0,
                                           severity=dg.AssetCheckSeverity.ERROR, metadata={"undecided": missing}),
                       model_in_its_depth(run, suggestions)],
    )


INGEST_ASSETS = [image, inference, keep]
