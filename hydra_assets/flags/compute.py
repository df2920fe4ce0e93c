"""Compute and store a run's flags: what the `run_flags` asset, the label sensor's job and `hydra flags
compute` run.

Reads what is known about every image of the run (human label, newest classification, alarms, reference
score) in a few set queries, hands it to the pure rules (`flags.rules`), and replaces the run's `run_flags`
rows in one transaction, so a page never sees half a run and running it twice changes nothing.  It also
keeps the run's `chunk_count` and `alarm_count` up to date for the Runs page.  Sign-offs are not touched.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from hydra_assets.db.engine import HydraDB
from hydra_assets.db.models import (
    Alarm,
    FlagRule,
    Image,
    Inference,
    Label,
    PlotGroup,
    PlotType,
    PlotTypeGrouping,
    ReferenceScore,
    Run,
    RunFlag,
    SuperGroup,
    utcnow,
)
from hydra_assets.flags.rules import (
    FlagRange,
    FlagRuleSpec,
    ImageEvidence,
    RunGroups,
    run_flag_ranges,
)

IMAGE_STATUSES = ("registered", "labeled_import")  # quarantined files carry no verdict


@dataclass(frozen=True)
class ComputeResult:
    """What one computation stored, for the asset's metadata and `hydra flags compute`."""

    run: int
    chunks: int
    images: int
    alarms: int
    rows: int
    flags: dict[str, int]  # flag -> number of ranges
    read_ms: float
    rules_ms: float
    write_ms: float


def rule_spec(row: FlagRule) -> FlagRuleSpec:
    return FlagRuleSpec(rule=row.rule, bad_share=row.bad_share, medium_share=row.medium_share,
                        consecutive=row.consecutive, ignore_labels=frozenset(row.ignore_labels or ()))


def run_groups(session: Session) -> RunGroups:
    """Every plot group with its plot types, every super group with its groups, and the configured rules."""
    plot_types = dict(session.execute(select(PlotType.id, PlotType.name)).tuples().all())
    groups: dict[str, list[str]] = {}
    names: dict[int, str] = {}
    super_of: dict[str, int | None] = {}
    for group_id, name, super_id in session.execute(select(PlotGroup.id, PlotGroup.name, PlotGroup.super_group_id)):
        groups[name], names[group_id], super_of[name] = [], name, super_id
    for group_id, plot_type_id in session.execute(select(PlotTypeGrouping.plot_group_id,
                                                         PlotTypeGrouping.plot_type_id)):
        if group_id in names and plot_type_id in plot_types:
            groups[names[group_id]].append(plot_types[plot_type_id])
    super_names = dict(session.execute(select(SuperGroup.id, SuperGroup.name)).tuples().all())
    super_groups: dict[str, list[str]] = {name: [] for name in super_names.values()}
    for group, super_id in super_of.items():
        if super_id in super_names:
            super_groups[super_names[super_id]].append(group)
    rules = {(row.scope, row.group_name): rule_spec(row) for row in session.scalars(select(FlagRule))}
    return RunGroups(groups=groups, super_groups=super_groups, rules=rules)


