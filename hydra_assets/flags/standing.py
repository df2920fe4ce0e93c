"""Sign-off ranges and the standing flag: which flag stands on each chunk of a run once people signed off.

Pure functions of plain values, like `flags.rules`: the standing flag of a chunk is the newest sign-off
covering it (a whole-run sign-off covers every chunk), else the computed flag.  Pages, `hydra flags` and the
exports read `StandingFlag` values built here (through `flags.signoff.standing_flags`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hydra_assets.flags.rules import GOOD, OVERRIDE, FlagError, FlagRange, summary_flag


def parse_ranges(text: str) -> list[tuple[int, int]]:
    """'0-39,45,50-60' → [(0, 39), (45, 45), (50, 60)]; reversed or overlapping ranges are refused."""
    ranges: list[tuple[int, int]] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        first_text, _, last_text = part.partition("-")
        try:
            first, last = int(first_text), int(last_text or first_text)
        except ValueError:
            raise FlagError(f"chunk range {part!r} is not N or N-M (e.g. 0-39)") from None
        ranges.append((first, last))
    check_ranges(ranges)
    return ranges


def check_ranges(ranges: Sequence[tuple[int, int]]) -> None:
    """Refuse negative, reversed (40-10) and overlapping (0-40 with 30-50) chunk ranges, naming them."""
    for first, last in ranges:
        if first < 0:
            raise FlagError(f"chunk range {first}-{last}: chunks start at 0")
        if last < first:
            raise FlagError(f"chunk range {first}-{last} is reversed: write {last}-{first}")
    ordered = sorted(ranges)
    for (a_first, a_last), (b_first, b_last) in zip(ordered, ordered[1:], strict=False):
        if b_first <= a_last:
            raise FlagError(f"chunk ranges {a_first}-{a_last} and {b_first}-{b_last} overlap")


@dataclass(frozen=True)
class SignoffView:
    """A sign-off as the standing-flag rule needs it (first/last None: the whole run)."""

    first_chunk: int | None
    last_chunk: int | None
    action: str
    flag: str
    user_name: str
    signed_at: datetime
    comment: str = ""
    previous_flag: str | None = None

    def covers(self, first: int, last: int) -> bool:
        if self.first_chunk is None:
            return True
        return self.first_chunk <= first and last <= (self.last_chunk if self.last_chunk is not None else last)


@dataclass(frozen=True)
class StandingRange:
    """A chunk range with its computed flag, the flag that stands (a sign-off's, else computed) and who signed."""

    first_chunk: int
    last_chunk: int
    computed: str
    standing: str
    reasons: tuple[dict[str, Any], ...] = ()
    action: str | None = None  # confirm | override | None (not signed off)
    signed_by: str | None = None
    signed_at: datetime | None = None
    comment: str = ""


def standing_ranges(computed: Sequence[FlagRange], signoffs: Sequence[SignoffView]) -> list[StandingRange]:
    """Computed ranges cut where sign-offs begin and end; each piece stands at the newest sign-off covering it.

    `signoffs` in any order (the newest by `signed_at`, later in the list on ties, wins)."""
    if not computed:
        return []
    newest_first = [s for _, s in sorted(enumerate(signoffs), key=lambda p: (p[1].signed_at, p[0]), reverse=True)]
    cuts: set[int] = set()
    for s in signoffs:
        if s.first_chunk is not None:
            cuts.add(s.first_chunk)
            if s.last_chunk is not None:
                cuts.add(s.last_chunk + 1)
    pieces: list[StandingRange] = []
    for r in sorted(computed, key=lambda r: r.first_chunk):
        starts = sorted({r.first_chunk, *(c for c in cuts if r.first_chunk < c <= r.last_chunk)})
        for i, first in enumerate(starts):
            last = starts[i + 1] - 1 if i + 1 < len(starts) else r.last_chunk
            signed = next((s for s in newest_first if s.covers(first, last)), None)
            piece = StandingRange(first, last, r.flag, signed.flag if signed else r.flag, r.reasons,
                                  signed.action if signed else None, signed.user_name if signed else None,
                                  signed.signed_at if signed else None, signed.comment if signed else "")
            previous = pieces[-1] if pieces else None
            if previous and previous.last_chunk + 1 >= first and _same_standing(previous, piece):
                pieces[-1] = StandingRange(previous.first_chunk, last, previous.computed, previous.standing,
                                           previous.reasons, previous.action, previous.signed_by,
                                           previous.signed_at, previous.comment)
            else:
                pieces.append(piece)
    return pieces


def _same_standing(a: StandingRange, b: StandingRange) -> bool:
    return (a.computed, a.standing, a.action, a.signed_by, a.signed_at, a.reasons) == \
        (b.computed, b.standing, b.action, b.signed_by, b.signed_at, b.reasons)


def good_spans(ranges: Iterable[StandingRange]) -> list[list[int]]:
    """The golden-JSON form of one run: [[first, last], …] of standing Good chunks, neighbours merged."""
    spans: list[list[int]] = []
    for r in sorted(ranges, key=lambda r: r.first_chunk):
        if r.standing != GOOD:
            continue
        if spans and r.first_chunk <= spans[-1][1] + 1:
            spans[-1][1] = max(spans[-1][1], r.last_chunk)
        else:
            spans.append([r.first_chunk, r.last_chunk])
    return spans


@dataclass(frozen=True)
class StandingFlag:
    """One run's flag for one group or super group: what was computed, what stands, and who signed it off.

    `computed` and `standing` summarise the whole run (the worst of its ranges); `ranges` has the detail."""

    run_number: int
    scope: str
    group_name: str
    computed: str
    standing: str
    ranges: tuple[StandingRange, ...]
    computed_at: datetime | None = None
    action: str | None = None  # of the newest sign-off of this run and group, if any
    signed_by: str | None = None
    signed_at: datetime | None = None
    comment: str = ""

    @property
    def overridden(self) -> bool:
        return any(r.action == OVERRIDE and r.standing != r.computed for r in self.ranges)

    @property
    def reasons(self) -> tuple[dict[str, Any], ...]:
        """The reasons of every range that is not Good, each with its chunk range."""
        return tuple({"first_chunk": r.first_chunk, "last_chunk": r.last_chunk, **reason}
                     for r in self.ranges if r.computed != GOOD for reason in r.reasons)


def standing_flag(run_number: int, scope: str, group_name: str, computed: Sequence[FlagRange],
                  signoffs: Sequence[SignoffView], computed_at: datetime | None = None) -> StandingFlag:
    """The standing flag of one (run, scope, group) from its computed ranges and its sign-offs."""
    pieces = standing_ranges(computed, signoffs)
    newest = max(signoffs, key=lambda s: s.signed_at) if signoffs else None
    return StandingFlag(
        run_number, scope, group_name,
        computed=summary_flag(r.flag for r in computed), standing=summary_flag(p.standing for p in pieces),
        ranges=tuple(pieces), computed_at=computed_at,
        action=newest.action if newest else None, signed_by=newest.user_name if newest else None,
        signed_at=newest.signed_at if newest else None, comment=newest.comment if newest else "",
    )
