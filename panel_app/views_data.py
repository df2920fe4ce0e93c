"""What the store hands the pages: plain data classes and pure helpers, no database.

Pages import these names (and `panel_app.store`), never `panel_app.queries`, which fills them.  An image's
state uses the keep-reason vocabulary of `hydra_assets.rules` and comes from the keep decision the Keeper
stored, never from the weights again, so a page and the Labeler queue always agree.

Long module: one vocabulary of what every page shows (cards, tiles, runs and their flags, alarms), kept in
one place so a page and the query that fills it cannot drift apart.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import numpy as np

from hydra_assets.db.models import utcnow
from hydra_assets.flags.standing import StandingFlag
from hydra_assets.ingest.health import STAGES
from hydra_assets.ml.thresholds import evaluate_at_thresholds
from hydra_assets.rules import BAD, DEFAULT_THRESHOLD, NOVEL, NOVEL_TEXT, REFERENCE, UNCONFIRMED, is_novel

# the sensor only beats; the steps are timed, the reference step (assets/reference.py) between Predict and the Keeper
TIMED_STAGES = (*(stage for stage in STAGES if stage not in ("sensor", "keeper")), "reference", "keeper")
UNGROUPED = "Ungrouped"
UNLABELED = "(unlabeled)"
GOOD, PENDING = "good", "pending"  # Run grid states beside the keep reasons BAD and UNCONFIRMED
# keep reason -> what the Log page calls it
LOG_KINDS = {BAD: "confirmed Bad", UNCONFIRMED: "unconfirmed", NOVEL: NOVEL_TEXT}
NOT_CONFIRMED = (UNCONFIRMED, NOVEL)  # keep reasons of an image the model withheld its verdict on
# Plot Browser orders (the SQL of each is in `queries.browser`)
REFERENCE_SORT = "reference score (highest first)"  # unscored images last
SORT_NAMES = ("newest first", "oldest first", "run, chunk (descending)", "run, chunk (ascending)", REFERENCE_SORT)


def window(hours: float, *, now: datetime | None = None) -> tuple[datetime, datetime]:
    now = now or utcnow()
    return now - timedelta(hours=hours), now


# ---- catalogue -------------------------------------------------------------------------------------


@dataclass(slots=True)
class LabelInfo:
    id: int
    name: str
    colour: str
    is_bad: bool
    order: int


@dataclass(slots=True)
class PlotTypeInfo:
    id: int
    name: str
    description: str
    enabled: bool
    labels: list[LabelInfo] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    super_groups: list[str] = field(default_factory=list)

    def label(self, label_id: int | None) -> LabelInfo | None:
        return next((lab for lab in self.labels if lab.id == label_id), None)

    def label_named(self, name: str) -> LabelInfo | None:
        return next((lab for lab in self.labels if lab.name == name), None)


# ---- Run page -------------------------------------------------------------------------------------


@dataclass(slots=True)
class Card:
    """The latest image of one plot type, as the Run grid shows it."""

    plot_type_id: int
    plot_type: str
    run: int
    chunk: int
    image_id: int
    updated_at: datetime
    inference_id: int | None = None
    classified_at: datetime | None = None
    status: str | None = None
    label: str | None = None
    colour: str = "#888888"
    weight: float | None = None
    decided: bool = False  # the Keeper stored its decision
    keep_reason: str | None = None  # as stored: bad | novel | unconfirmed | collect | None
    gradcam: bool = False
    threshold: float | None = None  # the model version's threshold of the top label
    novelty: float | None = None
    novelty_limit: float | None = None
    reference_score: float | None = None  # the newest reference version's score of this image (issue 14)
    reference_limit: float | None = None
    reference_flagged: bool = False  # as stored with the score: unlike its reference

    @property
    def state(self) -> str:
        """bad (confirmed Bad) | unconfirmed (novel included) | good | pending (not classified and decided yet)."""
        if self.inference_id is None or self.status != "classified" or not self.decided:
            return PENDING
        if self.keep_reason == BAD:
            return BAD
        return UNCONFIRMED if self.keep_reason in NOT_CONFIRMED else GOOD

    @property
    def novel(self) -> bool:
        """Unlike the model's training data: stored as such by the Keeper, or its score above the limit."""
        return self.keep_reason == NOVEL or is_novel(self.novelty, self.novelty_limit)

    @property
    def reason(self) -> str:
        """One line saying why a Bad, unconfirmed or novel card is what it is ("" for the others)."""
        if self.state not in (BAD, UNCONFIRMED):
            return ""
        return state_reason(self.state, self.label, self.weight, self.threshold, self.novelty, self.novelty_limit,
                            novel=self.novel)

    @property
    def rank(self) -> tuple[int, str]:
        """Confirmed Bad first, then unconfirmed, then unlike their reference (as stored), then the rest; by name
        within each."""
        unlike = self.reference_flagged or self.keep_reason == REFERENCE
        return ({BAD: 0, UNCONFIRMED: 1}.get(self.state, 2 if unlike else 3), self.plot_type.lower())


