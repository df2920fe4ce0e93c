"""The Labeler's ranked queues: which queued images to show first (docs/labeling-queues.md).

The candidates of every ranked queue but the audit are the plot type's unlabeled queued images (the
arrival queue's images: their files are kept), newest first, at most `CANDIDATES` of them; each is ranked
by its latest classification with the pure rankings of `hydra_assets.scores.queues`.  The audit queue lists
labeled images whose label a model version's out-of-fold predictions doubt (`hydra_assets.label_audit`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hydra_assets import label_audit
from hydra_assets.db.models import Image, Inference, Model, ReferenceScore, ShadowInference
from hydra_assets.scores import queues as ranking
from panel_app.queries.reference import attach_reference_scores
from panel_app.queries.tiles import tiles_of
from panel_app.views_data import Tile

CANDIDATES = 5000  # ranking reads one row per candidate: bounded, so a huge backlog stays a fast page


@dataclass(frozen=True)
class AuditItem:
    """One image of the audit queue: the label given and the one the out-of-fold predictions suggest."""

    check_id: int
    image_id: int
    run: int | None
    chunk: int | None
    given_label_id: int | None
    suggested_label_id: int | None
    self_confidence: float
    model_key: str


def _candidates(session: Session, plot_type_id: int) -> list[int]:
    """Unlabeled queued images, newest first (one range of `ix_images_labeler_queue`)."""
    return list(session.scalars(
        select(Image.id).where(Image.plot_type_id == plot_type_id, Image.label_id.is_(None),
                               Image.queue_priority.is_not(None))
        .order_by(Image.id.desc()).limit(CANDIDATES)))


def _latest_inferences(session: Session, image_ids: list[int], *columns: Any) -> dict[int, Any]:
    """The newest classification of each image: the given columns only (plain rows read ~5x faster than
    whole `Inference` objects at 5,000 images)."""
    if not image_ids:
        return {}
    newest = (select(func.max(Inference.id)).where(Inference.image_id.in_(image_ids))
              .group_by(Inference.image_id))
    rows = session.execute(select(Inference.image_id, *columns)
                           .where(Inference.id.in_(newest), Inference.status == "classified"))
    return {row.image_id: row for row in rows}


def ranked_images(session: Session, plot_type_id: int, queue: str) -> list[int]:
    """Image ids of a ranked queue in the order to label them (the audit queue: `audit_items`)."""
    ids = _candidates(session, plot_type_id)
    if not ids:
        return []
    if queue == ranking.UNCERTAIN:
        latest = _latest_inferences(session, ids, Inference.weights)
        ids = [i for i in ids if i in latest and latest[i].weights]
        width = max((len(latest[i].weights) for i in ids), default=0)
        weights = np.full((len(ids), max(width, 1)), np.nan)
        for row, image_id in enumerate(ids):
            values = list(latest[image_id].weights.values())
            weights[row, :len(values)] = values
            weights[row, len(values):] = 0.0
        return [ids[k] for k in ranking.rank_uncertain(weights)] if ids else []
    if queue == ranking.NOVEL:
        latest = _latest_inferences(session, ids, Inference.novelty, Inference.novelty_limit)
        ids = [i for i in ids if i in latest and latest[i].novelty is not None and latest[i].novelty_limit]
        scores = np.array([latest[i].novelty for i in ids], dtype=float)
        limits = np.array([latest[i].novelty_limit for i in ids], dtype=float)
        return [ids[k] for k in ranking.rank_novel(scores, limits)]
    if queue == ranking.REFERENCE:
        newest = (select(func.max(ReferenceScore.id)).where(ReferenceScore.image_id.in_(ids),
                                                             ReferenceScore.status == "scored")
                  .group_by(ReferenceScore.image_id))
        rows = session.execute(select(ReferenceScore.image_id, ReferenceScore.score, ReferenceScore.score_limit)
                               .where(ReferenceScore.id.in_(newest))).all()
        rows = [r for r in rows if r.score is not None and r.score_limit]
        order = ranking.rank_reference(np.array([r.score for r in rows], dtype=float),
                                       np.array([r.score_limit for r in rows], dtype=float))
        return [int(rows[k].image_id) for k in order]
    if queue == ranking.DISAGREEMENT:
        return challenger_disagreement(session, plot_type_id, ids)
    raise ValueError(f"unknown ranked queue {queue!r}")


def challenger_disagreement(session: Session, plot_type_id: int, ids: list[int]) -> list[int]:
    """Candidates whose challenger (shadow) top label differs from the live classification's, the
    challenger's most confident first."""
    challenger = session.scalar(select(Model.id).where(Model.plot_type_id == plot_type_id,
                                                       Model.challenger.is_(True)).limit(1))
    if challenger is None:
        return []
    shadow = {row.image_id: row for row in session.execute(
        select(ShadowInference.image_id, ShadowInference.top_label_id, ShadowInference.top_weight).where(ShadowInference.image_id.in_(ids), ShadowInference.model_id == challenger,
                                      ShadowInference.purpose == "challenger",
                                      ShadowInference.status == "classified"))}
    latest = _latest_inferences(session, [i for i in ids if i in shadow], Inference.top_label_id)
    both = [i for i in ids if i in latest]
    live = np.array([latest[i].top_label_id if latest[i].top_label_id is not None else -1 for i in both])
    other = np.array([shadow[i].top_label_id if shadow[i].top_label_id is not None else -1 for i in both])
    confidence = np.array([shadow[i].top_weight if shadow[i].top_weight is not None else np.nan for i in both])
    return [both[k] for k in ranking.rank_disagreement(live, other, confidence)] if both else []


def challenger_key(session: Session, plot_type_id: int) -> str | None:
    """The plot type's challenger version ("name/version"), or None."""
    row = session.scalar(select(Model).where(Model.plot_type_id == plot_type_id, Model.challenger.is_(True)).limit(1))
    return row.key if row else None


def backtest_disagreement(session: Session, backtest_id: int) -> tuple[int | None, list[int]]:
    """(plot type id, images where a backtest's candidate and the active version disagree), or (None, [])
    for an unknown backtest."""
    from hydra_assets import backtest
    from hydra_assets.db.models import Backtest

    row = session.get(Backtest, backtest_id)
    if row is None:
        return None, []
    return row.plot_type_id, list(backtest.disagreeing_images(session, backtest_id))


def audit_items(session: Session, plot_type_id: int, *, limit: int = 100) -> list[AuditItem]:
    """The audit queue: likely mislabeled images, not answered yet, most likely first."""
    checks = label_audit.open_checks(session, plot_type_id, limit=limit)
    if not checks:
        return []
    keys = dict(session.execute(select(Model.id, Model.mlflow_name + "/" + Model.mlflow_version)
                                .where(Model.id.in_({c.model_id for c in checks}))).all())
    where = dict((i, (r, c)) for i, r, c in session.execute(
        select(Image.id, Image.run_number, Image.chunk).where(Image.id.in_([c.image_id for c in checks]))))
    return [AuditItem(c.id, c.image_id, *where.get(c.image_id, (None, None)), c.given_label_id,
                      c.suggested_label_id, float(c.self_confidence), keys.get(c.model_id, "")) for c in checks]


def tiles(session: Session, image_ids: list[int]) -> list[Tile]:
    """Tiles of a page of a ranked queue, in its order, with classification and reference score."""
    found = tiles_of(session, image_ids)
    attach_reference_scores(session, found)
    return found


def audit_model_key(session: Session, plot_type_id: int) -> str | None:
    model = label_audit.audit_queue_model(session, plot_type_id)
    return model.key if model else None
