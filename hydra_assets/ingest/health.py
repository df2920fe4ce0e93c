"""Signs of life for the Status page: heartbeats of each stage and per-chunk stage timings.

Also the one retry the pipeline needs beyond `HydraDB.write`: two runs of the same run number (a live
chunk and a backfill) may insert the same unique row at once; the loser runs its whole transaction again
and then finds the row.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hydra_assets.db.engine import HydraDB
from hydra_assets.db.models import Heartbeat, StageTiming, utcnow

log = logging.getLogger(__name__)
STAGES = ("sensor", "feeder", "predict", "keeper")


def write_resolving_conflicts[T](db: HydraDB, work: Callable[[Session], T], *, what: str, attempts: int = 4) -> T:
    """`db.write(work)`, running it again when a concurrent writer inserted a unique row first."""
    for attempt in range(1, attempts + 1):
        try:
            return db.write(work, what=what)
        except IntegrityError:
            if attempt == attempts:
                raise
            log.info("%s met a concurrent insert; running the transaction again", what)
            time.sleep(0.05 * attempt)
    raise AssertionError("unreachable")


def beat(session: Session, stage: str, detail: str = "") -> None:
    """Upsert the stage's heartbeat in the caller's transaction."""
    row = session.get(Heartbeat, stage)
    if row is None:
        session.add(Heartbeat(stage=stage, beat_at=utcnow(), detail=detail[:2000]))
    else:
        row.beat_at, row.detail = utcnow(), detail[:2000]
    session.flush()


def heartbeat(db: HydraDB, stage: str, detail: str = "") -> None:
    write_resolving_conflicts(db, lambda s: beat(s, stage, detail), what=f"{stage} heartbeat")


def record_timings(
    session: Session,
    stage: str,
    *,
    run: int,
    chunks: Mapping[tuple[int | None, int | None], int],
    started_at: datetime,
    duration_ms: float,
    dagster_run_id: str,
    status: str = "ok",
) -> None:
    """One `stage_timings` row per (plot type, chunk), the stage's time shared by image count.

    A run may carry several chunks; a stage batches them (Predict per plot type), so each chunk gets the
    share of the batch its images took.
    """
    finished = utcnow()
    total = sum(chunks.values()) or 1
    if not chunks:
        chunks = {(None, None): 0}
    for (plot_type_id, chunk), count in chunks.items():
        share = duration_ms * (count / total if total else 1.0) if len(chunks) > 1 else duration_ms
        session.add(StageTiming(
            stage=stage, plot_type_id=plot_type_id, run_number=run, chunk=chunk, image_count=count,
            started_at=started_at, finished_at=finished, duration_ms=round(share, 3), status=status,
            dagster_run_id=dagster_run_id,
        ))
    session.flush()