def fmt_score(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def state_reason(state: str, label: str | None, weight: float | None, threshold: float | None,
                 novelty: float | None, limit: float | None, *, novel: bool) -> str:
    """Why an image is confirmed Bad, unconfirmed or novel, in one line (Run cards and the Log)."""
    w = "—" if weight is None else f"{weight:.3f}"
    t = "the default threshold" if threshold is None else f"threshold {threshold:.3f}"
    if novel:
        return f"{NOVEL_TEXT}: novelty {fmt_score(novelty)} > limit {fmt_score(limit)}"
    if state == BAD:
        return f"{label or 'Bad'} {w} ≥ {t}"
    return f"no label confirmed: {label or 'top label'} {w} < {t}"


@dataclass(slots=True)
class AlarmInfo:
    id: int
    plot_type: str
    run: int | None
    chunk: int | None
    label: str | None
    message: str
    raised_at: datetime
    image_id: int
    kind: str = "bad"  # bad | novel (Alarm.kind)


# ---- Log page -------------------------------------------------------------------------------------


@dataclass(slots=True)
class LogEntry:
    inference_id: int
    image_id: int
    plot_type_id: int
    plot_type: str
    run: int
    chunk: int
    classified_at: datetime
    label: str | None
    colour: str
    weight: float | None
    keep_reason: str | None  # as the Keeper stored it: bad | unconfirmed
    gradcam: bool
    weights: dict[str, Any]
    human_label: str | None = None
    group: str = UNGROUPED
    novelty: float | None = None
    novelty_limit: float | None = None
    threshold: float | None = None

    @property
    def kind(self) -> str:
        """"confirmed Bad" | "unconfirmed" | "unlike the training data": the Log's words for the keep reason."""
        return LOG_KINDS.get(self.keep_reason or "", "")

    @property
    def reason(self) -> str:
        state = BAD if self.keep_reason == BAD else UNCONFIRMED
        return state_reason(state, self.label, self.weight, self.threshold, self.novelty, self.novelty_limit,
                            novel=self.keep_reason == NOVEL)


def group_log(entries: Iterable[LogEntry], groups_of: dict[int, list[str]]) -> dict[str, list[LogEntry]]:
    """Entries under the first plot group of their plot type (groups sorted by name, Ungrouped last)."""
    grouped: dict[str, list[LogEntry]] = defaultdict(list)
    for entry in entries:
        names = groups_of.get(entry.plot_type_id) or [UNGROUPED]
        entry.group = names[0]
        grouped[entry.group].append(entry)
    return dict(sorted(grouped.items(), key=lambda kv: (kv[0] == UNGROUPED, kv[0].lower())))


# ---- Library page ---------------------------------------------------------------------------------


@dataclass(slots=True)
class ModelInfo:
    id: int
    plot_type_id: int
    name: str
    version: str
    topology: str
    created_at: datetime
    created_by: str
    training_set_size: int
    sampling: str
    active: bool
    activated_at: datetime | None
    activated_by: str
    mlflow_run_id: str
    metrics: dict[str, Any]
    label_names: list[str]
    training_set_id: int | None
    challenger: bool = False  # classifies live chunks in shadow (the Library's Challenger tab)

    @property
    def key(self) -> str:
        return f"{self.name}/{self.version}"


@dataclass(slots=True)
class ThresholdInfo:
    label_id: int
    label: str
    colour: str
    value: float | None
    f1: float | None
    changed_at: datetime | None
    changed_by: str


@dataclass
class Confusion:
    """Enhanced confusion matrix: per (human label, model label) cell, the model's weights of its choice."""

    labels: list[str]
    cells: dict[tuple[str, str], list[float]]
    source: str
    counts_only: dict[tuple[str, str], int] = field(default_factory=dict)

    def count(self, true: str, predicted: str) -> int:
        if self.cells:
            return len(self.cells.get((true, predicted), []))
        return self.counts_only.get((true, predicted), 0)

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.cells.values()) if self.cells else sum(self.counts_only.values())

    @property
    def accuracy(self) -> float | None:
        total = self.total
        return sum(self.count(lab, lab) for lab in self.labels) / total if total else None


