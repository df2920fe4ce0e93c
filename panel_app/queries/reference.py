"""The label-free reference comparison on the pages (issue 14): scores per image, their trend, the images
they flagged, and each plot type's reference versions.

A `reference_scores` row is stored per image and reference version; what an image's score *is* is the row of
its newest version (a score against an older reference is history).  `latest_scores` picks it for a page of
images (cards, tiles) along `uq_reference_score_image_version`; the flagged listing reads
`ix_reference_scores_flagged` and drops rows a newer version of the same image superseded; Trends reads
`ix_reference_scores_trend`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, func, select, true
from sqlalchemy.orm import Session, aliased

from hydra_assets.db.models import Image, PlotType, ReferenceScore, ReferenceSet, Run
from panel_app.views_data import Comparison, ReferenceFlag, ReferenceInfo, ReferencePoint

SCORED = "scored"


def superseded(score: Any = ReferenceScore) -> Any:
    """SQL condition: a newer reference version holds a row for the same image (so this row is history)."""
    newer = aliased(ReferenceScore)
    return exists(select(newer.id).where(newer.image_id == score.image_id,
                                         newer.reference_version > score.reference_version))


def latest_scores(session: Session, image_ids: Sequence[int]) -> dict[int, tuple[Any, ...]]:
    """Per image: (score, limit, version, status, reason, flagged) of its newest reference version."""
    if not image_ids:
        return {}
    newest: dict[int, tuple[Any, ...]] = {}
    rows = session.execute(
        select(ReferenceScore.image_id, ReferenceScore.reference_version, ReferenceScore.score,
               ReferenceScore.score_limit, ReferenceScore.status, ReferenceScore.reason, ReferenceScore.flagged)
        .where(ReferenceScore.image_id.in_(list(image_ids)))
    )
    for image_id, version, score, limit, status, reason, flagged in rows:
        if image_id not in newest or version > newest[image_id][2]:
            newest[image_id] = (score, limit, version, status, reason, bool(flagged))
    return newest


def attach_reference_scores(session: Session, items: Sequence[Any]) -> None:
    """Fill `reference_score`, `reference_limit` and `reference_flagged` of Run cards or Browser tiles."""
    found = latest_scores(session, [item.image_id for item in items])
    for item in items:
        row = found.get(item.image_id)
        if row is not None and row[3] == SCORED:
            item.reference_score, item.reference_limit, item.reference_flagged = row[0], row[1], row[5]


def reference_trend(session: Session, plot_type_id: int, since: datetime, until: datetime | None = None, *,
                    limit: int = 20000) -> list[ReferencePoint]:
    """Every reference score of a plot type computed in the window (newest `limit`), oldest first."""
    query = (
        select(ReferenceScore.computed_at, ReferenceScore.score, ReferenceScore.score_limit,
               ReferenceScore.run_number, ReferenceScore.reference_version, ReferenceScore.flagged)
        .where(ReferenceScore.plot_type_id == plot_type_id, ReferenceScore.computed_at >= since,
               ReferenceScore.status == SCORED, ReferenceScore.score.is_not(None))
        .order_by(ReferenceScore.computed_at.desc())
        .limit(limit)
    )
    if until is not None:
        query = query.where(ReferenceScore.computed_at <= until)
    points = [ReferencePoint(r[0], float(r[1]), r[2], r[3], r[4], bool(r[5])) for r in session.execute(query)]
    points.reverse()
    return points


def flagged_by_reference(session: Session, since: datetime, until: datetime | None = None, *, limit: int = 2000
                         ) -> list[ReferenceFlag]:
    """Images the reference score flagged in [since, until], newest first, each by its newest reference version
    (a flag a newer reference took back is not listed)."""
    query = (
        select(ReferenceScore.image_id, ReferenceScore.plot_type_id, PlotType.name, ReferenceScore.run_number,
               ReferenceScore.chunk, ReferenceScore.computed_at, ReferenceScore.score, ReferenceScore.score_limit,
               ReferenceScore.reference_version)
        .outerjoin(PlotType, PlotType.id == ReferenceScore.plot_type_id)  # outer: start from the flagged index
        .where(ReferenceScore.flagged == true(), ReferenceScore.computed_at >= since, ~superseded())
        .order_by(ReferenceScore.computed_at.desc(), ReferenceScore.id.desc())
        .limit(limit)
    )
    if until is not None:
        query = query.where(ReferenceScore.computed_at <= until)
    return [ReferenceFlag(r[0], r[1], r[2] or "?", r[3], r[4], r[5], r[6], r[7], r[8]) for r in session.execute(query)]


def reference_sets(session: Session, plot_type_id: int) -> list[ReferenceInfo]:
    """Every reference version of a plot type, newest first: the history of reference changes."""
    rows = session.scalars(
        select(ReferenceSet).where(ReferenceSet.plot_type_id == plot_type_id).order_by(ReferenceSet.version.desc())
    )
    return [
        ReferenceInfo(r.id, r.version, [int(x) for x in r.runs or []], r.rule, r.chosen_by or "", r.chosen_at,
                      r.comment or "", r.n_images or 0, r.quantile, r.score_limit, bool(r.active))
        for r in rows
    ]


def reference_settings(session: Session, plot_type_id: int) -> tuple[bool, float, str] | None:
    """(reference alarm on, quantile, rule auto|expert) of a plot type; None when it does not exist."""
    row = session.execute(
        select(PlotType.reference_alarm, PlotType.reference_quantile, PlotType.reference_rule)
        .where(PlotType.id == plot_type_id)
    ).first()
    return None if row is None else (bool(row[0]), float(row[1]), str(row[2]))


def run_images(session: Session, plot_type_id: int, runs: Sequence[int]) -> dict[int, tuple[bool, int]]:
    """Per run: (the run is known to Hydra, images of this plot type it holds): what a reference may use."""
    known = set(session.scalars(select(Run.number).where(Run.number.in_(list(runs)))))
    known |= set(session.scalars(select(Image.run_number).where(Image.run_number.in_(list(runs))).distinct()))
    counts = dict(session.execute(
        select(Image.run_number, func.count(Image.id))
        .where(and_(Image.plot_type_id == plot_type_id, Image.run_number.in_(list(runs)),
                    Image.status != "quarantined"))
        .group_by(Image.run_number)
    ).all())
    return {run: (run in known, int(counts.get(run, 0))) for run in runs}


def _field(found: Any, *names: str) -> Any:
    """The first of `names` that `found` (a mapping or an object) holds."""
    for name in names:
        value = found.get(name) if isinstance(found, dict) else getattr(found, name, None)
        if value is not None:
            return value
    return None


def compare(session: Session, image_id: int) -> Comparison:
    """The compare view's pictures and figures: `hydra_assets.references.compare_pictures`, or why not."""
    row = session.execute(
        select(Image.id, PlotType.name, Image.run_number, Image.chunk)
        .outerjoin(PlotType, PlotType.id == Image.plot_type_id).where(Image.id == image_id)
    ).first()
    if row is None:
        return Comparison(image_id, reason=f"There is no image {image_id}.")
    shown = Comparison(image_id, row[1] or "?", row[2], row[3])
    try:
        from hydra_assets.references import compare_pictures
    except ImportError:  # the reference comparison is not part of this installation yet
        shown.reason = "The reference comparison is not available in this Hydra installation."
        return shown
    try:
        found = compare_pictures(session, image_id)
    except (ValueError, LookupError, OSError) as error:  # said on the page; nothing else depends on it
        shown.reason = str(error)
        return shown
    shown.image = _field(found, "image")
    shown.reference = _field(found, "reference", "reference_image", "mean")
    shown.difference = _field(found, "difference", "diff")
    score, limit = _field(found, "score"), _field(found, "limit", "score_limit")
    shown.score = None if score is None else float(score)
    shown.limit = None if limit is None else float(limit)
    shown.version = _field(found, "version", "reference_version")
    shown.runs = [int(r) for r in _field(found, "runs", "reference_runs") or []]
    shown.reason = str(_field(found, "reason") or "")
    flagged = _field(found, "flagged")
    shown.flagged = None if flagged is None or shown.score is None else bool(flagged)
    return shown
