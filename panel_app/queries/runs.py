"""The Runs page: a page of runs (newest first), then the flags and sign-offs of just those runs.

Two steps, so 100,000 runs cost no more than a hundred: the page of runs walks the `runs` primary key
backwards (filters are evaluated per run, stopping at the page's end), then `ix_run_flags_run` and
`ix_flag_signoffs_run` give the standing flags of those runs only (`hydra_assets.flags.signoff.standing_flags`:
the newest sign-off covering a chunk stands, else the computed flag).  The flag filter applies the same rule
in SQL: a computed range stands unless a newer sign-off covers it whole, and a sign-off that no newer one
covers stands on its own chunks.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import and_, func, literal, or_, select
from sqlalchemy.orm import Session, aliased
from sqlalchemy.orm.attributes import InstrumentedAttribute

from hydra_assets.db.models import FlagSignoff, Image, RunFlag
from hydra_assets.db.models import Run as RunModel
from hydra_assets.flags.rules import FlagRange
from hydra_assets.flags.signoff import signoffs_of, standing_flags
from hydra_assets.flags.standing import SignoffView, StandingFlag, standing_flag
from panel_app.queries.tiles import TILE_COLUMNS, as_tiles, attach_inferences
from panel_app.views_data import LOOK_BACK, RunRow, RunsFilter, Signoff, Tile

RUN_COLUMNS = (RunModel.number, RunModel.first_seen, RunModel.last_seen, RunModel.started_at, RunModel.ended_at,
               RunModel.chunk_count, RunModel.image_count, RunModel.alarm_count, RunModel.conditions)


def condition_matches(conditions: InstrumentedAttribute, key: str, value: str) -> Any:
    """SQL: the run condition `key` has `value` (as text; "11.6" also matches the number 11.6), on SQLite and
    MariaDB alike (the JSON path is a bound parameter, so any key is safe)."""
    item = conditions[key]
    text = value.strip()
    matches = [item.as_string() == text]
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is not None:
        matches.append(item.as_float() == number)
    return or_(*matches)


def _covers(signoff: type[FlagSignoff], flag: type[RunFlag]) -> Any:
    """SQL: the sign-off is about this flag's run, group and (a range containing) its chunks."""
    return and_(
        signoff.run_number == flag.run_number, signoff.scope == flag.scope, signoff.group_name == flag.group_name,
        or_(signoff.first_chunk.is_(None),
            and_(signoff.first_chunk <= flag.first_chunk, signoff.last_chunk >= flag.last_chunk)),
    )


def _found(query: Any) -> Any:
    """SQL: `query` finds a row, as a correlated lookup per candidate run that stops at its first row: as
    EXISTS, MariaDB would turn it into a semi-join that reads every flag of every run (as in queries.browser)."""
    return query.limit(1).scalar_subquery().is_not(None)


def _absent(query: Any) -> Any:
    return query.limit(1).scalar_subquery().is_(None)


def _flag_where(f: RunsFilter) -> list[Any]:
    """A flag row of the run (in the group) that the filter wants: its computed flag is `f.flag` and no newer
    sign-off covering it says otherwise (the cheap test on the row first); not signed off since computed."""
    where: list[Any] = [RunFlag.run_number == RunModel.number]
    if f.group:
        where += [RunFlag.scope == f.scope, RunFlag.group_name == f.group]
    if f.flag:
        standing = (select(FlagSignoff.flag).where(_covers(FlagSignoff, RunFlag))
                    .order_by(FlagSignoff.signed_at.desc(), FlagSignoff.id.desc()).limit(1).scalar_subquery())
        where += [RunFlag.flag == f.flag, func.coalesce(standing, RunFlag.flag) == f.flag]
    if f.needs_signoff:
        where.append(_absent(select(FlagSignoff.id).where(_covers(FlagSignoff, RunFlag),
                                                          FlagSignoff.signed_at >= RunFlag.computed_at)))
    return where