def confusion_from_predictions(label_names: Sequence[str], true_index: Any, weights: Any) -> Confusion:
    """Cells from recorded predictions: true label index per image and the model's weights (images x labels)."""
    cells: dict[tuple[str, str], list[float]] = defaultdict(list)
    for human, row in zip(true_index, weights, strict=True):
        predicted = int(max(range(len(row)), key=lambda k: row[k]))
        cells[(label_names[int(human)], label_names[predicted])].append(float(row[predicted]))
    return Confusion(list(label_names), dict(cells), f"validation split of the fit ({len(true_index)} images)")


def history_from_metrics(metrics: dict[str, Any]) -> dict[str, list[float]]:
    """Per-epoch curves from a model's metrics (`history: {loss: [...], ...}` or top-level lists)."""
    source = metrics.get("history") if isinstance(metrics.get("history"), dict) else metrics
    return {
        key: [float(v) for v in values]
        for key, values in source.items()
        if isinstance(values, list) and values and all(isinstance(v, int | float) for v in values)
    }


@dataclass
class ValidationSummary:
    """What a model version's run-held-out validation says (`Model.metrics["validation"]` and `["novelty"]`)."""

    split: str = ""  # "runs" | "cross-validation over runs" | "" (not recorded: a model trained before)
    runs: list[int] = field(default_factory=list)
    per_run: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    unconfirmed_rate: float | None = None
    precision_target: float | None = None
    threshold_rules: dict[str, str] = field(default_factory=dict)
    novelty: dict[str, Any] = field(default_factory=dict)

    @property
    def n_runs(self) -> int:
        return len(self.runs) or len(self.per_run)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def validation_summary(metrics: dict[str, Any]) -> ValidationSummary:
    """The validation facts a model's metrics hold, whatever subset of them its training wrote."""
    validation = metrics.get("validation") if isinstance(metrics.get("validation"), dict) else {}
    novelty = metrics.get("novelty") if isinstance(metrics.get("novelty"), dict) else {}
    runs = [int(r) for r in validation.get("runs") or [] if isinstance(r, int | str) and str(r).lstrip("-").isdigit()]
    per_run = {str(k): v for k, v in (validation.get("per_run") or {}).items() if isinstance(v, dict)}
    rules = validation.get("threshold_rules") if isinstance(validation.get("threshold_rules"), dict) else {}
    return ValidationSummary(
        split=str(validation.get("split") or ""),
        runs=runs,
        per_run=per_run,
        warnings=[str(w) for w in validation.get("warnings") or []],
        unconfirmed_rate=_number(validation.get("unconfirmed_rate")),
        precision_target=_number(validation.get("precision_target")),
        threshold_rules={str(k): str(v) for k, v in rules.items()},
        novelty=dict(novelty),
    )


def f1_at(label_names: Sequence[str], true_index: Sequence[int], weights: Any, label: str, threshold: float
          ) -> float | None:
    """F1 of one label at a threshold on recorded validation predictions, judged as training judges it
    (`ml.thresholds.evaluate_at_thresholds`); None without predictions or images of that label."""
    if label not in label_names or not len(true_index):
        return None
    thresholds = {name: 1.0 for name in label_names} | {label: float(threshold)}
    result = evaluate_at_thresholds(np.asarray(weights, dtype=float), np.asarray(true_index), list(label_names),
                                    thresholds)
    value = result[label]["f1"]
    return None if value is None else float(value)


