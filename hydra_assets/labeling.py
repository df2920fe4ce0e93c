"""Human labels: every labeling action kept with who, when and the label it replaced."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from hydra_assets.catalog import CatalogError
from hydra_assets.db.models import Image, Label, LabelHistory, utcnow


def apply_labels(
    session: Session, painted: Mapping[int, int | None], *, user_id: int | None, source: str = "labeler"
) -> int:
    """Store painted labels (image id → label id, None erases) in the caller's transaction.

    Refuses a label that does not belong to the image's plot type. Returns how many images changed.
    """
    if not painted:
        return 0
    images = {i.id: i for i in session.scalars(select(Image).where(Image.id.in_(list(painted))))}
    missing = sorted(set(painted) - set(images))
    if missing:
        raise CatalogError(f"unknown image id(s): {missing[:10]}")
    label_ids = {lid for lid in painted.values() if lid is not None}
    labels = {lab.id: lab for lab in session.scalars(select(Label).where(Label.id.in_(label_ids)))}
    now, changed = utcnow(), 0
    for image_id, label_id in painted.items():
        image = images[image_id]
        if label_id is not None:
            label = labels.get(label_id)
            if label is None or label.plot_type_id != image.plot_type_id:
                raise CatalogError(f"label id {label_id} is not a label of image {image_id}'s plot type")
        if image.label_id == label_id:
            continue
        session.add(
            LabelHistory(
                image_id=image_id,
                label_id=label_id,
                previous_label_id=image.label_id,
                user_id=user_id,
                labeled_at=now,
                source=source,
            )
        )
        image.label_id, image.labeled_at, image.labeled_by = label_id, now, user_id
        if label_id is not None:
            image.queue_priority = None  # labeled images leave the queue
        changed += 1
    session.flush()
    return changed
