"""Predict: every registered image of a chunk (or of a whole run, in a backfill) classified once per model.

Images are batched per plot type through that plot type's active model.  Each classification stores all
label weights, the model version, the top label and whether it is confirmed against the version's
thresholds (read fresh, so a threshold edited on the Library page applies to the next chunk).  A plot type
without an active model is recorded as `no_model`; a model that fails to load as `error` with the reason,
and a later run or backfill retries those images.  One inference per image and model version: images that
already have one are skipped, so re-runs and backfills never duplicate.
"""

from __future__ import annotations

import re
import time
from collections import Counter, defaultdict
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from hydra_assets.db.engine import HydraDB
from hydra_assets.db.models import Image, Inference, Label, Model, PlotType, utcnow
from hydra_assets.ingest.feeder import USABLE, prepare
from hydra_assets.ingest.health import write_resolving_conflicts
from hydra_assets.ingest.predictor import BatchPrediction, Classifier, InputSizeMismatch
from hydra_assets.ingest.rules import NO_MODEL_KEY, classify_weights
from hydra_assets.settings import HydraSettings


@dataclass(frozen=True)
class ScopeImage:
    id: int
    plot_type_id: int
    plot_type: str
    run: int
    chunk: int
    digest: str
    stored_path: str


def images_in_scope(session: Session, run: int, digests: Collection[str] | None) -> list[ScopeImage]:
    """Usable images of run `run` — only those with these digests when given (a live chunk)."""
    query = (select(Image.id, Image.plot_type_id, PlotType.name, Image.run_number, Image.chunk, Image.digest,
                    Image.stored_path)
             .join(PlotType, PlotType.id == Image.plot_type_id)
             .where(Image.run_number == run, Image.status.in_(USABLE)))
    if digests is not None:
        if not digests:
            return []
        query = query.where(Image.digest.in_(list(set(digests))))
    return [ScopeImage(*row) for row in session.execute(query.order_by(Image.plot_type_id, Image.chunk, Image.id))]


@dataclass(frozen=True)
class CurrentModel:
    model_id: int
    key: str
    input_size: tuple[int, int]


def current_models(session: Session, plot_type_ids: Collection[int]) -> dict[int, CurrentModel]:
    """The active model version of each plot type (the latest activated, as `load_active_model` picks)."""
    rows = session.execute(
        select(Model.plot_type_id, Model.id, Model.mlflow_name, Model.mlflow_version, Model.input_height,
               Model.input_width)
        .where(Model.plot_type_id.in_(list(plot_type_ids)), Model.active.is_(True))
        .order_by(Model.activated_at, Model.id)
    )
    return {pid: CurrentModel(mid, f"{name}/{version}", (h, w)) for pid, mid, name, version, h, w in rows}


def gradcam_path(config: HydraSettings, image: ScopeImage, model_key: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model_key)
    return str(config.gradcam_dir / image.plot_type / str(image.run) / f"{Path(image.stored_path).stem}-{slug}.png")


@dataclass
class PredictResult:
    run: int
    images: int = 0
    classified: int = 0
    no_model: int = 0
    skipped: int = 0  # had an inference of the current model version already
    errors: dict[str, str] = field(default_factory=dict)  # plot type -> why its images could not be classified
    error_images: int = 0
    gradcams: int = 0
    models: dict[str, str] = field(default_factory=dict)  # plot type -> model key used
    chunks: Counter[tuple[int | None, int | None]] = field(default_factory=Counter)
    timings_ms: Counter[str] = field(default_factory=Counter)  # prepare, load, infer, gradcam, db
    where: set[str] = field(default_factory=set)
    duration_ms: float = 0.0


def _existing(session: Session, image_ids: list[int], key: str) -> dict[int, Inference]:
    if not image_ids:
        return {}
    rows = session.scalars(select(Inference).where(Inference.image_id.in_(image_ids), Inference.model_key == key))
    return {row.image_id: row for row in rows}