def quality_at(label_names: Sequence[str], true_index: Sequence[int], weights: Any, thresholds: dict[str, float]
               ) -> dict[str, dict[str, Any]]:
    """Per-label precision, recall, F1 and images at the given thresholds on validation predictions (the
    labels without a threshold at the default), as training computes them; {} without predictions."""
    if not len(true_index):
        return {}
    full = {name: float(thresholds.get(name, DEFAULT_THRESHOLD)) for name in label_names}
    return evaluate_at_thresholds(np.asarray(weights, dtype=float), np.asarray(true_index), list(label_names), full)


def labeler_link(plot_type: str, run: int, kind: str) -> str:
    """The Labeler queue of exactly the images a retraining suggestion names."""
    return "./labeler?" + urlencode({"plot_type": plot_type, "run": run, "reason": kind})


# ---- Labeler and Plot Browser ---------------------------------------------------------------------


@dataclass(slots=True)
class Tile:
    """An image on a Labeler or Browser page."""

    image_id: int
    plot_type_id: int
    run: int | None
    chunk: int | None
    received_at: datetime
    label_id: int | None = None
    labeled_at: datetime | None = None
    priority: int | None = None
    model_label_id: int | None = None
    model_weight: float | None = None
    keep_reason: str | None = None  # of its latest classification, as the Keeper stored it
    gradcam: bool = False
    reference_score: float | None = None  # the newest reference version's score (issue 14)
    reference_limit: float | None = None
    reference_flagged: bool = False

    @property
    def unconfirmed(self) -> bool:
        return self.keep_reason in NOT_CONFIRMED

    @property
    def novel(self) -> bool:
        return self.keep_reason == NOVEL

    @property
    def queue_key(self) -> tuple[int, int]:
        return (self.priority if self.priority is not None else 99, self.image_id)

    @property
    def editor_key(self) -> tuple[datetime, int]:
        return (self.labeled_at or datetime.min, self.image_id)


@dataclass(slots=True)
class MapPoint:
    """An image on the similarity map (page Map): what it can be coloured by, and where its file is."""

    image_id: int
    run: int | None
    chunk: int | None
    label_id: int | None = None
    novelty: float | None = None  # of its latest classification
    reference_score: float | None = None  # the newest reference score (issue 14); None when not scored
    stored_path: str = ""


@dataclass
class BrowseFilter:
    run_min: int | None = None
    run_max: int | None = None
    plot_type_ids: list[int] | None = None  # None = all; [] = none (e.g. an empty group)
    label_source: str = "human"  # human | model
    label_name: str | None = None  # None = any; "(unlabeled)" for human = no label yet
    since: datetime | None = None
    until: datetime | None = None
    reference_min: float | None = None  # reference score at least this (newest reference version)
    reference_above_limit: bool = False  # only images whose reference score is above its limit
    condition_key: str | None = None  # a run condition (Run.conditions) the image's run must have ...
    condition_value: str | None = None  # ... with this value (as text; 11.6 matches a number 11.6)


# ---- Trends and Training report -------------------------------------------------------------------


@dataclass(slots=True)
class TrendPoint:
    at: datetime
    weights: dict[str, Any]
    model_key: str
    confirmed: bool
    run: int
    novelty: float | None = None
    novelty_limit: float | None = None


@dataclass(slots=True)
class ReferencePoint:
    """One reference score of a plot type's image (Trends), with the limit of its reference version."""

    at: datetime
    score: float
    limit: float | None
    run: int
    version: int
    flagged: bool


@dataclass(slots=True)
class ReferenceFlag:
    """An image its reference score flagged (Log, daily brief): the newest reference version's verdict."""

    image_id: int
    plot_type_id: int
    plot_type: str
    run: int
    chunk: int
    computed_at: datetime
    score: float | None
    limit: float | None
    version: int
    group: str = UNGROUPED


@dataclass(slots=True)
class MaskVersion:
    """A version of a plot type's mask (Library's Mask tab): rectangles as fractions, who, when, which models."""

    id: int
    version: int
    regions: list[tuple[float, ...]]
    created_at: datetime
    created_by: str
    comment: str
    models: list[str]  # model versions trained with it ("name/version", " ★" when active)


@dataclass(slots=True)
class MaskSample:
    """The image the Mask tab draws rectangles on."""

    image_id: int
    width: int
    height: int
    run: int | None
    chunk: int | None


@dataclass(slots=True)
class ReferenceInfo:
    """A version of a plot type's reference (Library): which runs, chosen how, by whom, when."""

    id: int
    version: int
    runs: list[int]
    rule: str  # expert | auto
    chosen_by: str
    chosen_at: datetime
    comment: str
    n_images: int
    quantile: float
    score_limit: float | None
    active: bool


