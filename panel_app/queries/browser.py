"""The Plot Browser: every image, filtered and sorted, paged with LIMIT/OFFSET and a capped count."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, func, select, true
from sqlalchemy.orm import Session

from hydra_assets.db.models import Image, Inference, Label, ReferenceScore, Run
from panel_app.queries.reference import SCORED, attach_reference_scores, superseded
from panel_app.queries.runs import condition_matches
from panel_app.queries.tiles import TILE_COLUMNS, as_tiles, attach_inferences
from panel_app.views_data import REFERENCE_SORT, SORT_NAMES, UNLABELED, BrowseFilter, Tile

# the ORDER BY of each name in SORT_NAMES; ids grow as images are registered (received_at is set then), so id
# order is arrival order
SORTS = dict(zip(SORT_NAMES, (
    (Image.id.desc(),),
    (Image.id.asc(),),
    (Image.run_number.desc(), Image.chunk.desc(), Image.id.desc()),
    (Image.run_number.asc(), Image.chunk.asc(), Image.id.asc()),
    (ReferenceScore.score.is_(None), ReferenceScore.score.desc(), Image.id.desc()),  # see _with_reference
), strict=True))


def _with_reference(query, f: BrowseFilter, sort: str):  # type: ignore[no-untyped-def]
    """Join each image's current reference score (its newest reference version, when scored) where the sort
    or a reference filter needs it; an outer join, so unscored images stay (last) when only sorting."""
    if sort != REFERENCE_SORT and f.reference_min is None and not f.reference_above_limit:
        return query
    current = and_(ReferenceScore.image_id == Image.id, ReferenceScore.status == SCORED, ~superseded())
    return query.outerjoin(ReferenceScore, current)


def _browse_where(f: BrowseFilter, label_ids: list[int]) -> list[Any]:
    where: list[Any] = []
    if not (f.label_name and f.label_name != UNLABELED and f.label_source == "human"):
        # a human label implies a registered image; without one, leave quarantined files out (that check
        # reads rows, so it is skipped when the label index alone can answer)
        where.append(Image.status != "quarantined")
    if f.plot_type_ids is not None:
        where.append(Image.plot_type_id.in_(f.plot_type_ids) if f.plot_type_ids else Image.id.is_(None))
    if f.run_min is not None:
        where.append(Image.run_number >= f.run_min)
    if f.run_max is not None:
        where.append(Image.run_number <= f.run_max)
    if f.since is not None:
        where.append(Image.received_at >= f.since)
    if f.until is not None:
        where.append(Image.received_at <= f.until)
    if f.condition_key:  # runs with that condition, then their images (ix_images_run)
        runs = select(Run.number).where(condition_matches(Run.conditions, f.condition_key, f.condition_value or ""))
        where.append(Image.run_number.in_(runs))
    if f.reference_min is not None:  # the reference score's filters (joined by _with_reference)
        where.append(ReferenceScore.score >= f.reference_min)
    if f.reference_above_limit:  # as stored with the score (score above its limit); ix_reference_scores_flagged
        where.append(ReferenceScore.flagged == true())
    if f.label_name:
        if f.label_source == "human":
            if f.label_name == UNLABELED:
                where.append(Image.label_id.is_(None))
            else:
                where.append(Image.label_id.in_(label_ids))
        else:
            # a correlated lookup per candidate image (uq_inference_image_model), stopping at the page's end:
            # as EXISTS, MariaDB would turn it into a semi-join over every inference with that label
            labeled_by_model = (
                select(Inference.id)
                .where(Inference.image_id == Image.id, Inference.top_label_id.in_(label_ids))
                .limit(1)
                .scalar_subquery()
            )
            where.append(labeled_by_model.is_not(None))
    return where


def browse(
    session: Session, f: BrowseFilter, *, sort: str = "newest first", limit: int = 60, offset: int = 0,
) -> tuple[list[Tile], bool]:
    """One page of images matching the filter, and whether another page follows."""
    where = _browse_where(f, _label_ids(session, f))
    rows = session.execute(
        _with_reference(select(*TILE_COLUMNS), f, sort).where(*where)
        .order_by(*SORTS.get(sort, SORTS[SORT_NAMES[0]])).limit(limit + 1).offset(offset)
    ).all()
    tiles = attach_inferences(session, as_tiles(rows[:limit]))
    attach_reference_scores(session, tiles)
    return tiles, len(rows) > limit


def browse_count(session: Session, f: BrowseFilter, *, cap: int = 1000) -> int | None:
    """How many images match, counted up to `cap` (cap + 1 means "more"); None when a count would cost a
    scan of the run history (a model-label filter): the pager then says only whether more pages follow."""
    if f.label_name and f.label_source == "model":
        return None
    capped = (_with_reference(select(Image.id), f, "").where(*_browse_where(f, _label_ids(session, f)))
              .limit(cap + 1).subquery())
    return session.scalar(select(func.count()).select_from(capped)) or 0


def _label_ids(session: Session, f: BrowseFilter) -> list[int]:
    """Label ids of the filter's label name, as literals (the planner then uses the indexes)."""
    if not f.label_name or f.label_name == UNLABELED:
        return []
    query = select(Label.id).where(Label.name == f.label_name)
    if f.plot_type_ids:  # only the chosen plot types' label: a tighter range for the planner
        query = query.where(Label.plot_type_id.in_(f.plot_type_ids))
    return list(session.scalars(query))