def run_evidence(session: Session, run: int) -> tuple[list[ImageEvidence], int]:
    """Every image of the run as the rules need it, and the number of the run's alarms.

    Core queries on the session's connection (no ORM rows): a run of 80 k images is read in a few hundred
    milliseconds (bench/flags.py)."""
    connection = session.connection()
    plot_types = dict(connection.execute(select(PlotType.id, PlotType.name)).tuples().all())
    labels = {lid: (name, bool(bad)) for lid, name, bad in connection.execute(
        select(Label.id, Label.name, Label.is_bad))}
    images = connection.execute(
        select(Image.id, Image.plot_type_id, Image.chunk, Image.label_id)
        .where(Image.run_number == run, Image.status.in_(IMAGE_STATUSES), Image.plot_type_id.is_not(None),
               Image.chunk.is_not(None))
    ).tuples().all()
    # each image's newest classification: ordered by id, a later one replaces an earlier one (plain range
    # scans on ix_inferences_run; MariaDB ran a join against a GROUP BY derived table for minutes)
    inferences = {image_id: rest for image_id, *rest in connection.execute(
        select(Inference.image_id, Inference.status, Inference.confirmed, Inference.is_bad, Inference.top_label_id)
        .where(Inference.run_number == run).order_by(Inference.id))}
    alarms: dict[int, list[tuple[int, str]]] = defaultdict(list)
    alarm_count = 0
    for alarm_id, image_id, kind in connection.execute(
            select(Alarm.id, Alarm.image_id, Alarm.kind).join(Image, Image.id == Alarm.image_id)
            .where(Image.run_number == run)):
        alarms[image_id].append((alarm_id, kind))
        alarm_count += 1
    newest_score = dict(connection.execute(  # each image's newest reference score: later ids replace earlier
        select(ReferenceScore.image_id, ReferenceScore.flagged).where(ReferenceScore.run_number == run)
        .order_by(ReferenceScore.id)).tuples().all())
    reference_flagged = {image_id for image_id, flagged in newest_score.items() if flagged}
    evidence = []
    no_label = (None, False)
    unclassified = (None, False, False, None)
    for image_id, plot_type_id, chunk, label_id in images:
        status, confirmed, is_bad, top_label_id = inferences.get(image_id, unclassified)
        human_label, human_bad = labels.get(label_id, no_label) if label_id is not None else no_label
        judged = status == "classified"
        model_label = labels.get(top_label_id, no_label)[0] if judged and top_label_id is not None else None
        image_alarms = alarms.get(image_id)
        evidence.append(ImageEvidence(
            plot_types.get(plot_type_id) or str(plot_type_id), int(chunk), human_label, human_bad, model_label,
            judged, bool(judged and confirmed), bool(judged and is_bad),
            tuple(image_alarms) if image_alarms else (), image_id in reference_flagged))
    return evidence, alarm_count


def store_flags(session: Session, run: int, ranges: dict[tuple[str, str], list[FlagRange]], *,
                chunks: int, alarms: int) -> int:
    """Replace the run's computed rows (sign-offs untouched) and its counts; returns the rows written.

    The run's row is locked first, so two chunk jobs of one run finishing together write one after the
    other (each deleting what the other wrote) instead of leaving both sets of rows."""
    session.execute(select(Run.number).where(Run.number == run).with_for_update())
    session.execute(delete(RunFlag).where(RunFlag.run_number == run))
    now = utcnow()
    rows = [{"run_number": run, "scope": scope, "group_name": group, "first_chunk": r.first_chunk,
             "last_chunk": r.last_chunk, "flag": r.flag, "reasons": list(r.reasons), "computed_at": now}
            for (scope, group), flag_ranges in sorted(ranges.items()) for r in flag_ranges]
    if rows:
        session.execute(RunFlag.__table__.insert(), rows)
    session.execute(update(Run).where(Run.number == run).values(chunk_count=chunks, alarm_count=alarms))
    return len(rows)


def compute_run_flags(db: HydraDB, run: int) -> ComputeResult:
    """Compute every group's and super group's flags of `run` and store them (idempotent)."""
    started = time.perf_counter()
    with db.read() as session:
        groups = run_groups(session)
        evidence, alarm_count = run_evidence(session, run)
        session.rollback()  # hand the connection back clean (no open read transaction holding locks)
    read_done = time.perf_counter()
    chunks = sorted({e.chunk for e in evidence})
    ranges = run_flag_ranges(evidence, groups, chunks)
    rules_done = time.perf_counter()
    rows = db.write(lambda s: store_flags(s, run, ranges, chunks=len(chunks), alarms=alarm_count),
                    what=f"run {run} flags")
    write_done = time.perf_counter()
    counts: dict[str, int] = defaultdict(int)
    for flag_ranges in ranges.values():
        for r in flag_ranges:
            counts[r.flag] += 1
    return ComputeResult(run=run, chunks=len(chunks), images=len(evidence), alarms=alarm_count, rows=rows,
                         flags=dict(counts), read_ms=(read_done - started) * 1000,
                         rules_ms=(rules_done - read_done) * 1000, write_ms=(write_done - rules_done) * 1000)
