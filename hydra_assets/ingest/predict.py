"""Predict: every registered image of a chunk (or of a whole run, in a backfill) classified once per model.

Images are batched per plot type through that plot type's active model.  Each classification stores all
label weights, the model version, the top label, the novelty score with the version's limit (when the
version has a novelty reference) and whether it is confirmed: against the version's thresholds (read
fresh, so a threshold edited on the Library page applies to the next chunk) and not novel.  A plot type
without an active model is recorded as `no_model`; a model that fails to load as `error` with the reason,
and a later run or backfill retries those images.  One inference per image and model version: images that
already have one are skipped, so re-runs and backfills never duplicate.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter, defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from hydra_assets.db.engine import HydraDB
from hydra_assets.db.models import Image, Inference, Label, Model, PlotType, utcnow
from hydra_assets.ingest.classifier import BatchPrediction, Classifier, InputSizeMismatch
from hydra_assets.ingest.feeder import USABLE
from hydra_assets.ingest.health import write_resolving_conflicts
from hydra_assets.ingest.model_inputs import discard_inputs, prepare, take_inputs
from hydra_assets.rules import NO_MODEL_KEY, classify_weights, is_novel
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


def _finite(score: float | None) -> float | None:
    """A score the database can hold: an infinite one (no usable embedding) is stored as a large number."""
    if score is None or math.isfinite(score):
        return None if score is None else round(score, 6)
    return 1e9


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
    novel: int = 0  # classified images unlike their model's training data (not confirmed for that reason)
    models: dict[str, str] = field(default_factory=dict)  # plot type -> model key used
    chunks: Counter[tuple[int | None, int | None]] = field(default_factory=Counter)
    timings_ms: Counter[str] = field(default_factory=Counter)  # prepare, load, infer, gradcam, db
    where: set[str] = field(default_factory=set)
    duration_ms: float = 0.0


@dataclass
class _Row:
    """An inference to write: for `image` and model version `key`, counted under `outcome`."""

    image: ScopeImage
    key: str
    fields: dict[str, Any]
    outcome: str  # classified | no_model | error


def _statuses(session: Session, image_ids: list[int]) -> dict[tuple[int, str], str]:
    """(image id, model key) -> status of the inferences these images already have."""
    if not image_ids:
        return {}
    rows = session.execute(select(Inference.image_id, Inference.model_key, Inference.status)
                           .where(Inference.image_id.in_(image_ids)))
    return {(image_id, key): status for image_id, key, status in rows}


def _write_rows(db: HydraDB, rows: list[_Row]) -> Counter[str]:
    """Insert (or repair an `error` row of) one inference per image and model version, in one transaction:
    the new rows in one INSERT (executemany), not an ORM object each."""

    def work(session: Session) -> Counter[str]:
        ids = sorted({row.image.id for row in rows})
        existing = {(image_id, key): (inference_id, status) for inference_id, image_id, key, status in session.execute(
            select(Inference.id, Inference.image_id, Inference.model_key, Inference.status)
            .where(Inference.image_id.in_(ids)))}
        written: Counter[str] = Counter()
        new: list[dict[str, Any]] = []
        for row in rows:
            old = existing.get((row.image.id, row.key))
            if old is not None and old[1] != "error":
                continue  # a concurrent run got there first
            if old is None:
                image = row.image
                new.append({"predict_ms": None, "feed_ms": None, **row.fields, "image_id": image.id,
                            "plot_type_id": image.plot_type_id, "run_number": image.run, "chunk": image.chunk,
                            "model_key": row.key})
                existing[(row.image.id, row.key)] = (0, "new")
            else:
                session.execute(update(Inference).where(Inference.id == old[0]).values(**row.fields))
            written[row.outcome] += 1
        if new:
            session.execute(insert(Inference), new)
        return written

    return write_resolving_conflicts(db, work, what="record inferences")


def _blank(status: str, *, model_id: int | None, error: str | None, dagster_run_id: str) -> dict[str, Any]:
    return dict(model_id=model_id, status=status, error=error, weights={}, top_label_id=None, top_weight=None,
                confirmed=False, is_bad=False, flagged=False, gradcam_path=None, novelty=None, novelty_limit=None,
                classified_at=utcnow(), dagster_run_id=dagster_run_id)


@dataclass
class _Context:
    """What classifying a run's images needs from the database, read once."""

    thresholds: dict[int, dict[str, float]]  # model id -> label -> threshold
    label_ids: dict[tuple[int, str], int]  # (plot type id, label name) -> label id
    bad: dict[int, set[str]]  # plot type id -> names of its Bad labels (as marked now)

    def thresholds_for(self, db: HydraDB, model_id: int) -> dict[str, float]:
        if model_id not in self.thresholds:  # activated after our read
            from hydra_assets.ml.active import thresholds_of

            with db.read() as s:
                self.thresholds[model_id] = thresholds_of(s, model_id)
        return self.thresholds[model_id]


