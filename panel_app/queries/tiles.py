"""Images as tiles for the Labeler (queue and editor, keyset-paginated) and the Plot Browser."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from hydra_assets.db.models import Image, Inference, KeepDecision
from panel_app.views_data import Tile


def queue_counts(session: Session, plot_type_ids: Sequence[int]) -> dict[int, int]:
    """How many queued, unlabeled images each plot type has (one range of `ix_images_labeler_queue` each)."""
    if not plot_type_ids:
        return {}
    rows = session.execute(
        select(Image.plot_type_id, func.count())
        .where(Image.plot_type_id.in_(list(plot_type_ids)), Image.label_id.is_(None), Image.queue_priority.is_not(None))
        .group_by(Image.plot_type_id)
    )
    counts = dict.fromkeys(plot_type_ids, 0)
    counts.update({plot_type_id: int(n) for plot_type_id, n in rows})
    return counts


TILE_COLUMNS = (Image.id, Image.plot_type_id, Image.run_number, Image.chunk, Image.received_at, Image.label_id,
                 Image.labeled_at, Image.queue_priority)


def as_tiles(rows: Iterable[Sequence[Any]]) -> list[Tile]:
    return [Tile(*r) for r in rows]


def labeler_queue(
    session: Session, plot_type_id: int, *, limit: int = 100, after: tuple[int, int] | None = None
) -> list[Tile]:
    """The next unlabeled queued images: unconfirmed and Bad (priority 0) first, then collected, by id."""
    query = (
        select(*TILE_COLUMNS)
        .where(Image.plot_type_id == plot_type_id, Image.label_id.is_(None), Image.queue_priority.is_not(None))
        .order_by(Image.queue_priority, Image.id)
        .limit(limit)
    )
    if after is not None:
        priority, image_id = after
        query = query.where(
            or_(Image.queue_priority > priority, and_(Image.queue_priority == priority, Image.id > image_id))
        )
    return attach_inferences(session, as_tiles(session.execute(query)))


def editor_page(
    session: Session,
    plot_type_id: int,
    label_ids: Sequence[int],
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    before: tuple[datetime, int] | None = None,
    limit: int = 100,
) -> list[Tile]:
    """Labeled images, newest label first, keyset-paginated on (labeled_at, id) below `before`.

    One index range of `ix_images_editor` per label, merged — so "any label" costs k small reads, never a
    sort of every labeled image.
    """
    per_label: list[list[tuple[datetime, int]]] = []
    for label_id in label_ids:
        # (labeled_at, id) straight from ix_images_editor: no row is read until the page is known
        query = (
            select(Image.labeled_at, Image.id)
            .where(Image.plot_type_id == plot_type_id, Image.label_id == label_id, Image.labeled_at.is_not(None))
            .order_by(Image.labeled_at.desc(), Image.id.desc())
            .limit(limit)
        )
        if start is not None:
            query = query.where(Image.labeled_at >= start)
        if end is not None:
            query = query.where(Image.labeled_at <= end)
        if before is not None:
            at, image_id = before
            query = query.where(or_(Image.labeled_at < at, and_(Image.labeled_at == at, Image.id < image_id)))
        per_label.append([(r[0], r[1]) for r in session.execute(query)])
    keys = list(heapq.merge(*per_label, reverse=True))[:limit]
    return attach_inferences(session, _tiles_by_id(session, [image_id for _at, image_id in keys]))


def attach_inferences(session: Session, tiles: list[Tile]) -> list[Tile]:
    """Fill in each tile's model label from its latest classification, and the keep reason stored for it.

    First the covering index `uq_inference_image_model` (image_id, model_key, id) names every image's
    classifications without reading rows; then only the newest one per image (highest id) is read.  An image
    re-classified by ten model versions costs one row read, not ten.
    """
    if not tiles:
        return tiles
    by_id = {t.image_id: t for t in tiles}
    latest: dict[int, int] = {}
    for image_id, inference_id in session.execute(
        select(Inference.image_id, Inference.id).where(Inference.image_id.in_(list(by_id)))
    ):
        if inference_id > latest.get(image_id, 0):
            latest[image_id] = inference_id
    if not latest:
        return tiles
    rows = session.execute(
        select(Inference.image_id, Inference.top_label_id, Inference.top_weight, KeepDecision.reason,
               Inference.gradcam_path.is_not(None))
        .outerjoin(KeepDecision, KeepDecision.inference_id == Inference.id)
        .where(Inference.id.in_(list(latest.values())))
    )
    for image_id, label_id, weight, reason, gradcam in rows:
        tile = by_id[image_id]
        tile.model_label_id, tile.model_weight, tile.keep_reason, tile.gradcam = label_id, weight, reason, gradcam
    return tiles


def tiles_of(session: Session, ids: Sequence[int]) -> list[Tile]:
    """Tiles of the given images in the given order, with their latest classification (a suggestion's queue)."""
    return attach_inferences(session, _tiles_by_id(session, ids))


def _tiles_by_id(session: Session, ids: Sequence[int]) -> list[Tile]:
    """Tiles of the given images, in the given order."""
    if not ids:
        return []
    found = {t.image_id: t for t in as_tiles(session.execute(select(*TILE_COLUMNS).where(Image.id.in_(list(ids)))))}
    return [found[i] for i in ids if i in found]
