"""Shadow inferences: stored images classified by a model version that is not the active one.

A backtest's candidate and a plot type's challenger classify images exactly as Predict would (the same
model loading, mask, traced forward pass, novelty score and `rules.classify_weights`), but their results
go to `shadow_inferences`, never to `inferences`: they can never alarm, change a keep decision or reach
the Run page.  `would_alarm` says whether the same result, had it been live, would have raised an alarm
(the Keeper's `alarm_kind` without the reference score, which does not depend on the model).

One row per (image, model version, purpose): images that already have one are skipped, so a backtest or
a challenger pass rerun writes nothing new; a row stored as `error` (model or file unusable) is retried.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from hydra_assets.db.engine import HydraDB
from hydra_assets.db.models import Image, Label, Model, PlotType, ShadowInference, utcnow
from hydra_assets.ingest.feeder import USABLE
from hydra_assets.ingest.health import write_resolving_conflicts
from hydra_assets.ingest.model_inputs import prepare
from hydra_assets.ingest.predict import ScopeImage, _finite
from hydra_assets.rules import classify_weights, is_novel
from hydra_assets.settings import HydraSettings

PURPOSES = ("backtest", "challenger")
BATCH = 256  # images decoded and classified at once: bounded memory for 299 px inputs


@dataclass
class ShadowCounts:
    """What one call did: images asked about, classified now, skipped (already stored), failed."""

    images: int = 0
    classified: int = 0
    skipped: int = 0
    errors: int = 0
    would_alarm: int = 0
    error: str = ""  # why the model could not be used, when it could not
    predict_ms: float = 0.0  # forward pass and novelty, all batches
    duration_ms: float = 0.0
    runs: set[int] = field(default_factory=set)


def shadow_images(session: Session, plot_type_id: int, runs: Sequence[int]) -> list[ScopeImage]:
    """Usable stored images of one plot type in these runs, as Predict reads them (ordered)."""
    if not runs:
        return []
    rows = session.execute(
        select(Image.id, Image.plot_type_id, PlotType.name, Image.run_number, Image.chunk, Image.digest,
               Image.stored_path)
        .join(PlotType, PlotType.id == Image.plot_type_id)
        .where(Image.plot_type_id == plot_type_id, Image.run_number.in_(list(runs)), Image.status.in_(USABLE))
        .order_by(Image.run_number, Image.chunk, Image.id))
    return [ScopeImage(*row) for row in rows]


def _stored(session: Session, image_ids: list[int], model_key: str, purpose: str) -> dict[int, str]:
    """image id -> status of the shadow rows these images already have for this version and purpose."""
    out: dict[int, str] = {}
    for start in range(0, len(image_ids), 1000):
        part = image_ids[start : start + 1000]
        out.update(session.execute(select(ShadowInference.image_id, ShadowInference.status).where(
            ShadowInference.image_id.in_(part), ShadowInference.model_key == model_key,
            ShadowInference.purpose == purpose)).tuples().all())
    return out


def would_alarm(*, status: str, confirmed: bool, is_bad: bool, novel: bool, novel_alarm: bool) -> bool:
    """Whether a live inference with this result would alarm (the Keeper's `alarm_kind`, model part)."""
    if status != "classified":
        return False
    return (is_bad and confirmed) or (novel and novel_alarm)


def _decode(images: list[ScopeImage], size: tuple[int, int]) -> tuple[list[ScopeImage], np.ndarray, list[tuple[ScopeImage, str]]]:
    """Model inputs decoded from the stored files (the Feeder's kept inputs belong to Predict: untouched)."""
    ok, arrays, failed = [], [], []
    for image in images:
        try:
            arrays.append(prepare(Path(image.stored_path), size))
        except (OSError, ValueError) as error:
            failed.append((image, f"stored image unreadable: {error}"))
            continue
        ok.append(image)
    batch = np.stack(arrays) if arrays else np.zeros((0, *size, 3), np.uint8)
    return ok, batch, failed


@dataclass
class Scored:
    """A version's output for one batch: weights (N, labels), novelty scores and limit, its labels and thresholds."""

    weights: np.ndarray
    novelty: np.ndarray | None
    novelty_limit: float | None
    label_names: list[str]
    thresholds: dict[str, float]


Scorer = Callable[[np.ndarray], Scored]  # a uint8 batch (N, H, W, 3) at the version's input size -> Scored


def local_scorer(db: HydraDB, config: HydraSettings, model_id: int) -> Scorer:
    """Score with the version loaded in this process (raises `ModelLoadError` when it cannot be loaded)."""
    from hydra_assets.ingest.classifier import predict_scored
    from hydra_assets.ml.active import load_model_version

    active = load_model_version(db, config, model_id)

    def score(batch: np.ndarray) -> Scored:
        floats = active.masked(np.asarray(batch, dtype=np.float32) / 255.0)
        weights, novelty, _ = predict_scored(active, floats)
        limit = float(active.novelty.limit) if novelty is not None and active.novelty is not None else None
        return Scored(weights, novelty, limit, list(active.label_names), dict(active.thresholds))

    return score


def classify_shadow(
    db: HydraDB,
    config: HydraSettings,
    model: Model,
    images: Sequence[ScopeImage],
    purpose: str,
    backtest_id: int | None = None,
    dagster_run_id: str = "",
    scorer: Callable[[HydraDB, HydraSettings, int], Scorer] = local_scorer,
) -> ShadowCounts:
    """Classify `images` (of the model's plot type) with version `model` into shadow rows; returns counts.

    Idempotent: images with a stored row of this version and purpose are skipped (an `error` row is
    retried).  A model that cannot be loaded stores `error` rows naming why, so the report says so.
    `scorer` runs the forward pass: in this process by default, or in the warm predictor service (the
    challenger's live step, so a Dagster run does not import TensorFlow: `hydra_assets/challenger.py`).
    """
    from hydra_assets.ml.active import ModelLoadError

    if purpose not in PURPOSES:
        raise ValueError(f"purpose must be one of {', '.join(PURPOSES)}, not {purpose!r}")
    started = time.perf_counter()
    counts = ShadowCounts(images=len(images))
    model_id, model_key, plot_type_id = model.id, model.key, model.plot_type_id
    wrong = [i.id for i in images if i.plot_type_id != plot_type_id]
    if wrong:
        raise ValueError(f"model {model_key} is not a model of the plot type of images {wrong[:5]}")
    with db.read() as s:
        stored = _stored(s, [i.id for i in images], model_key, purpose)
        plot = s.get(PlotType, plot_type_id)
        novel_alarm = bool(plot.novel_alarm) if plot is not None else False
        labels = {name: (lid, bad) for name, lid, bad in s.execute(
            select(Label.name, Label.id, Label.is_bad).where(Label.plot_type_id == plot_type_id))}
    todo = [i for i in images if stored.get(i.id, "error") == "error"]
    counts.skipped = len(images) - len(todo)
    if not todo:
        counts.duration_ms = (time.perf_counter() - started) * 1000
        return counts
    base = dict(model_id=model_id, purpose=purpose, backtest_id=backtest_id, dagster_run_id=dagster_run_id)
    rows: list[tuple[ScopeImage, dict[str, Any]]] = []
    done: set[int] = set()
    try:
        score_batch = scorer(db, config, model_id)
        bad = {name for name, (_, is_bad) in labels.items() if is_bad}
        for start in range(0, len(todo), BATCH):
            ok, batch, failed = _decode(todo[start : start + BATCH], (model.input_height, model.input_width))
            rows += [(image, _blank(why)) for image, why in failed]
            done.update(image.id for image, _ in failed)
            if not ok:
                continue
            t0 = time.perf_counter()
            scored = score_batch(batch)
            elapsed = (time.perf_counter() - t0) * 1000
            counts.predict_ms += elapsed
            per_image_ms = round(elapsed / max(len(ok), 1), 3)
            weights, novelty, limit = scored.weights, scored.novelty, scored.novelty_limit
            for index, image in enumerate(ok):
                score = None if novelty is None else float(novelty[index])
                judged = classify_weights(weights[index], scored.label_names, scored.thresholds, bad,
                                          novelty=score, novelty_limit=limit)
                done.add(image.id)
                rows.append((image, dict(
                    status="classified", error=None,
                    weights={k: round(v, 6) for k, v in judged.weights.items()},
                    top_label_id=labels.get(judged.top_label, (None, False))[0],
                    top_weight=round(judged.top_weight, 6), confirmed=judged.confirmed, is_bad=judged.is_bad,
                    would_alarm=would_alarm(status="classified", confirmed=judged.confirmed, is_bad=judged.is_bad,
                                            novel=is_novel(score, limit), novel_alarm=novel_alarm),
                    novelty=_finite(judged.novelty), novelty_limit=judged.novelty_limit,
                    predict_ms=per_image_ms, classified_at=utcnow())))
    except ModelLoadError as error:  # at loading, or from the service on a batch: the rest say why
        counts.error = str(error)
        rows += [(i, _blank(str(error))) for i in todo if i.id not in done]
    written = _write(db, model_key, rows, base)
    counts.classified, counts.errors, counts.would_alarm = written
    counts.runs = {i.run for i in todo}
    counts.duration_ms = (time.perf_counter() - started) * 1000
    return counts


def _blank(error: str) -> dict[str, Any]:
    return dict(status="error", error=error[:2000], weights={}, top_label_id=None, top_weight=None, confirmed=False,
                is_bad=False, would_alarm=False, novelty=None, novelty_limit=None, predict_ms=None,
                classified_at=utcnow())


def _write(db: HydraDB, model_key: str, rows: list[tuple[ScopeImage, dict[str, Any]]],
           base: dict[str, Any]) -> tuple[int, int, int]:
    """Insert (or repair an `error` row of) one shadow row per image, in one transaction per 1,000 rows."""
    totals = [0, 0, 0]
    purpose = base["purpose"]
    for start in range(0, len(rows), 1000):
        part = rows[start : start + 1000]

        def work(session: Session, part: list[tuple[ScopeImage, dict[str, Any]]] = part) -> tuple[int, int, int]:
            existing = {r.image_id: r for r in session.scalars(select(ShadowInference).where(
                ShadowInference.image_id.in_([i.id for i, _ in part]), ShadowInference.model_key == model_key,
                ShadowInference.purpose == purpose))}
            classified = errors = alarms = 0
            for image, fields in part:
                old = existing.get(image.id)
                if old is not None and old.status != "error":
                    continue  # a concurrent pass got there first
                if old is None:
                    session.add(ShadowInference(image_id=image.id, plot_type_id=image.plot_type_id,
                                                run_number=image.run, chunk=image.chunk, model_key=model_key,
                                                **base, **fields))
                else:
                    for name, value in {**base, **fields}.items():
                        setattr(old, name, value)
                if fields["status"] == "classified":
                    classified += 1
                    alarms += bool(fields["would_alarm"])
                else:
                    errors += 1
            session.flush()
            return classified, errors, alarms

        done = write_resolving_conflicts(db, work, what="record shadow inferences")
        totals = [a + b for a, b in zip(totals, done, strict=True)]
    return totals[0], totals[1], totals[2]


__all__ = ["PURPOSES", "Scored", "Scorer", "ShadowCounts", "classify_shadow", "local_scorer", "shadow_images",
           "would_alarm"]