def _todo(db: HydraDB, images: list[ScopeImage], key: str) -> tuple[list[ScopeImage], int]:
    """Images still lacking a usable inference of `key` (an `error` one is retried)."""
    with db.read() as s:
        have = _existing(s, [i.id for i in images], key)
    todo = [i for i in images if i.id not in have or have[i.id].status == "error"]
    return todo, len(images) - len(todo)


def _write(
    db: HydraDB,
    images: list[ScopeImage],
    key: str,
    make: "callable",
) -> int:
    """Insert (or repair an `error` row of) one inference per image for `key`; returns how many were written."""

    def work(session: Session) -> int:
        have = _existing(session, [i.id for i in images], key)
        written = 0
        for index, image in enumerate(images):
            old = have.get(image.id)
            if old is not None and old.status != "error":
                continue  # a concurrent run got there first
            fields = make(index, image)
            if old is None:
                session.add(Inference(image_id=image.id, plot_type_id=image.plot_type_id, run_number=image.run,
                                      chunk=image.chunk, model_key=key, **fields))
            else:
                for name, value in fields.items():
                    setattr(old, name, value)
            written += 1
        session.flush()
        return written

    return write_resolving_conflicts(db, work, what=f"record inferences ({key})")


def _blank(status: str, *, model_id: int | None, error: str | None, dagster_run_id: str) -> dict:
    return dict(model_id=model_id, status=status, error=error, weights={}, top_label_id=None, top_weight=None,
                confirmed=False, is_bad=False, flagged=False, gradcam_path=None, classified_at=utcnow(),
                dagster_run_id=dagster_run_id)


def predict_run(
    db: HydraDB,
    config: HydraSettings,
    run: int,
    digests: Collection[str] | None,
    classifier: Classifier,
    *,
    dagster_run_id: str = "",
    prepared: Mapping[int, np.ndarray] | None = None,
    feed_ms: float | None = None,
) -> PredictResult:
    """Classify the images of run `run` in scope that lack an inference of their plot type's active model."""
    started = time.perf_counter()
    prepared = prepared or {}
    with db.read() as s:
        images = images_in_scope(s, run, digests)
        models = current_models(s, {i.plot_type_id for i in images})
    result = PredictResult(run=run, images=len(images))
    by_plot_type: dict[int, list[ScopeImage]] = defaultdict(list)
    for image in images:
        by_plot_type[image.plot_type_id].append(image)
        result.chunks[(image.plot_type_id, image.chunk)] += 1

    for plot_type_id, group in by_plot_type.items():
        name = group[0].plot_type
        current = models.get(plot_type_id)
        if current is None:
            todo, skipped = _todo(db, group, NO_MODEL_KEY)
            result.skipped += skipped
            result.no_model += _write(db, todo, NO_MODEL_KEY, lambda _i, _im: _blank(
                "no_model", model_id=None, error=None, dagster_run_id=dagster_run_id))
            result.models[name] = NO_MODEL_KEY
            continue
        todo, skipped = _todo(db, group, current.key)
        result.skipped += skipped
        if not todo:
            result.models[name] = current.key
            continue
        _classify_group(db, config, todo, current, classifier, result, name,
                        dagster_run_id=dagster_run_id, prepared=prepared, feed_ms=feed_ms)
    result.duration_ms = (time.perf_counter() - started) * 1000
    return result


def _prepare_batch(
    images: list[ScopeImage], size: tuple[int, int], prepared: Mapping[int, np.ndarray]
) -> tuple[list[ScopeImage], np.ndarray, list[tuple[ScopeImage, str]]]:
    ok, arrays, failed = [], [], []
    for image in images:
        array = prepared.get(image.id)
        if array is None or tuple(array.shape[:2]) != tuple(size):
            try:
                array = prepare(Path(image.stored_path), size)
            except (OSError, ValueError) as error:
                failed.append((image, f"stored image unreadable: {error}"))
                continue
        ok.append(image)
        arrays.append(array)
    batch = np.stack(arrays) if arrays else np.zeros((0, *size, 3), np.uint8)
    return ok, batch, failed


