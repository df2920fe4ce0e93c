"""The flag rules: from what is known about each image of a run to Good / Medium / Bad / Null chunk ranges.

Pure functions of plain values (no database, no framework), so the pipeline, `hydra flags`, the Runs page
and the tests agree on what a flag means.  docs/flags.md says the same in users' words:

- *image verdict*: a human label beats the model (Bad label → Bad, other label → Good); otherwise an alarm
  of kind bad or reference, or a confirmed Bad classification → Bad; not confirmed (unconfirmed, novel) or
  unlike its reference → Medium; confirmed Good → Good.  An image whose human or top label is one the rule
  ignores (e.g. NoData), or that nothing judged (no model), is Null.
- *chunk verdict* of a plot type: the worst of its images in the chunk (Null when it has none).
- *group flag per chunk*: the worst of its plot types; then the group's rule over the run's chunks
  (`worst_of`, `bad_share`, `consecutive`); equal neighbouring chunks merge into one range.
- *super group*: the worst of its groups' flags per chunk, then its own rule.
- *standing flag*: the newest sign-off covering a chunk, else the computed flag.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

GOOD, MEDIUM, BAD, NULL = "Good", "Medium", "Bad", "Null"
FLAGS = (GOOD, MEDIUM, BAD, NULL)  # the same as db.models.FLAG_VALUES (a test checks)
GROUP, SUPER_GROUP = "group", "super_group"
SCOPES = (GROUP, SUPER_GROUP)
WORST_OF, BAD_SHARE, CONSECUTIVE = "worst_of", "bad_share", "consecutive"
RULES = (WORST_OF, BAD_SHARE, CONSECUTIVE)
CONFIRM, OVERRIDE = "confirm", "override"
ACTIONS = (CONFIRM, OVERRIDE)
ALARM_KINDS_BAD = ("bad", "reference")  # alarm kinds that make an image Bad; "novel" makes it Medium
MAX_ALARM_IDS = 20  # per plot type and range in the reasons, so a flood stays a short row

_SEVERITY = {NULL: 0, GOOD: 1, MEDIUM: 2, BAD: 3}
_BY_SEVERITY = {n: flag for flag, n in _SEVERITY.items()}
_BAD_ALARM_KINDS = frozenset(ALARM_KINDS_BAD)


class FlagError(ValueError):
    """Bad input for a rule, a sign-off or a range: the message says what and what is allowed."""


def worst(flags: Iterable[str]) -> str:
    """Bad > Medium > Good > Null; nothing at all is Null."""
    return max(flags, key=_SEVERITY.__getitem__, default=NULL)


def check_flag(flag: str) -> str:
    if flag not in FLAGS:
        raise FlagError(f"unknown flag {flag!r}: use one of {', '.join(FLAGS)}")
    return flag


def check_scope(scope: str) -> str:
    if scope not in SCOPES:
        raise FlagError(f"unknown scope {scope!r}: use one of {', '.join(SCOPES)}")
    return scope


@dataclass(frozen=True)
class FlagRuleSpec:
    """How one group's flag follows from its chunk verdicts (the stored `flag_rules` row, as values)."""

    rule: str = WORST_OF
    bad_share: float = 0.0  # bad_share: Bad when the share of Bad chunks is above this
    medium_share: float = 0.0  # bad_share: Medium when above this (and not above bad_share)
    consecutive: int = 1  # consecutive: a Bad stretch counts only from this many Bad chunks in a row
    ignore_labels: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise FlagError(f"unknown rule {self.rule!r}: use one of {', '.join(RULES)}")
        for name in ("bad_share", "medium_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise FlagError(f"{name.replace('_', ' ')} {value} is not a share between 0 and 1")
        if self.consecutive < 1:
            raise FlagError(f"consecutive {self.consecutive} must be at least 1 chunk")

    def describe(self) -> str:
        text = {WORST_OF: "worst of",
                BAD_SHARE: f"Bad above {self.bad_share:.0%} Bad chunks, Medium above {self.medium_share:.0%}",
                CONSECUTIVE: f"Bad from {self.consecutive} Bad chunks in a row"}[self.rule]
        return text + (f"; ignoring {', '.join(sorted(self.ignore_labels))}" if self.ignore_labels else "")


# ---- images and chunks ----------------------------------------------------------------------------


class ImageEvidence(NamedTuple):
    """What is known about one image of the run: its human label, its newest classification, alarms.

    A named tuple rather than a dataclass: a run holds ~100 k of them and tuples are built 5x faster."""

    plot_type: str
    chunk: int
    human_label: str | None = None
    human_bad: bool = False
    model_label: str | None = None  # the top label of its newest classification
    judged: bool = False  # a model classified it (not "no model", not failed)
    confirmed: bool = False
    model_bad: bool = False
    alarms: tuple[tuple[int, str], ...] = ()  # (alarm id, kind)
    reference_flagged: bool = False


def image_verdict(image: ImageEvidence, ignore_labels: Collection[str] = ()) -> tuple[str, str]:
    """(flag, why) of one image; human labels beat the model's verdict."""
    _, _, human_label, human_bad, model_label, judged, confirmed, model_bad, alarms, reference_flagged = image
    if human_label is not None:
        if human_label in ignore_labels:
            return NULL, f"labeled {human_label} (ignored)"
        return (BAD if human_bad else GOOD), f"labeled {human_label} by a person"
    if model_label is not None and model_label in ignore_labels:
        return NULL, f"classified {model_label} (ignored)"
    if judged and confirmed and model_bad:
        return BAD, f"confirmed {model_label}"
    kinds = {kind for _, kind in alarms} if alarms else set()
    if kinds & _BAD_ALARM_KINDS:
        return BAD, ("alarm: " + ", ".join(sorted(kinds & _BAD_ALARM_KINDS)))
    if judged and not confirmed:
        return MEDIUM, "unlike the training data" if "novel" in kinds else "unconfirmed"
    if reference_flagged:
        return MEDIUM, "unlike its reference"
    if judged:
        return GOOD, "confirmed Good"
    return NULL, "no verdict (no model)"


class ChunkVerdict(NamedTuple):
    """A plot type's verdict on one chunk: the worst of its images there."""

    plot_type: str
    chunk: int
    flag: str
    why: str
    alarm_ids: tuple[int, ...] = ()


def chunk_verdicts(images: Iterable[ImageEvidence], ignore_labels: Collection[str] = ()
                   ) -> dict[tuple[str, int], ChunkVerdict]:
    """(plot type, chunk) → its verdict; pairs without images are absent (Null)."""
    best: dict[tuple[str, int], tuple[int, str, str]] = {}  # (severity, flag, why) of the worst image so far
    alarm_ids: dict[tuple[str, int], list[int]] = {}
    severity = _SEVERITY
    for image in images:
        flag, why = image_verdict(image, ignore_labels)
        key = (image[0], image[1])
        seen = best.get(key)
        if seen is None or severity[flag] > seen[0]:
            best[key] = (severity[flag], flag, why)
        if image[8]:
            alarm_ids.setdefault(key, []).extend(alarm_id for alarm_id, _ in image[8])
    return {key: ChunkVerdict(key[0], key[1], flag, why, tuple(alarm_ids.get(key, ())))
            for key, (_, flag, why) in best.items()}


# ---- the rules over a run's chunks ----------------------------------------------------------------


def apply_rule(flags: Sequence[str], rule: FlagRuleSpec) -> tuple[list[str], list[str | None]]:
    """Per chunk (in the run's chunk order): the flag after the rule, and the rule's note where it changed it."""
    result, notes = list(flags), [None] * len(flags)  # type: list[str], list[str | None]
    if rule.rule == BAD_SHARE:
        judged = [i for i, f in enumerate(flags) if f != NULL]
        bad = sum(1 for f in flags if f == BAD)
        share = bad / len(judged) if judged else 0.0
        text = f"{bad} of {len(judged)} chunks Bad ({share:.1%})"
        if share > rule.bad_share:
            target, note = BAD, f"{text}, above {rule.bad_share:.1%}: the run is Bad"
        elif share > rule.medium_share:
            target, note = MEDIUM, f"{text}, above {rule.medium_share:.1%}: the run is Medium"
        else:
            target, note = None, f"{text}, within {rule.medium_share:.1%}: tolerated"
        for i in judged:
            if target is not None and flags[i] != target:
                result[i], notes[i] = target, note
            elif target is None and flags[i] == BAD:
                result[i], notes[i] = GOOD, note
    elif rule.rule == CONSECUTIVE and rule.consecutive > 1:
        start = 0
        while start < len(flags):
            end = start
            while end < len(flags) and flags[end] == flags[start]:
                end += 1
            if flags[start] == BAD and end - start < rule.consecutive:
                note = f"{end - start} Bad chunk(s) in a row, fewer than {rule.consecutive}: Medium"
                for i in range(start, end):
                    result[i], notes[i] = MEDIUM, note
            start = end
    return result, notes


@dataclass(frozen=True)
class FlagRange:
    """A computed flag over chunks first_chunk..last_chunk of a run, with its reasons (JSON-ready dicts)."""

    first_chunk: int
    last_chunk: int
    flag: str
    reasons: tuple[dict[str, Any], ...] = ()


def chunk_spans(chunks: Sequence[int]) -> list[list[int]]:
    """[3, 4, 5, 9] → [[3, 5], [9, 9]]: chunk numbers as short ranges for reasons and exports."""
    spans: list[list[int]] = []
    for chunk in sorted(chunks):
        if spans and chunk == spans[-1][1] + 1:
            spans[-1][1] = chunk
        else:
            spans.append([chunk, chunk])
    return spans


def _reasons(flag: str, members: Mapping[str, Mapping[int, ChunkVerdict | str]], chunks: Sequence[int],
             notes: Sequence[str | None], member_kind: str) -> tuple[dict[str, Any], ...]:
    """Which plot types (or groups) in which chunks made this range's flag, with their alarms and the rule."""
    reasons: list[dict[str, Any]] = []
    for name in sorted(members):
        verdicts = members[name]
        for level in (BAD, MEDIUM):
            hits = [c for c in chunks if _flag_of(verdicts.get(c)) == level]
            if not hits:
                continue
            entry: dict[str, Any] = {member_kind: name, "flag": level, "chunks": chunk_spans(hits)}
            if isinstance(verdicts.get(hits[0]), ChunkVerdict):
                entry["text"] = ", ".join(dict.fromkeys(getattr(verdicts.get(c), "why", "") for c in hits))
                alarms = sorted({a for c in hits for a in getattr(verdicts.get(c), "alarm_ids", ())})
                if alarms:
                    entry["alarms"] = alarms[:MAX_ALARM_IDS]
                    if len(alarms) > MAX_ALARM_IDS:
                        entry["more_alarms"] = len(alarms) - MAX_ALARM_IDS
            reasons.append(entry)
    for note in dict.fromkeys(n for n in notes if n):
        reasons.append({"rule": note})
    if flag == GOOD and not reasons:
        reasons.append({"text": f"every {member_kind.replace('_', ' ')} Good or without data"})
    if flag == NULL and not any("rule" in r for r in reasons):
        reasons = [{"text": "no images, or only labels the rule ignores"}]
    return tuple(reasons)


def _flag_of(verdict: ChunkVerdict | str | None) -> str:
    if verdict is None:
        return NULL
    return verdict if isinstance(verdict, str) else verdict.flag


def flag_ranges(members: Mapping[str, Mapping[int, ChunkVerdict | str]], chunks: Sequence[int],
                rule: FlagRuleSpec, *, member_kind: str = "plot_type") -> list[FlagRange]:
    """A group's (members: plot type → chunk → verdict) or a super group's (group → chunk → flag) ranges.

    `chunks` are the run's chunks in order; equal neighbouring chunks merge into one range."""
    chunks = sorted(chunks)
    severities = [{c: _SEVERITY[_flag_of(v)] for c, v in verdicts.items()} for verdicts in members.values()]
    per_chunk = [_BY_SEVERITY[max((s.get(c, 0) for s in severities), default=0)] for c in chunks]
    final, notes = apply_rule(per_chunk, rule)
    ranges: list[FlagRange] = []
    start = 0
    for i in range(1, len(chunks) + 1):
        if i == len(chunks) or final[i] != final[start]:
            span = chunks[start:i]
            reasons = _reasons(final[start], members, span, notes[start:i], member_kind)
            ranges.append(FlagRange(span[0], span[-1], final[start], reasons))
            start = i
    return ranges


def flags_by_chunk(ranges: Iterable[FlagRange], chunks: Sequence[int]) -> dict[int, str]:
    """Each chunk's flag in a list of ranges (for combining groups into their super group)."""
    out: dict[int, str] = {}
    ordered = sorted(ranges, key=lambda r: r.first_chunk)
    index = 0
    for chunk in sorted(chunks):
        while index < len(ordered) and ordered[index].last_chunk < chunk:
            index += 1
        if index < len(ordered) and ordered[index].first_chunk <= chunk:
            out[chunk] = ordered[index].flag
    return out


def summary_flag(flags: Iterable[str]) -> str:
    """One flag for a whole run: the worst of its ranges (Null only when all are Null)."""
    return worst(flags)


@dataclass(frozen=True)
class RunGroups:
    """A run's groups as the compute step sees them: group → plot types, super group → groups, rules."""

    groups: Mapping[str, Collection[str]]
    super_groups: Mapping[str, Collection[str]] = field(default_factory=dict)
    rules: Mapping[tuple[str, str], FlagRuleSpec] = field(default_factory=dict)

    def rule(self, scope: str, name: str) -> FlagRuleSpec:
        return self.rules.get((scope, name), FlagRuleSpec())


def run_flag_ranges(images: Sequence[ImageEvidence], groups: RunGroups, chunks: Sequence[int] | None = None
                    ) -> dict[tuple[str, str], list[FlagRange]]:
    """Every group's and super group's ranges for one run: (scope, name) → ranges (none without chunks)."""
    chunks = sorted(set(chunks) if chunks is not None else {i.chunk for i in images})
    if not chunks:
        return {}
    # each plot type's chunk verdicts once per set of ignored labels its groups' rules name
    wanted: dict[frozenset[str], set[str]] = {}
    for name, plot_types in groups.groups.items():
        wanted.setdefault(groups.rule(GROUP, name).ignore_labels, set()).update(plot_types)
    per_plot_type: dict[frozenset[str], dict[str, dict[int, ChunkVerdict]]] = {}
    for ignore, plot_types in wanted.items():
        verdicts = chunk_verdicts((i for i in images if i.plot_type in plot_types), ignore)
        by_plot_type: dict[str, dict[int, ChunkVerdict]] = {pt: {} for pt in plot_types}
        for (plot_type, chunk), verdict in verdicts.items():
            by_plot_type[plot_type][chunk] = verdict
        per_plot_type[ignore] = by_plot_type
    out: dict[tuple[str, str], list[FlagRange]] = {}
    for name, plot_types in groups.groups.items():
        rule = groups.rule(GROUP, name)
        members: dict[str, Mapping[int, ChunkVerdict | str]] = {
            pt: per_plot_type[rule.ignore_labels][pt] for pt in plot_types}
        out[(GROUP, name)] = flag_ranges(members, chunks, rule, member_kind="plot_type")
    for name, member_groups in groups.super_groups.items():
        members = {g: dict(flags_by_chunk(out.get((GROUP, g), []), chunks)) for g in member_groups}
        out[(SUPER_GROUP, name)] = flag_ranges(members, chunks, groups.rule(SUPER_GROUP, name), member_kind="group")
    return out
