"""One evaluation of the file sensor, as a plain function: the Dagster sensor only translates its outcome.

Per tick: list the incoming folder, quarantine what can never be ingested (bad names, unknown plot types,
symlinks, abandoned temporary files, bytes already registered), hash the ready files, and plan one run per
run number.  Nothing here raises because of a file: a bad file is a quarantine row with its reason.
"""

from __future__ import annotations

import re
import time
from collections import Counter, defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select

from hydra_assets.db.engine import HydraDB
from hydra_assets.db.models import Image, PlotType
from hydra_assets.images import file_digest
from hydra_assets.ingest.feeder import USABLE
from hydra_assets.ingest.health import beat, write_resolving_conflicts
from hydra_assets.ingest.quarantine import QuarantineItem, db_text, landed_at, quarantine_files, same_landing
from hydra_assets.ingest.scan import (
    FINGERPRINT_CHARS,
    MAX_PENDING,
    ReadyFile,
    RunPlan,
    Seen,
    SensorCursor,
    fit_tick,
    list_incoming,
    plan_runs,
    select_runs,
    triage,
)
from hydra_assets.naming import BadFileName, parse_image_name
from hydra_assets.settings import HydraSettings


@dataclass
class TickOutcome:
    plans: list[RunPlan] = field(default_factory=list)
    cursor: str = ""
    quarantined: list[tuple[str, str]] = field(default_factory=list)
    duplicates: int = 0
    waiting: int = 0
    pending: int = 0
    deferred: int = 0
    backlog_full: bool = False
    duration_ms: float = 0.0

    @property
    def files(self) -> int:
        return sum(len(p.files) for p in self.plans)

    def summary(self) -> str:
        parts = [f"{len(self.plans)} run(s), {self.files} file(s) requested" if self.plans else "no new files"]
        if self.quarantined:
            parts.append(f"{len(self.quarantined)} quarantined")
        if self.waiting:
            parts.append(f"{self.waiting} still being written")
        if self.pending:
            parts.append(f"{self.pending} waiting for their run")
        if self.deferred:
            parts.append(f"{self.deferred} deferred to the next tick")
        if self.backlog_full:
            parts.append("backlog full: waiting for runs to drain the folder")
        return "; ".join(parts)


def _hash_ready(chosen: dict[int, list]) -> dict[int, list[ReadyFile]]:
    ready: dict[int, list[ReadyFile]] = defaultdict(list)
    for run, items in chosen.items():
        for seen, name in items:
            try:
                ready[run].append(ReadyFile(seen, name, file_digest(seen.path)))
            except OSError:
                continue  # vanished or unreadable right now: seen again next tick
    return ready


# A run number with this many requested files still waiting in the folder (a run queued, not yet fed) gets
# only full runs: the rest of its files wait a tick and ride in a bigger run.  Runs then grow with the
# backlog (up to ~400 files) instead of carrying a tick's worth each, and Dagster's cost per run (2-4 s on
# 2 busy cores from dequeue to the last step's events, bench/ingest.py --parts rate) is shared by more
# images.  At 400 (a full run queued) a 20-images/s load still queued 100-file runs and fell behind.
HOLD_PARTIAL_PENDING = 100


def split_runs(ready: dict[int, list[ReadyFile]], *, max_runs: int, hold_partial: Collection[int] = ()
               ) -> tuple[list[RunPlan], list[ReadyFile]]:
    """The tick's plans: a run number's files beyond one run config's budget (`plan_runs`, ~400 files) fill
    further runs of the same tick, at most `max_runs` in all, instead of waiting a tick each (a burst of
    1,000 files of one run number took five ticks).  They are queued at once and run one after the other
    (one run per partition at a time, dagster.yaml).  For run numbers in `hold_partial` a last plan that is
    not full waits.  Files left over wait for the next tick."""
    plans: list[RunPlan] = []
    deferred: list[ReadyFile] = []
    for run, files in ready.items():
        rest = list(files)
        while rest and len(plans) < max_runs:
            made, over = plan_runs({run: rest})
            if run in hold_partial and not over:  # the last, partial plan of a run number with a queue
                break
            plans += made
            rest = over
        deferred += rest
    return plans, deferred


def pending_by_run(seen: Collection[Seen], pending: Collection[str], regex: re.Pattern[str]) -> Counter[int]:
    """Requested files still waiting in the folder, per run number (from their names)."""
    waiting: Counter[int] = Counter()
    for item in seen:
        if item.fingerprint in pending:
            try:
                waiting[parse_image_name(item.name, regex).run] += 1
            except BadFileName:
                continue
    return waiting


