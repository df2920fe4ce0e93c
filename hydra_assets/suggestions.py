"""Retraining suggestions from the database: per plot type and run, how many images the active model
found unlike its training data or left unconfirmed, against what its validation predicts.

The rule itself (what "well above" means, the message) is pure, in `hydra_assets/scores/suggestions.py`;
this module only counts.  The Library and Status pages, `hydra log` and the Dagster asset check on the keep
asset all call `retraining_suggestions`, so they say the same thing; `suggested_images` is the Labeler queue
behind a suggestion's link (``/labeler?plot_type=<T>&run=<N>&reason=<novel|unconfirmed>``).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from hydra_assets.db.models import Image, Inference, Model, PlotType
from hydra_assets.scores.suggestions import RunShares, Suggestion, suggest

KINDS = ("novel", "unconfirmed")


def _novel_clause() -> Any:
    """SQL for rules.is_novel on stored columns: a score above a finite limit (no score or limit: not novel)."""
    return and_(Inference.novelty.is_not(None), Inference.novelty_limit.is_not(None),
                Inference.novelty > Inference.novelty_limit)


def _share(metrics: dict[str, Any] | None, section: str, key: str) -> float | None:
    """A share the model's training wrote into its metrics, or None when missing or not a number."""
    value = ((metrics or {}).get(section) or {}).get(key)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def expected_shares(model: Model) -> tuple[float | None, float | None]:
    """(novel, unconfirmed) shares the model's validation predicts; None where training did not measure it."""
    return (_share(model.metrics, "novelty", "validation_rate"),
            _share(model.metrics, "validation", "unconfirmed_rate"))


def active_models(session: Session, plot_type: str | None = None) -> list[tuple[str, Model]]:
    """(plot type name, active model) of every enabled plot type with one, or of `plot_type` only."""
    query = (select(PlotType.name, Model).join(Model, Model.plot_type_id == PlotType.id)
             .where(Model.active.is_(True)).order_by(PlotType.name))
    if plot_type is not None:
        query = query.where(PlotType.name == plot_type)
    return [(name, model) for name, model in session.execute(query)]


def run_shares(session: Session, *, since: datetime | None = None, plot_type: str | None = None,
               run: int | None = None) -> list[RunShares]:
    """Per plot type and run (or only `run`): images the active model classified, how many were novel and
    unconfirmed.

    Two statements whatever the number of plot types (the keep step of every chunk job asks this for its
    run; one query per model was 4,600 queries per job at CMS scale): the active models, then the counts of
    all of them grouped by model and run.
    """
    models = active_models(session, plot_type)
    if not models:
        return []
    query = (select(Inference.model_id, Inference.run_number, func.count(Inference.id),
                    func.sum(case((_novel_clause(), 1), else_=0)),
                    func.sum(case((Inference.confirmed.is_(False), 1), else_=0)))
             # the model's own plot type; ix_inferences_run (run_number, plot_type_id) serves the keep step's
             # run (EXPLAIN on SQLite and MariaDB), ix_inferences_trend (plot_type_id, classified_at) the window
             .join(Model, and_(Model.id == Inference.model_id, Model.plot_type_id == Inference.plot_type_id))
             .where(Model.active.is_(True), Inference.status == "classified")
             .group_by(Inference.model_id, Inference.run_number))
    if plot_type is not None:
        query = query.where(Inference.plot_type_id.in_({model.plot_type_id for _, model in models}))
    if since is not None:
        query = query.where(Inference.classified_at >= since)
    if run is not None:
        query = query.where(Inference.run_number == run)
    counts: dict[int, list[tuple[int, int, int, int]]] = {}
    for model_id, number, images, novel, unconfirmed in session.execute(query):
        counts.setdefault(int(model_id), []).append((int(number), int(images), int(novel or 0),
                                                     int(unconfirmed or 0)))
    rows: list[RunShares] = []
    for name, model in models:  # plot type order, then run order, as the pages list them
        expected_novel, expected_unconfirmed = expected_shares(model)
        for number, images, novel, unconfirmed in sorted(counts.get(model.id, ())):
            rows.append(RunShares(name, number, model.key, images, novel, unconfirmed, expected_novel,
                                  expected_unconfirmed))
    return rows


def retraining_suggestions(session: Session, *, since: datetime | None = None, plot_type: str | None = None,
                           run: int | None = None) -> list[Suggestion]:
    """Runs where the active model is out of its depth (largest excess first); see `scores.suggestions`.

    `run`: only that run (the Dagster check of a run partition).
    """
    return suggest(run_shares(session, since=since, plot_type=plot_type, run=run))


def suggested_images(session: Session, plot_type: str, run: int, kind: str) -> list[int]:
    """Image ids of `run` the active model of `plot_type` found novel (or left unconfirmed), unlabeled first.

    Within each group the most novel (or least certain) image comes first, so labeling the top of the list
    teaches the model most.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    models = active_models(session, plot_type)
    if not models:
        return []
    model = models[0][1]
    which = _novel_clause() if kind == "novel" else Inference.confirmed.is_(False)
    order = Inference.novelty.desc() if kind == "novel" else Inference.top_weight.asc()
    query = (select(Inference.image_id).join(Image, Image.id == Inference.image_id)
             .where(Inference.model_id == model.id, Inference.run_number == run,
                    Inference.status == "classified", which)
             .order_by(case((Image.label_id.is_(None), 0), else_=1), order, Inference.image_id))
    return [int(image_id) for image_id in session.scalars(query)]


__all__ = ["KINDS", "active_models", "expected_shares", "retraining_suggestions", "run_shares",
           "suggested_images"]
