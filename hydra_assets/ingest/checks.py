"""Data-quality gates of the ingestion assets, as queries the asset checks (and tests) call directly."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hydra_assets.db.models import Inference, KeepDecision
from hydra_assets.ingest.keeper import pending_decisions
from hydra_assets.ingest.predict import current_models, images_in_scope
from hydra_assets.rules import NO_MODEL_KEY


@dataclass(frozen=True)
class Coverage:
    images: int  # registered images in scope
    covered: int  # with an inference of their plot type's current model (or `no_model`)
    errors: int  # whose current-model inference failed


def inference_coverage(session: Session, run: int, digests: Collection[str] | None) -> Coverage:
    """Does every registered image in scope have exactly its current inference, and none failed?"""
    images = images_in_scope(session, run, digests)
    if not images:
        return Coverage(0, 0, 0)
    models = current_models(session, {i.plot_type_id for i in images})
    wanted = {i.id: (models[i.plot_type_id].key if i.plot_type_id in models else NO_MODEL_KEY) for i in images}
    rows = session.execute(select(Inference.image_id, Inference.model_key, Inference.status)
                           .where(Inference.image_id.in_(list(wanted))))
    covered = errors = 0
    for image_id, key, status in rows:
        if wanted.get(image_id) != key:
            continue
        if status == "error":
            errors += 1
        else:
            covered += 1
    return Coverage(len(images), covered, errors)


def decisions_missing(session: Session, run: int, digests: Collection[str] | None) -> int:
    """Inferences in scope without a keep decision (0 when the Keeper is done)."""
    return len(pending_decisions(session, run, digests))


def duplicate_inferences(session: Session, run: int) -> int:
    """(image, model version) pairs recorded more than once — impossible by constraint, checked anyway."""
    counts = (select(func.count().label("n")).select_from(Inference).where(Inference.run_number == run)
              .group_by(Inference.image_id, Inference.model_key).subquery())
    return int(session.scalar(select(func.count()).select_from(counts).where(counts.c.n > 1)) or 0)


def duplicate_decisions(session: Session, run: int) -> int:
    rows = (select(func.count().label("n")).select_from(KeepDecision).join(Inference,
            Inference.id == KeepDecision.inference_id).where(Inference.run_number == run)
            .group_by(KeepDecision.inference_id).subquery())
    return int(session.scalar(select(func.count()).select_from(rows).where(rows.c.n > 1)) or 0)