def predict_run(
    db: HydraDB,
    config: HydraSettings,
    run: int,
    digests: Collection[str] | None,
    classifier: Classifier,
    *,
    dagster_run_id: str = "",
    feed_ms: float | None = None,
) -> PredictResult:
    """Classify the images of run `run` in scope that lack an inference of their plot type's active model.

    One read before and one write after the classification, whatever the number of plot types (a Hall
    has 80): thresholds are those of the moment the run read them.  The model inputs the Feeder kept are
    used where there are some (`model_inputs`); the others are decoded from the stored images.
    """
    from hydra_assets.ml.active import thresholds_of

    started = time.perf_counter()
    with db.read() as s:
        images = images_in_scope(s, run, digests)
        plot_type_ids = {i.plot_type_id for i in images}
        models = current_models(s, plot_type_ids)
        statuses = _statuses(s, [i.id for i in images])
        context = _Context(
            thresholds={m.model_id: thresholds_of(s, m.model_id) for m in models.values()},
            label_ids={}, bad=defaultdict(set),
        )
        for pid, label_name, lid, is_bad in s.execute(select(Label.plot_type_id, Label.name, Label.id, Label.is_bad)
                                                      .where(Label.plot_type_id.in_(plot_type_ids))):
            context.label_ids[(pid, label_name)] = lid
            if is_bad:
                context.bad[pid].add(label_name)
    result = PredictResult(run=run, images=len(images))
    by_plot_type: dict[int, list[ScopeImage]] = defaultdict(list)
    for image in images:
        by_plot_type[image.plot_type_id].append(image)
        result.chunks[(image.plot_type_id, image.chunk)] += 1

    rows: list[_Row] = []
    for plot_type_id, group in by_plot_type.items():
        name = group[0].plot_type
        current = models.get(plot_type_id)
        key = current.key if current is not None else NO_MODEL_KEY
        result.models[name] = key
        todo = [i for i in group if statuses.get((i.id, key), "error") == "error"]  # none yet, or failed
        result.skipped += len(group) - len(todo)
        if not todo:
            continue
        if current is None:
            rows += [_Row(i, NO_MODEL_KEY, _blank("no_model", model_id=None, error=None,
                                                  dagster_run_id=dagster_run_id), "no_model") for i in todo]
            continue
        rows += _classify_group(db, config, todo, current, classifier, result, name, context,
                                dagster_run_id=dagster_run_id, feed_ms=feed_ms)
    t_db = time.perf_counter()
    written = _write_rows(db, rows) if rows else Counter()
    result.timings_ms["db"] += (time.perf_counter() - t_db) * 1000
    discard_inputs(config, {image.digest for image in images})  # those not taken: no model, done before
    result.classified, result.no_model, result.error_images = (
        written["classified"], written["no_model"], written["error"])
    result.duration_ms = (time.perf_counter() - started) * 1000
    return result


