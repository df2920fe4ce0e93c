"""Which runs' flags a human label changed: what the `label_changes` sensor asks to recompute.

The sensor's cursor is the last `label_history.id` it handled; each tick reads the newer rows (at most
`limit`, so a bulk import is spread over ticks) and turns them into the run numbers of their images.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hydra_assets.db.models import Image, LabelHistory


@dataclass(frozen=True)
class Relabeled:
    """The runs whose images got new labels after `after_id`, up to label_history id `last_id`."""

    runs: tuple[int, ...]
    last_id: int
    labels: int


def parse_cursor(cursor: str | None) -> int:
    """The last label_history id handled; a missing or unreadable cursor starts from now (see `start_id`)."""
    try:
        return int(cursor) if cursor else -1
    except ValueError:
        return -1


def start_id(session: Session) -> int:
    """Where a sensor without a cursor starts: the newest label so far (old labels were flagged already)."""
    return int(session.scalar(select(func.max(LabelHistory.id))) or 0)


def relabeled_runs(session: Session, after_id: int, *, limit: int = 5000, max_runs: int = 100) -> Relabeled:
    """Run numbers of images labeled (or unlabeled) after label_history id `after_id`, oldest first.

    At most `max_runs` runs per tick (a tick with thousands of run keys does not fit Dagster's MySQL tick
    row): `last_id` stops before the first label of a run beyond them, so the next tick carries on there."""
    rows = session.execute(
        select(LabelHistory.id, Image.run_number).join(Image, Image.id == LabelHistory.image_id)
        .where(LabelHistory.id > after_id).order_by(LabelHistory.id).limit(limit)
    ).all()
    runs: set[int] = set()
    last_id, labels = after_id, 0
    for label_id, run in rows:
        if run is not None and int(run) not in runs:
            if len(runs) == max_runs:
                break
            runs.add(int(run))
        last_id, labels = int(label_id), labels + 1
    return Relabeled(tuple(sorted(runs)), last_id, labels)