@dataclass
class Comparison:
    """An image beside its reference (the compare view): arrays as `hydra_assets.references.compare_pictures`
    gives them, or a reason why there is nothing to compare."""

    image_id: int
    plot_type: str = ""
    run: int | None = None
    chunk: int | None = None
    image: Any = None  # 2-D or 3-D array, as compared (resized and masked like the reference)
    reference: Any = None  # the reference's mean image
    difference: Any = None  # image - reference
    score: float | None = None
    limit: float | None = None
    version: int | None = None
    runs: list[int] = field(default_factory=list)
    reason: str = ""  # why a picture or the score is missing
    flagged: bool | None = None  # as stored with the score (None: not stored)

    @property
    def unlike(self) -> bool:
        """Unlike its reference: as stored with the score, else its score above the limit."""
        if self.flagged is not None:
            return self.flagged
        return self.score is not None and self.limit is not None and self.score > self.limit


@dataclass(slots=True)
class ReportInfo:
    id: int
    model_id: int
    model_key: str
    plot_type_id: int
    created_at: datetime
    n_images: int
    n_disagreements: int
    mlflow_run_id: str


@dataclass(slots=True)
class Disagreement:
    item_id: int
    image_id: int
    split: str
    human_label_id: int | None  # when the report was made
    current_label_id: int | None  # the image's human label now
    model_label_id: int | None
    model_weight: float
    weights: dict[str, Any]
    run: int | None
    chunk: int | None
    human_confirmed: bool = False  # a reviewer said the human label is right, after this report

    @property
    def fixed(self) -> bool:
        return self.current_label_id is not None and self.current_label_id == self.model_label_id


# ---- Runs page and alarm history ------------------------------------------------------------------

LOOK_BACK = 2_000  # runs a flag or sign-off filter searches without "Run from" (four weeks of 20-minute runs)
# Okabe-Ito (colour-blind safe, as catalog.GOOD_COLOUR/BAD_COLOURS), each with the letter the cell also shows
FLAG_STYLE = {"Good": ("#009E73", "G"), "Medium": ("#E69F00", "M"), "Bad": ("#D55E00", "B"), "Null": ("#999999", "N")}


def needs_signoff(flag: StandingFlag) -> bool:
    """Some chunk of the flag has no sign-off made since the flag was last computed."""
    return any(r.signed_at is None or (flag.computed_at is not None and r.signed_at < flag.computed_at)
               for r in flag.ranges)


@dataclass(slots=True)
class Signoff:
    """One confirm or override of a flag (the audit trail a run coordinator leaves)."""

    run: int
    scope: str
    group: str
    first_chunk: int | None  # None: the whole run
    last_chunk: int | None
    action: str  # confirm | override
    previous_flag: str | None
    flag: str
    comment: str
    user: str
    signed_at: datetime


@dataclass(slots=True)
class RunRow:
    """A row of the Runs page: run metadata and its flag cells keyed by (scope, group name)."""

    number: int
    first_seen: datetime
    last_seen: datetime
    started_at: datetime | None
    ended_at: datetime | None
    chunk_count: int
    image_count: int
    alarm_count: int
    conditions: dict[str, Any]
    cells: dict[tuple[str, str], StandingFlag] = field(default_factory=dict)  # (scope, group) -> its flag


@dataclass
class RunsFilter:
    run_min: int | None = None
    run_max: int | None = None
    flag: str | None = None  # a standing flag some range of the run has (in `group` when set)
    scope: str = "group"
    group: str | None = None
    condition_key: str | None = None
    condition_value: str | None = None
    needs_signoff: bool = False  # only runs with a flag not signed off since it was computed


@dataclass(slots=True)
class AlarmRow:
    """An alarm as the alarm history lists it."""

    id: int
    kind: str
    plot_type: str
    run: int | None
    chunk: int | None
    label: str | None
    message: str
    raised_at: datetime
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    image_id: int


@dataclass
class AlarmFilter:
    kind: str | None = None  # bad | novel | reference
    plot_type_id: int | None = None
    acknowledged: bool | None = None  # None: either
    since: datetime | None = None
    until: datetime | None = None

