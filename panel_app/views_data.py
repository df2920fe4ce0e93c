"""What the store hands the pages: plain data classes and pure helpers, no database.

Pages import these names (and `panel_app.store`), never `panel_app.queries`, which fills them.  An image's
state uses the keep-reason vocabulary of `hydra_assets.rules` and comes from the keep decision the Keeper
stored, never from the weights again, so a page and the Labeler queue always agree.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from hydra_assets.db.models import utcnow
from hydra_assets.ingest.health import STAGES
from hydra_assets.rules import BAD, UNCONFIRMED

TIMED_STAGES = tuple(stage for stage in STAGES if stage != "sensor")  # the sensor only beats; the steps are timed
UNGROUPED = "Ungrouped"
UNLABELED = "(unlabeled)"
GOOD, PENDING = "good", "pending"  # Run grid states beside the keep reasons BAD and UNCONFIRMED
LOG_KINDS = {BAD: "confirmed Bad", UNCONFIRMED: "unconfirmed"}  # keep reason -> what the Log page calls it
# Plot Browser orders (the SQL of each is in `queries.browser`)
SORT_NAMES = ("newest first", "oldest first", "run, chunk (descending)", "run, chunk (ascending)")


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
    keep_reason: str | None = None  # as stored: bad | unconfirmed | collect | None
    gradcam: bool = False

    @property
    def state(self) -> str:
        """bad (confirmed Bad) | unconfirmed | good | pending (not classified and decided yet)."""
        if self.inference_id is None or self.status != "classified" or not self.decided:
            return PENDING
        return self.keep_reason if self.keep_reason in (BAD, UNCONFIRMED) else GOOD

    @property
    def rank(self) -> tuple[int, str]:
        """Confirmed Bad first, then unconfirmed, then the rest; by name within each."""
        return ({BAD: 0, UNCONFIRMED: 1}.get(self.state, 2), self.plot_type.lower())


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

    @property
    def kind(self) -> str:
        """"confirmed Bad" | "unconfirmed", the Log page's words for the stored keep reason."""
        return LOG_KINDS.get(self.keep_reason or "", "")


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

    @property
    def unconfirmed(self) -> bool:
        return self.keep_reason == UNCONFIRMED

    @property
    def queue_key(self) -> tuple[int, int]:
        return (self.priority if self.priority is not None else 99, self.image_id)

    @property
    def editor_key(self) -> tuple[datetime, int]:
        return (self.labeled_at or datetime.min, self.image_id)


@dataclass
class BrowseFilter:
    run_min: int | None = None
    run_max: int | None = None
    plot_type_ids: list[int] | None = None  # None = all; [] = none (e.g. an empty group)
    label_source: str = "human"  # human | model
    label_name: str | None = None  # None = any; "(unlabeled)" for human = no label yet
    since: datetime | None = None
    until: datetime | None = None


# ---- Trends and Training report -------------------------------------------------------------------


@dataclass(slots=True)
class TrendPoint:
    at: datetime
    weights: dict[str, Any]
    model_key: str
    confirmed: bool
    run: int


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

    @property
    def fixed(self) -> bool:
        return self.current_label_id is not None and self.current_label_id == self.model_label_id