def _signed_where(f: RunsFilter) -> list[Any]:
    """A sign-off of the run setting the filter's flag that no newer sign-off covers (it stands on its chunks)."""
    newer = aliased(FlagSignoff)
    where: list[Any] = [FlagSignoff.run_number == RunModel.number, FlagSignoff.flag == f.flag, _absent(select(
        newer.id).where(
        newer.run_number == FlagSignoff.run_number, newer.scope == FlagSignoff.scope,
        newer.group_name == FlagSignoff.group_name,
        or_(newer.signed_at > FlagSignoff.signed_at,  # MariaDB keeps seconds: the later id breaks a tie
            and_(newer.signed_at == FlagSignoff.signed_at, newer.id > FlagSignoff.id)),
        or_(newer.first_chunk.is_(None), and_(FlagSignoff.first_chunk.is_not(None),
                                              newer.first_chunk <= FlagSignoff.first_chunk,
                                              newer.last_chunk >= FlagSignoff.last_chunk))))]
    if f.group:
        where += [FlagSignoff.scope == f.scope, FlagSignoff.group_name == f.group]
    return where


def runs_where(f: RunsFilter) -> list[Any]:
    """The filter as conditions on `runs`; flag filters look up the run's own flags (its index range)."""
    where: list[Any] = []
    if f.run_min is not None:
        where.append(RunModel.number >= f.run_min)
    if f.run_max is not None:
        where.append(RunModel.number <= f.run_max)
    if f.condition_key:
        where.append(condition_matches(RunModel.conditions, f.condition_key, f.condition_value or ""))
    if f.flag and not f.needs_signoff:  # computed so and standing, or set so by a sign-off that stands
        where.append(or_(_found(select(RunFlag.id).where(*_flag_where(f))),
                         _found(select(FlagSignoff.id).where(*_signed_where(f)))))
    elif f.flag or f.needs_signoff or f.group:
        where.append(_found(select(RunFlag.id).where(*_flag_where(f))))
    return where


def look_back_start(session: Session, f: RunsFilter) -> int | None:
    """The oldest run a flag or sign-off filter searches when no "Run from" bounds it: the newest `LOOK_BACK`
    runs (at or below "Run to").  Without an index on the flag, a rare flag (Bad in one plot group: 0.5 % of
    runs) would otherwise be looked up in every run of the history.  None: no such bound applies."""
    if f.run_min is not None or not (f.flag or f.needs_signoff):
        return None
    query = select(RunModel.number)
    if f.run_max is not None:
        query = query.where(RunModel.number <= f.run_max)
    return session.scalar(query.order_by(RunModel.number.desc()).offset(LOOK_BACK - 1).limit(1))


def runs_page(session: Session, f: RunsFilter, *, limit: int = 50, offset: int = 0) -> tuple[list[RunRow], bool]:
    """One page of runs matching the filter, newest first, with their flag cells; and whether more follow."""
    start = look_back_start(session, f)
    if start is not None:
        f = replace(f, run_min=start)
    rows = session.execute(
        select(*RUN_COLUMNS).where(*runs_where(f)).order_by(RunModel.number.desc()).limit(limit + 1).offset(offset)
    ).all()
    runs = [RunRow(int(r[0]), r[1], r[2], r[3], r[4], r[5] or 0, r[6] or 0, r[7] or 0,
                   dict(r[8]) if isinstance(r[8], dict) else {})  # conditions: a flat object, else none
            for r in rows[:limit]]
    cells = flag_cells(session, [r.number for r in runs])
    for run in runs:
        run.cells = cells.get(run.number, {})
    return runs, len(rows) > limit


def runs_count(session: Session, f: RunsFilter, *, cap: int = 10_000) -> int | None:
    """How many runs match, counted up to `cap` (cap + 1 means "more"); None when a count would evaluate the
    filter on every run (flags, conditions): the pager then says only whether more pages follow."""
    if f.flag or f.group or f.needs_signoff or f.condition_key:
        return None
    capped = select(RunModel.number).where(*runs_where(f)).limit(cap + 1).subquery()
    return int(session.scalar(select(func.count()).select_from(capped)) or 0)