def evaluate_tick(
    db: HydraDB,
    config: HydraSettings,
    cursor_text: str | None,
    *,
    now_ns: int | None = None,
    max_pending: int = MAX_PENDING,
    max_tick_chars: int | None = None,
) -> TickOutcome:
    """Decide what this tick requests and quarantines; returns the plans and the next cursor."""
    started = time.perf_counter()
    now_ns = time.time_ns() if now_ns is None else now_ns
    cursor = SensorCursor.decode(cursor_text)
    seen = list_incoming(config.input_dir)
    with db.read() as s:
        plot_types = {name: (pid, enabled) for pid, name, enabled in s.execute(
            select(PlotType.id, PlotType.name, PlotType.enabled))}
    sorted_out = triage(seen, now_ns=now_ns, min_age_s=config.min_file_age_seconds, regex=config.file_regex,
                        plot_types={name: enabled for name, (_, enabled) in plot_types.items()},
                        pending=cursor.pending)
    outcome = TickOutcome(waiting=sorted_out.waiting, pending=sorted_out.pending)
    rejects = [QuarantineItem(r.seen.path, r.reason, r.name, None) for r in sorted_out.rejected]

    room = max_pending - sorted_out.pending
    outcome.backlog_full = room <= 0 and bool(sorted_out.candidates)
    chosen = select_runs(sorted_out.candidates, max_runs=config.max_runs_per_tick,
                         max_files_per_run=config.max_files_per_run) if room > 0 else {}
    # within the backlog room, oldest runs first
    trimmed, budget = {}, room
    for run, items in chosen.items():
        if budget <= 0:
            break
        trimmed[run] = items[:budget]
        budget -= len(trimmed[run])
    ready = _hash_ready(trimmed)

    digests = {f.digest for files in ready.values() for f in files}
    registered: dict[tuple[int, int, int, str], tuple[int, str, datetime]] = {}
    if digests:
        with db.read() as s:
            for image_id, pid, run, chunk, digest, name, received in s.execute(
                    select(Image.id, Image.plot_type_id, Image.run_number, Image.chunk, Image.digest, Image.file_name,
                           Image.received_at)
                    .where(Image.digest.in_(list(digests)), Image.status.in_(USABLE))):
                registered[(pid, run, chunk, digest)] = (image_id, name, received)
    fresh: dict[int, list[ReadyFile]] = {}
    for run, files in ready.items():
        keep = []
        for f in files:
            pid = plot_types[f.name.plot_type][0]
            existing = registered.get((pid, run, f.name.chunk, f.digest))
            if existing is None:
                keep.append(f)
                continue
            image_id, name, received = existing
            try:
                landed = landed_at(f.seen.path.lstat())
            except FileNotFoundError:
                continue  # taken meanwhile
            if name == db_text(f.seen.name) and same_landing(landed, received):
                f.seen.path.unlink(missing_ok=True)  # registered by a run that died before removing it
                continue
            rejects.append(QuarantineItem(
                f.seen.path, f"duplicate: the same bytes are already registered as image {image_id} "
                             f"({f.name.plot_type}, run {run}, chunk {f.name.chunk})", f.name, pid, f.digest))
            outcome.duplicates += 1
        if keep:
            fresh[run] = keep

    queued = pending_by_run(seen, cursor.pending, config.file_regex)
    outcome.plans, deferred = split_runs(
        fresh, max_runs=config.max_runs_per_tick,
        hold_partial={run for run, files in queued.items() if files >= HOLD_PARTIAL_PENDING})
    if max_tick_chars is not None:  # Dagster's MySQL storage keeps the tick with its run requests in 64 KiB
        outcome.plans, over = fit_tick(outcome.plans, cursor_chars=FINGERPRINT_CHARS * sorted_out.pending + 40,
                                       max_chars=max_tick_chars)
        deferred += over
    outcome.deferred = len(deferred) + len(sorted_out.candidates) - sum(len(v) for v in trimmed.values())
    outcome.quarantined = [(item.path.name, item.reason) for item, _ in quarantine_files(db, config, rejects)]
    requested = [f.seen.fingerprint for plan in outcome.plans for f in plan.files]
    outcome.cursor = cursor.advance(present=[s.fingerprint for s in seen], requested=requested).encode()
    outcome.duration_ms = (time.perf_counter() - started) * 1000
    write_resolving_conflicts(db, lambda s: beat(s, "sensor", outcome.summary()), what="sensor heartbeat")
    return outcome

