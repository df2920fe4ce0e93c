"""The Keeper: what the pages show after a chunk is classified.

For every new inference: a keep decision (bad | novel | unconfirmed | a deterministic collect percentage)
with a copy in the kept folder and the image's place in the Labeler queue; the Run page's run-time row of
each plot type moved to its newest image; an alarm for each confirmed Bad of a live chunk (a backfill of
old runs must not wake the shift crew).  A novel image (unlike the model's training data) is kept for
labeling but raises an alarm only where its plot type enables the novel alarm (`PlotType.novel_alarm`):
by default the model's doubt goes to the experts, not to the shift crew.  Likewise an image unlike its
reference (its reference score, `hydra_assets/references.py`, above the active reference's limit) is kept
as `reference`, with or without a model, and alarms only where `PlotType.reference_alarm` is on; a
confirmed Bad that is also unlike its reference gets one alarm saying both (one alarm per inference).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session, aliased

from hydra_assets.db.engine import HydraDB
from hydra_assets.db.models import (
    Alarm,
    Image,
    Inference,
    KeepDecision,
    Label,
    PlotType,
    ReferenceScore,
    ReferenceSet,
    RunTime,
    Threshold,
    utcnow,
)
from hydra_assets.images import store_file
from hydra_assets.ingest.feeder import USABLE
from hydra_assets.ingest.health import write_resolving_conflicts
from hydra_assets.rules import (
    DEFAULT_THRESHOLD,
    NOVEL_TEXT,
    REFERENCE_TEXT,
    collect_draw,
    is_novel,
    keep_reason,
    queue_priority,
)


@dataclass
class KeepResult:
    run: int
    decided: int = 0
    kept: Counter[str] = field(default_factory=Counter)  # reason -> images
    alarms: int = 0
    run_time: list[str] = field(default_factory=list)  # plot types whose Run page tile moved
    chunks: Counter[tuple[int | None, int | None]] = field(default_factory=Counter)
    duration_ms: float = 0.0


@dataclass(frozen=True)
class _Pending:
    inference_id: int
    image_id: int
    plot_type_id: int
    plot_type: str
    collect_percent: float
    run: int
    chunk: int
    digest: str
    stored_path: str
    status: str
    confirmed: bool
    is_bad: bool
    top_label_id: int | None
    top_label: str | None
    top_weight: float | None
    threshold: float | None
    novelty: float | None
    novelty_limit: float | None
    novel_alarm: bool
    reference_score: float | None = None  # against the plot type's active reference
    reference_limit: float | None = None
    unlike_reference: bool = False
    reference_alarm: bool = False

    @property
    def novel(self) -> bool:
        return self.status == "classified" and is_novel(self.novelty, self.novelty_limit)


def alarm_message(item: _Pending, kind: str) -> str:
    """The alarm in one line, each fact once: plot type, run, chunk, label, and why.

    "CDC_timing run 130000 chunk 9: Bad, weight 1.00 ≥ threshold 0.90" — or, for a novel image,
    "… : unlike the training data (novelty 0.84 > limit 0.31), the model said Good".  Complete on its own:
    a page shows it as it is, without heading it with the same facts again.
    """
    where = f"{item.plot_type} run {item.run} chunk {item.chunk}"
    if kind == "novel":
        return (f"{where}: {NOVEL_TEXT} (novelty {item.novelty:.2f} > limit {item.novelty_limit:.2f}), "
                f"the model said {item.top_label or '?'}") + _also_reference(item)
    if kind == "reference":
        said = f", the model said {item.top_label}" if item.status == "classified" and item.top_label else ""
        return f"{where}: {_reference_fact(item)}{said}"
    threshold = DEFAULT_THRESHOLD if item.threshold is None else item.threshold
    weight = "?" if item.top_weight is None else f"{item.top_weight:.2f}"
    return f"{where}: {item.top_label or 'Bad'}, weight {weight} ≥ threshold {threshold:.2f}" + _also_reference(item)


def _reference_fact(item: _Pending) -> str:
    score = "?" if item.reference_score is None else f"{item.reference_score:.2f}"
    limit = "?" if item.reference_limit is None else f"{item.reference_limit:.2f}"
    return f"{REFERENCE_TEXT} (reference score {score} > limit {limit})"


def _also_reference(item: _Pending) -> str:
    """The reference's word in another kind's alarm (one alarm per inference says every reason)."""
    return f"; also {_reference_fact(item)}" if item.unlike_reference and item.reference_alarm else ""


def pending_decisions(session: Session, run: int, digests: Collection[str] | None) -> list[_Pending]:
    """Inferences of run `run` (in scope) that have no keep decision yet."""
    top = aliased(Label)
    query = (
        select(Inference.id, Image.id, Image.plot_type_id, PlotType.name, PlotType.collect_percent, Image.run_number,
               Image.chunk, Image.digest, Image.stored_path, Inference.status, Inference.confirmed, Inference.is_bad,
               Inference.top_label_id, top.name, Inference.top_weight, Threshold.value, Inference.novelty,
               Inference.novelty_limit, PlotType.novel_alarm, ReferenceScore.score, ReferenceScore.score_limit,
               func.coalesce(ReferenceScore.flagged, False), PlotType.reference_alarm)
        .join(Image, Image.id == Inference.image_id)
        .join(PlotType, PlotType.id == Image.plot_type_id)
        .outerjoin(top, top.id == Inference.top_label_id)
        .outerjoin(Threshold, (Threshold.model_id == Inference.model_id)
                   & (Threshold.label_id == Inference.top_label_id))
        # the score against the plot type's active reference (one active version per plot type)
        .outerjoin(ReferenceSet, (ReferenceSet.plot_type_id == Image.plot_type_id) & ReferenceSet.active.is_(True))
        .outerjoin(ReferenceScore, (ReferenceScore.image_id == Image.id)
                   & (ReferenceScore.reference_id == ReferenceSet.id) & (ReferenceScore.status == "scored"))
        .outerjoin(KeepDecision, KeepDecision.inference_id == Inference.id)
        .where(Inference.run_number == run, KeepDecision.id.is_(None), Image.status.in_(USABLE))
        .order_by(Inference.id)
    )
    if digests is not None:
        if not digests:
            return []
        query = query.where(Image.digest.in_(list(set(digests))))
    return [_Pending(*row[:-1], reference_alarm=bool(row[-1])) for row in session.execute(query)]


def alarm_kind(item: _Pending) -> str | None:
    """"bad" for a confirmed Bad, "novel" for a novel image where the plot type asks for it, "reference" for
    an image unlike its reference where the plot type asks for it (with or without a model), else None."""
    if item.status == "classified":
        if item.is_bad and item.confirmed:
            return "bad"
        if item.novel and item.novel_alarm:
            return "novel"
    if item.unlike_reference and item.reference_alarm:
        return "reference"
    return None


def kept_name(item: _Pending) -> str:
    return f"{item.plot_type}/{item.run}/{Path(item.stored_path).name}"


def keep_run(
    db: HydraDB,
    config_kept_dir: Path,
    run: int,
    digests: Collection[str] | None,
    *,
    seed: int,
    live: bool,
    dagster_run_id: str = "",
) -> KeepResult:
    """Decide, copy, queue, alarm and update the Run page for the new inferences of run `run`."""
    started = time.perf_counter()
    with db.read() as s:
        pending = pending_decisions(s, run, digests)
    result = KeepResult(run=run)
    decisions: dict[int, tuple[str | None, str | None]] = {}
    for item in pending:
        reason = keep_reason(item.status, confirmed=item.confirmed, is_bad=item.is_bad,
                             collect_percent=item.collect_percent, draw=collect_draw(item.digest, seed),
                             novel=item.novel, unlike_reference=bool(item.unlike_reference))
        kept_path = None
        if reason is not None:
            try:
                kept_path = str(store_file(Path(item.stored_path), config_kept_dir, kept_name(item)))
            except FileNotFoundError:
                kept_path = None  # the decision stands; the Labeler reads the stored image anyway
        decisions[item.inference_id] = (reason, kept_path)
        result.chunks[(item.plot_type_id, item.chunk)] += 1
    per_image_ms = (time.perf_counter() - started) * 1000 / max(len(pending), 1)

    def work(session: Session) -> tuple[int, Counter[str], int, list[str]]:
        """Every row of the chunk in one statement per table (executemany), not an ORM object per image: a
        Hall brings 80 plot types per chunk, a burst thousands of images per run."""
        done = set(session.scalars(select(KeepDecision.inference_id).where(
            KeepDecision.inference_id.in_(list(decisions)))))
        alarmed = set(session.scalars(select(Alarm.inference_id).where(Alarm.inference_id.in_(list(decisions)))))
        priorities = dict(session.execute(select(Image.id, Image.queue_priority).where(
            Image.id.in_({item.image_id for item in pending}))).tuples().all())
        tiles = {r.plot_type_id: r for r in session.scalars(select(RunTime).where(
            RunTime.plot_type_id.in_({item.plot_type_id for item in pending})))}
        kept: Counter[str] = Counter()
        decided = alarms = 0
        latest: dict[int, _Pending] = {}
        new_decisions: list[dict] = []
        new_alarms: list[dict] = []
        now = utcnow()
        for item in pending:
            previous = latest.get(item.plot_type_id)
            if previous is None or (item.run, item.chunk, item.image_id, item.inference_id) > (
                    previous.run, previous.chunk, previous.image_id, previous.inference_id):
                latest[item.plot_type_id] = item
            if item.inference_id in done:
                continue
            done.add(item.inference_id)
            reason, kept_path = decisions[item.inference_id]
            new_decisions.append(dict(inference_id=item.inference_id, image_id=item.image_id, keep=reason is not None,
                                      reason=reason, kept_path=kept_path, decided_at=now))
            decided += 1
            if reason:
                kept[reason] += 1
                priorities[item.image_id] = queue_priority(reason, priorities.get(item.image_id))
            kind = alarm_kind(item)
            if live and kind is not None and item.inference_id not in alarmed:
                alarmed.add(item.inference_id)
                new_alarms.append(dict(inference_id=item.inference_id, image_id=item.image_id,
                                       plot_type_id=item.plot_type_id, label_id=item.top_label_id, kind=kind,
                                       message=alarm_message(item, kind), raised_at=now))
                alarms += 1
        if new_decisions:
            session.execute(insert(KeepDecision), new_decisions)
            session.execute(update(Inference), [{"id": d["inference_id"], "keep_ms": round(per_image_ms, 3)}
                                                for d in new_decisions])
            queued = [{"id": d["image_id"], "queue_priority": priorities[d["image_id"]]}
                      for d in new_decisions if d["reason"]]
            if queued:
                session.execute(update(Image), queued)
        if new_alarms:
            session.execute(insert(Alarm), new_alarms)
        moved = [item.plot_type for item in latest.values() if _move_run_time(session, item, tiles.get(item.plot_type_id))]
        session.flush()
        return decided, kept, alarms, moved

    if pending:
        result.decided, result.kept, result.alarms, result.run_time = write_resolving_conflicts(
            db, work, what="keep decisions")
    result.duration_ms = (time.perf_counter() - started) * 1000
    return result


def _move_run_time(session: Session, item: _Pending, row: RunTime | None) -> bool:
    """Point the plot type's Run page tile at this image unless it already shows a newer one."""
    if row is None:
        session.add(RunTime(plot_type_id=item.plot_type_id, image_id=item.image_id, inference_id=item.inference_id,
                            run_number=item.run, chunk=item.chunk, updated_at=utcnow()))
        return True
    if row.image_id == item.image_id:
        if row.inference_id != item.inference_id:  # re-classified (backfill with a new model)
            row.inference_id, row.updated_at = item.inference_id, utcnow()
            return True
        return False
    if (item.run, item.chunk, item.image_id) < (row.run_number, row.chunk, row.image_id):
        return False  # an old run's backfill never hides the live image
    row.image_id, row.inference_id, row.run_number, row.chunk, row.updated_at = (
        item.image_id, item.inference_id, item.run, item.chunk, utcnow())
    return True
