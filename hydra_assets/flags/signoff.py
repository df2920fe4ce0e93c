"""Run coordinators' sign-offs, and the standing flag that pages and exports read.

A sign-off confirms or overrides a run's computed flag for one group (the whole run, or a chunk range),
with a comment.  Sign-offs are never touched by recomputation: the standing flag of a chunk is the newest
sign-off covering it, else the computed flag (`rules.standing_ranges`).  Every sign-off, and every refused
attempt, is written to the audit log (who, when, before → after).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from hydra_assets.catalog import PermissionDenied, has_permission, record_audit
from hydra_assets.db.engine import HydraDB
from hydra_assets.db.models import FlagSignoff, PlotGroup, RunFlag, SuperGroup
from hydra_assets.flags.rules import ACTIONS, CONFIRM, GROUP, OVERRIDE, FlagError, FlagRange, check_flag, check_scope
from hydra_assets.flags.standing import (
    SignoffView,
    StandingFlag,
    check_ranges,
    standing_flag,
    standing_ranges,
)

PERMISSION = "certify"
AUDIT_ACTION = "sign off flag"


def known_groups(session: Session, scope: str) -> list[str]:
    """The plot groups (or super groups) a rule or sign-off may name."""
    model = PlotGroup if check_scope(scope) == GROUP else SuperGroup
    return list(session.scalars(select(model.name).order_by(model.name)))


def check_group(session: Session, scope: str, group: str) -> str:
    """`group` if it exists in `scope`; otherwise an error naming the known ones."""
    names = known_groups(session, scope)
    if group not in names:
        kind = "plot group" if scope == GROUP else "super group"
        known = ", ".join(names) if names else "none yet (hydra plot-type add … --group NAME)"
        raise FlagError(f"unknown {kind} {group!r}; known {kind}s: {known}")
    return group


def computed_ranges(session: Session, run: int, scope: str, group: str) -> list[FlagRange]:
    rows = session.scalars(select(RunFlag).where(RunFlag.run_number == run, RunFlag.scope == scope,
                                                 RunFlag.group_name == group).order_by(RunFlag.first_chunk))
    return [FlagRange(r.first_chunk, r.last_chunk, r.flag, tuple(r.reasons or ())) for r in rows]


def _view(row: FlagSignoff) -> SignoffView:
    return SignoffView(row.first_chunk, row.last_chunk, row.action, row.flag, row.user_name, row.signed_at,
                       row.comment or "", row.previous_flag)


def signoffs_of(session: Session, run: int, scope: str, group: str) -> list[FlagSignoff]:
    """The sign-offs of one run and group, oldest first (the audit trail)."""
    return list(session.scalars(select(FlagSignoff).where(
        FlagSignoff.run_number == run, FlagSignoff.scope == scope, FlagSignoff.group_name == group,
    ).order_by(FlagSignoff.signed_at, FlagSignoff.id)))


def sign_off(session: Session, run: int, scope: str, group: str, action: str, flag: str | None, comment: str,
             user: str, first_chunk: int | None = None, last_chunk: int | None = None) -> FlagSignoff:
    """Confirm (flag None or the standing flag) or override (flag required) a run's flag for a group.

    Needs the `certify` permission; `previous_flag` is the flag that stood before (the computed one unless
    someone signed before).  The caller's transaction also gets the audit row."""
    check_scope(scope)
    if action not in ACTIONS:
        raise FlagError(f"unknown action {action!r}: use {' or '.join(ACTIONS)}")
    if not has_permission(session, user, PERMISSION):
        raise PermissionDenied(f"user {user or 'anonymous'!r} may not sign off flags (needs {PERMISSION!r})")
    check_group(session, scope, group)
    if (first_chunk is None) != (last_chunk is None):
        raise FlagError("give both the first and the last chunk of the range, or neither (the whole run)")
    computed = computed_ranges(session, run, scope, group)
    if not computed:
        raise FlagError(f"run {run} has no computed flags for {group!r} yet (hydra flags compute {run})")
    if first_chunk is not None and last_chunk is not None:
        check_ranges([(first_chunk, last_chunk)])
        lowest, highest = computed[0].first_chunk, computed[-1].last_chunk
        if first_chunk < lowest or last_chunk > highest:
            raise FlagError(f"chunks {first_chunk}-{last_chunk} are outside run {run}'s chunks {lowest}-{highest}")
    before = [p for p in standing_ranges(computed, [_view(s) for s in signoffs_of(session, run, scope, group)])
              if first_chunk is None or (p.last_chunk >= first_chunk and p.first_chunk <= (last_chunk or 0))]
    previous = {p.standing for p in before}
    if action == CONFIRM:
        if flag is None:
            if len(previous) != 1:
                where = ", ".join(f"{p.first_chunk}-{p.last_chunk} {p.standing}" for p in before)
                raise FlagError(f"run {run} {group!r} has several flags ({where}): confirm one range at a time "
                                "or override with one flag")
            flag = next(iter(previous))
        elif flag not in previous or len(previous) != 1:
            raise FlagError(f"confirm keeps the flag ({', '.join(sorted(previous))}); to set {flag} use override")
    elif flag is None:
        raise FlagError("an override needs the flag to set (Good, Medium, Bad or Null)")
    check_flag(flag)
    if action == OVERRIDE and not comment.strip():
        raise FlagError("an override needs a comment saying why")
    previous_flag = next(iter(previous)) if len(previous) == 1 else "/".join(sorted(previous))[:8]
    row = FlagSignoff(run_number=run, scope=scope, group_name=group, first_chunk=first_chunk, last_chunk=last_chunk,
                      action=action, previous_flag=previous_flag, flag=flag, comment=comment.strip(), user_name=user)
    session.add(row)
    span = "whole run" if first_chunk is None else f"chunks {first_chunk}-{last_chunk}"
    record_audit(session, user, AUDIT_ACTION,
                 detail=f"run {run} {scope} {group!r} {span}: {previous_flag} -> {flag} ({action}); {comment.strip()}")
    session.flush()
    return row