def _prepare_batch(
    config: HydraSettings, images: list[ScopeImage], size: tuple[int, int]
) -> tuple[list[ScopeImage], np.ndarray, list[tuple[ScopeImage, str]]]:
    """The model inputs of `images` at `size`: the Feeder's where kept, else decoded from the stored file."""
    kept = take_inputs(config, [image.digest for image in images], size)
    ok, arrays, failed = [], [], []
    for image in images:
        array = kept.get(image.digest)
        if array is None:
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
    context: _Context,
    *,
    dagster_run_id: str,
    feed_ms: float | None,
) -> list[_Row]:
    """The rows for one plot type's images: classified, `error` (model or file unusable) or `no_model`."""
    from hydra_assets.ml.active import ModelLoadError

    t0 = time.perf_counter()
    ok, batch, failed = _prepare_batch(config, todo, current.input_size)
    result.timings_ms["prepare"] += (time.perf_counter() - t0) * 1000
    paths = [gradcam_path(config, image, current.key) for image in ok]
    prediction: BatchPrediction | None = None
    try:
        try:
            prediction = classifier.classify(plot_type, batch, paths, expected_key=current.key)
        except InputSizeMismatch as mismatch:  # activated meanwhile with another input size
            ok, batch, more_failed = _prepare_batch(config, ok, mismatch.size)
            failed += more_failed
            paths = [gradcam_path(config, image, current.key) for image in ok]
            prediction = classifier.classify(plot_type, batch, paths)  # reload: the version changed
    except ModelLoadError as load_error:
        result.errors[plot_type] = str(load_error)
        return [_Row(i, current.key, _blank("error", model_id=current.model_id, error=str(load_error),
                                            dagster_run_id=dagster_run_id), "error") for i in todo]

    rows = [_Row(image, current.key, _blank("error", model_id=current.model_id, error=why,
                                            dagster_run_id=dagster_run_id), "error") for image, why in failed]
    if prediction is None:  # deactivated between our read and the classification
        result.models[plot_type] = NO_MODEL_KEY
        return rows + [_Row(i, NO_MODEL_KEY, _blank("no_model", model_id=None, error=None,
                                                    dagster_run_id=dagster_run_id), "no_model") for i in ok]

    result.where.add(prediction.where)
    result.timings_ms["load"] += prediction.load_ms
    result.timings_ms["infer"] += prediction.infer_ms
    result.timings_ms["novelty"] += prediction.novelty_ms
    result.timings_ms["gradcam"] += prediction.gradcam_ms
    result.gradcams += len(prediction.gradcams)
    result.models[plot_type] = prediction.model_key
    thresholds = context.thresholds_for(db, prediction.model_id)
    bad = context.bad.get(todo[0].plot_type_id, set(prediction.bad_labels))
    per_image_ms = round((prediction.infer_ms + prediction.gradcam_ms) / max(len(ok), 1), 3)
    novelty = prediction.novelty
    limit = prediction.novelty_limit if novelty is not None else None
    if novelty is not None:
        result.novel += sum(is_novel(float(score), limit) for score in novelty)
    for index, image in enumerate(ok):
        score = None if novelty is None else float(novelty[index])
        judged = classify_weights(prediction.weights[index], prediction.label_names, thresholds, bad,
                                  novelty=score, novelty_limit=limit)
        rows.append(_Row(image, prediction.model_key, dict(
            model_id=prediction.model_id, status="classified", error=None,
            weights={k: round(v, 6) for k, v in judged.weights.items()},
            top_label_id=context.label_ids.get((image.plot_type_id, judged.top_label)),
            top_weight=round(judged.top_weight, 6), confirmed=judged.confirmed, is_bad=judged.is_bad,
            flagged=judged.flagged, gradcam_path=prediction.gradcams.get(index),
            novelty=_finite(judged.novelty), novelty_limit=judged.novelty_limit, classified_at=utcnow(),
            predict_ms=per_image_ms, feed_ms=feed_ms, dagster_run_id=dagster_run_id,
        ), "classified"))
    return rows
