"""Human labels: every labeling action kept with who, when and the label it replaced, and undone the same way."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hydra_assets.catalog import CatalogError
from hydra_assets.db.models import Image, Label, LabelHistory, utcnow

UNDO_SOURCE = "labeler_undo"


@dataclass(frozen=True)
class LabelChange:
    """One image's label before and after an Apply: what an undo puts back (the queue place included)."""

    image_id: int
    label_id: int | None
    previous_label_id: int | None
    previous_labeled_at: datetime | None
    previous_labeled_by: int | None
    previous_priority: int | None


def apply_labels(
    session: Session, painted: Mapping[int, int | None], *, user_id: int | None, source: str = "labeler",
    changes: list[LabelChange] | None = None,
) -> int:
    """Store painted labels (image id → label id, None erases) in the caller's transaction.

    Refuses a label that does not belong to the image's plot type. Returns how many images changed; each
    change is appended to `changes` when given, so the Labeler can undo it.
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
        if changes is not None:
            changes.append(LabelChange(image_id, label_id, image.label_id, image.labeled_at, image.labeled_by,
                                       image.queue_priority))
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


def undo_labels(session: Session, changes: Sequence[LabelChange], *, user_id: int | None) -> tuple[int, int]:
    """Put back what an Apply replaced: label, who and when, and the image's place in the queue.

    An image whose label someone changed since is left alone (their label wins). Each undo is a history row
    (source `labeler_undo`), so the audit trail shows the label, its undo and who did both.  Returns
    (undone, left alone).
    """
    if not changes:
        return 0, 0
    images = {i.id: i for i in session.scalars(select(Image).where(Image.id.in_([c.image_id for c in changes])))}
    now, undone, skipped = utcnow(), 0, 0
    for change in changes:
        image = images.get(change.image_id)
        if image is None or image.label_id != change.label_id:
            skipped += 1
            continue
        session.add(LabelHistory(image_id=image.id, label_id=change.previous_label_id, previous_label_id=image.label_id,
                                 user_id=user_id, labeled_at=now, source=UNDO_SOURCE))
        image.label_id, image.labeled_at, image.labeled_by = (change.previous_label_id, change.previous_labeled_at,
                                                              change.previous_labeled_by)
        image.queue_priority = change.previous_priority
        undone += 1
    session.flush()
    return undone, skipped


def labels_since(session: Session, user_id: int, since: datetime) -> int:
    """How many labels a user stored since `since` (Labeler: "you labeled N today"); undos take theirs back."""
    rows = dict(session.execute(
        select(LabelHistory.source, func.count()).where(LabelHistory.user_id == user_id,
                                                        LabelHistory.labeled_at >= since)
        .group_by(LabelHistory.source)).all())
    undone = int(rows.pop(UNDO_SOURCE, 0))
    return max(0, sum(int(n) for n in rows.values()) - undone)
