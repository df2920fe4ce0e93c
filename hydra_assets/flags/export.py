"""Certification files from the standing flags: the golden JSON of Good chunk ranges, and a CSV of everything.

Golden JSON (the CMS form): ``{"<run>": [[first_chunk, last_chunk], …]}`` with the chunk ranges whose
standing flag is Good; with several groups, the chunks Good in every one of them.  Runs without a Good
chunk are left out.  The CSV has one row per run, group and standing range: computed flag, standing flag,
reasons, the sign-off that stands and the run's earlier sign-offs.  `hydra flags export` and the Runs
page's download buttons call these functions.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from hydra_assets.db.models import FlagSignoff, RunFlag
from hydra_assets.flags.rules import GROUP, FlagError
from hydra_assets.flags.signoff import check_group, standing_flags
from hydra_assets.flags.standing import StandingFlag, good_spans

CSV_COLUMNS = ("run", "scope", "group", "first_chunk", "last_chunk", "computed_flag", "flag", "reasons",
               "action", "signed_by", "signed_at", "comment", "signoff_history", "computed_at")


def parse_run_range(text: str) -> tuple[int, int]:
    """'300-310' or '300' → (first run, last run); reversed or non-numeric → FlagError."""
    first_text, _, last_text = text.strip().partition("-")
    try:
        first, last = int(first_text), int(last_text or first_text)
    except ValueError:
        raise FlagError(f"runs {text!r} is not N or N-M (e.g. 300-310)") from None
    if last < first:
        raise FlagError(f"runs {first}-{last} is reversed: write {last}-{first}")
    return first, last


def runs_with_flags(session: Session, first_run: int, last_run: int) -> list[int]:
    return list(session.scalars(select(RunFlag.run_number).where(RunFlag.run_number.between(first_run, last_run))
                                .distinct().order_by(RunFlag.run_number)))


def _intersect(a: list[list[int]], b: list[list[int]]) -> list[list[int]]:
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        first, last = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if first <= last:
            out.append([first, last])
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def golden(flags: Sequence[StandingFlag], groups: Sequence[str]) -> dict[str, list[list[int]]]:
    """The golden-JSON mapping from standing flags: Good ranges, intersected over `groups`."""
    by_run: dict[int, dict[str, StandingFlag]] = {}
    for flag in flags:
        by_run.setdefault(flag.run_number, {})[flag.group_name] = flag
    out: dict[str, list[list[int]]] = {}
    for run in sorted(by_run):
        spans: list[list[int]] | None = None
        for group in groups:
            flag = by_run[run].get(group)
            good = good_spans(flag.ranges) if flag else []
            spans = good if spans is None else _intersect(spans, good)
        if spans:
            out[str(run)] = spans
    return out


def golden_json(session: Session, groups: Sequence[str], first_run: int, last_run: int, *,
                scope: str = GROUP) -> str:
    """The certification file (text) for these groups over runs first_run..last_run."""
    if not groups:
        raise FlagError("name at least one group (--group G)")
    for group in groups:
        check_group(session, scope, group)
    runs = runs_with_flags(session, first_run, last_run)
    flags = standing_flags(session, runs, scope=scope, groups=list(groups))
    lines = [f"  {json.dumps(run)}: {json.dumps(spans)}" for run, spans in golden(flags, groups).items()]
    return "{\n" + ",\n".join(lines) + "\n}\n" if lines else "{}\n"  # one run per line, valid JSON


def reason_text(reasons: Sequence[dict]) -> str:
    parts = []
    for r in reasons:
        who = r.get("plot_type") or r.get("group")
        if who:
            chunks = ",".join(f"{a}-{b}" if a != b else str(a) for a, b in r.get("chunks", []))
            text = f"{who} {r.get('flag', '')} in chunks {chunks}"
            if r.get("text"):
                text += f" ({r['text']})"
            if r.get("alarms"):
                text += " alarms " + ",".join(str(a) for a in r["alarms"])
            parts.append(text)
        else:
            parts.append(str(r.get("rule") or r.get("text") or ""))
    return "; ".join(p for p in parts if p)


def flags_csv(session: Session, first_run: int, last_run: int, *, groups: Sequence[str] | None = None,
              scope: str | None = None) -> str:
    """Every standing range of runs first_run..last_run (all groups unless named), as CSV text."""
    for group in groups or ():
        check_group(session, scope or GROUP, group)
    runs = runs_with_flags(session, first_run, last_run)
    flags = standing_flags(session, runs, scope=scope, groups=list(groups) if groups else None)
    history: dict[tuple[int, str, str], list[str]] = {}
    if runs:
        query = select(FlagSignoff).where(FlagSignoff.run_number.in_(runs)).order_by(FlagSignoff.signed_at,
                                                                                      FlagSignoff.id)
        for s in session.scalars(query):
            span = "whole run" if s.first_chunk is None else f"chunks {s.first_chunk}-{s.last_chunk}"
            history.setdefault((s.run_number, s.scope, s.group_name), []).append(
                f"{s.signed_at:%Y-%m-%d %H:%M} {s.user_name} {s.action} {span} {s.previous_flag}->{s.flag}: {s.comment}")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for flag in flags:
        signed_history = " | ".join(history.get((flag.run_number, flag.scope, flag.group_name), []))
        for r in flag.ranges:
            writer.writerow([flag.run_number, flag.scope, flag.group_name, r.first_chunk, r.last_chunk, r.computed,
                             r.standing, reason_text(r.reasons), r.action or "", r.signed_by or "",
                             f"{r.signed_at:%Y-%m-%d %H:%M:%S}" if r.signed_at else "", r.comment, signed_history,
                             f"{flag.computed_at:%Y-%m-%d %H:%M:%S}" if flag.computed_at else ""])
    return out.getvalue()