def record_signoff(db: HydraDB, run: int, scope: str, group: str, action: str, flag: str | None, comment: str,
                   user: str, first_chunk: int | None = None, last_chunk: int | None = None) -> FlagSignoff:
    """`sign_off` in its own transaction; a refused attempt is audited too (for the pages and the CLI)."""
    try:
        return db.write(lambda s: sign_off(s, run, scope, group, action, flag, comment, user, first_chunk,
                                           last_chunk), what=AUDIT_ACTION)
    except PermissionDenied as refusal:
        detail = f"{refusal}; run {run} {scope} {group!r}"
        db.write(lambda s: record_audit(s, user or "", AUDIT_ACTION, allowed=False, detail=detail))
        raise


def standing_flags(session: Session, runs: Iterable[int], *, scope: str | None = None,
                   groups: Sequence[str] | None = None) -> list[StandingFlag]:
    """The standing flags of these runs, one per (run, scope, group) with computed flags, in run, scope,
    group order: what the Runs page, `hydra flags show` and the exports read."""
    runs = sorted(set(runs))
    if not runs:
        return []
    flag_query = select(RunFlag).where(RunFlag.run_number.in_(runs))
    signoff_query = select(FlagSignoff).where(FlagSignoff.run_number.in_(runs))
    if scope is not None:
        flag_query = flag_query.where(RunFlag.scope == scope)
        signoff_query = signoff_query.where(FlagSignoff.scope == scope)
    if groups is not None:
        flag_query = flag_query.where(RunFlag.group_name.in_(list(groups)))
        signoff_query = signoff_query.where(FlagSignoff.group_name.in_(list(groups)))
    computed: dict[tuple[int, str, str], list[RunFlag]] = defaultdict(list)
    for row in session.scalars(flag_query.order_by(RunFlag.run_number, RunFlag.scope, RunFlag.group_name,
                                                   RunFlag.first_chunk)):
        computed[(row.run_number, row.scope, row.group_name)].append(row)
    signed: dict[tuple[int, str, str], list[SignoffView]] = defaultdict(list)
    for row in session.scalars(signoff_query.order_by(FlagSignoff.signed_at, FlagSignoff.id)):
        signed[(row.run_number, row.scope, row.group_name)].append(_view(row))
    out = []
    for key in sorted(computed):
        rows = computed[key]
        ranges = [FlagRange(r.first_chunk, r.last_chunk, r.flag, tuple(r.reasons or ())) for r in rows]
        out.append(standing_flag(*key, ranges, signed.get(key, []), max(r.computed_at for r in rows)))
    return out