def _classify_group(
    db: HydraDB,
    config: HydraSettings,
    todo: list[ScopeImage],
    current: CurrentModel,
    classifier: Classifier,
    result: PredictResult,
    plot_type: str,
    *,
    dagster_run_id: str,
    prepared: Mapping[int, np.ndarray],
    feed_ms: float | None,
) -> None:
    from hydra_assets.ml.active import ModelLoadError, thresholds_of

    t0 = time.perf_counter()
    size = current.input_size
    ok, batch, failed = _prepare_batch(todo, size, prepared)
    result.timings_ms["prepare"] += (time.perf_counter() - t0) * 1000
    paths = [gradcam_path(config, image, current.key) for image in ok]
    prediction: BatchPrediction | None = None
    error: str | None = None
    try:
        try:
            prediction = classifier.classify(plot_type, batch, paths)
        except InputSizeMismatch as mismatch:  # activated meanwhile with another input size
            ok, batch, more_failed = _prepare_batch(ok, mismatch.size, {})
            failed += more_failed
            paths = [gradcam_path(config, image, current.key) for image in ok]
            prediction = classifier.classify(plot_type, batch, paths)
    except ModelLoadError as load_error:
        error = str(load_error)

    if error is not None:
        result.errors[plot_type] = error
        result.error_images += _write(db, todo, current.key, lambda _i, _im: _blank(
            "error", model_id=current.model_id, error=error, dagster_run_id=dagster_run_id))
        result.models[plot_type] = current.key
        return
    if failed:
        reasons = dict((im.id, why) for im, why in failed)
        result.error_images += _write(db, [im for im, _ in failed], current.key, lambda _i, im: _blank(
            "error", model_id=current.model_id, error=reasons[im.id], dagster_run_id=dagster_run_id))
    if prediction is None:  # deactivated between our query and the classification
        result.no_model += _write(db, ok, NO_MODEL_KEY, lambda _i, _im: _blank(
            "no_model", model_id=None, error=None, dagster_run_id=dagster_run_id))
        result.models[plot_type] = NO_MODEL_KEY
        return

    result.where.add(prediction.where)
    result.timings_ms["load"] += prediction.load_ms
    result.timings_ms["infer"] += prediction.infer_ms
    result.timings_ms["gradcam"] += prediction.gradcam_ms
    t_db = time.perf_counter()
    with db.read() as s:
        thresholds = thresholds_of(s, prediction.model_id)
        label_ids = dict(s.execute(select(Label.name, Label.id).join(PlotType, PlotType.id == Label.plot_type_id)
                                   .where(PlotType.name == plot_type)).all())
    bad = set(prediction.bad_labels)
    per_image_ms = (prediction.infer_ms + prediction.gradcam_ms) / max(len(ok), 1)

    def make(index: int, _image: ScopeImage) -> dict:
        judged = classify_weights(prediction.weights[index], prediction.label_names, thresholds, bad)
        return dict(
            model_id=prediction.model_id, status="classified", error=None,
            weights={k: round(v, 6) for k, v in judged.weights.items()},
            top_label_id=label_ids.get(judged.top_label), top_weight=round(judged.top_weight, 6),
            confirmed=judged.confirmed, is_bad=judged.is_bad, flagged=judged.flagged,
            gradcam_path=prediction.gradcams.get(index), classified_at=utcnow(), predict_ms=round(per_image_ms, 3),
            feed_ms=feed_ms, dagster_run_id=dagster_run_id,
        )

    result.classified += _write(db, ok, prediction.model_key, make)
    result.gradcams += len(prediction.gradcams)
    result.models[plot_type] = prediction.model_key
    result.timings_ms["db"] += (time.perf_counter() - t_db) * 1000