def flag_cells(session: Session, runs: Sequence[int], *, reasons: bool = False
               ) -> dict[int, dict[tuple[str, str], StandingFlag]]:
    """The standing flag of every (scope, group) of these runs: two index ranges over just these runs
    (`ix_run_flags_run`, `ix_flag_signoffs_run`) read as plain rows, then `flags.standing.standing_flag` (the
    rule `flags.signoff.standing_flags` applies; a test holds them equal).  The matrix and the strip need no
    reasons: left out unless asked for, they are the JSON text MariaDB reads apart from the row (23 -> 10 ms
    for a page of 50 runs)."""
    if not runs:
        return {}
    runs = sorted(set(runs))
    signed: dict[tuple[int, str, str], list[SignoffView]] = defaultdict(list)
    for run, scope, group, first, last, action, flag, user, at, comment, previous in session.execute(
        select(FlagSignoff.run_number, FlagSignoff.scope, FlagSignoff.group_name, FlagSignoff.first_chunk,
               FlagSignoff.last_chunk, FlagSignoff.action, FlagSignoff.flag, FlagSignoff.user_name,
               FlagSignoff.signed_at, FlagSignoff.comment, FlagSignoff.previous_flag)
        .where(FlagSignoff.run_number.in_(runs)).order_by(FlagSignoff.signed_at, FlagSignoff.id)
    ):
        signed[(int(run), scope, group)].append(SignoffView(
            first_chunk=first, last_chunk=last, action=action, flag=flag, user_name=user, signed_at=at,
            comment=comment or "", previous_flag=previous))
    computed: dict[tuple[int, str, str], list[FlagRange]] = defaultdict(list)
    newest: dict[tuple[int, str, str], Any] = {}
    why = RunFlag.reasons if reasons else literal(None)
    for run, scope, group, first, last, flag, said, at in session.execute(
        select(RunFlag.run_number, RunFlag.scope, RunFlag.group_name, RunFlag.first_chunk, RunFlag.last_chunk,
               RunFlag.flag, why, RunFlag.computed_at)
        .where(RunFlag.run_number.in_(runs))
        .order_by(RunFlag.run_number, RunFlag.scope, RunFlag.group_name, RunFlag.first_chunk)
    ):
        key = (int(run), scope, group)
        computed[key].append(FlagRange(first_chunk=first, last_chunk=last, flag=flag, reasons=tuple(said or ())))
        newest[key] = max(newest.get(key) or at, at)
    cells: dict[int, dict[tuple[str, str], StandingFlag]] = defaultdict(dict)
    for key, ranges in computed.items():
        cells[key[0]][key[1:]] = standing_flag(*key, ranges, signed.get(key, []), newest[key])
    return dict(cells)


def flag_cell(session: Session, run: int, scope: str, group: str) -> tuple[StandingFlag | None, list[Signoff]]:
    """One run's flag for one group (None when it has none) and its whole sign-off history, oldest first."""
    found = standing_flags(session, [run], scope=scope, groups=[group])
    history = [Signoff(int(s.run_number), s.scope, s.group_name, s.first_chunk, s.last_chunk, s.action,
                       s.previous_flag, s.flag, s.comment or "", s.user_name, s.signed_at)
               for s in signoffs_of(session, run, scope, group)]
    return (found[0] if found else None), history


def condition_keys(session: Session, *, recent: int = 500) -> list[str]:
    """Run-condition keys used by the most recent runs (what the condition filter offers)."""
    rows = session.scalars(select(RunModel.conditions).order_by(RunModel.number.desc()).limit(recent))
    return sorted({str(k) for conditions in rows if isinstance(conditions, dict) for k in conditions}, key=str.lower)


def images_behind(session: Session, run: int, plot_type_ids: Sequence[int], first_chunk: int | None = None,
                  last_chunk: int | None = None, *, limit: int = 48) -> list[Tile]:
    """Images of a run's plot types in a chunk range (`ix_images_browser_run`): those the Keeper queued as
    Bad or unconfirmed first, then by chunk."""
    if not plot_type_ids:
        return []
    where = [Image.plot_type_id.in_(list(plot_type_ids)), Image.run_number == run, Image.status != "quarantined"]
    if first_chunk is not None:
        where.append(Image.chunk >= first_chunk)
    if last_chunk is not None:
        where.append(Image.chunk <= last_chunk)
    rows = session.execute(
        select(*TILE_COLUMNS).where(*where)
        .order_by(Image.queue_priority.is_(None), Image.queue_priority, Image.chunk, Image.plot_type_id)
        .limit(limit)
    )
    return attach_inferences(session, as_tiles(rows))
