"""The queries behind every page: plain functions over a SQLAlchemy session, one per page need.

Each query is shaped for an index of `hydra_assets.db.models` (see its docstring) and bounded by a
limit, so a page never loads a table: the Run grid reads `run_time`; the Log reads `ix_inferences_log`;
the Labeler reads `ix_images_labeler_queue` / `ix_images_editor` with keyset pagination; the Plot
Browser pages with LIMIT/OFFSET and a capped count.  `bench/pages.py` times these same functions.
"""

from __future__ import annotations

import heapq
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bokeh.core.enums import NamedColor
from sqlalchemy import and_, func, or_, select, true
from sqlalchemy.orm import Session, aliased

from hydra_assets.db.models import (
    Alarm,
    Heartbeat,
    Image,
    Inference,
    Label,
    Model,
    NewsLine,
    PlotGroup,
    PlotType,
    PlotTypeGrouping,
    RunTime,
    StageTiming,
    SuperGroup,
    Threshold,
    ThresholdChange,
    TrainingReport,
    TrainingReportItem,
    TrainingSetItem,
    User,
    utcnow,
)

STAGES = ("feeder", "predict", "keeper")
UNGROUPED = "Ungrouped"
HEX_COLOUR = re.compile(r"#(?:[0-9a-fA-F]{3,4}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})")


def label_colour(value: str | None) -> str:
    """A label's colour as the pages use it (style attributes, Bokeh figures): a hex or CSS colour name;
    anything else — a forged or hand-edited row — shows grey instead of failing a figure or reaching CSS."""
    return value if value and (HEX_COLOUR.fullmatch(value) or value in NamedColor) else "#888888"


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


def catalogue(session: Session) -> dict[int, PlotTypeInfo]:
    """Every plot type with its labels and groups (small tables, read whole)."""
    types = {
        r.id: PlotTypeInfo(r.id, r.name, r.description or "", bool(r.enabled))
        for r in session.execute(select(PlotType.id, PlotType.name, PlotType.description, PlotType.enabled)
                                 .order_by(PlotType.name))
    }
    labels = session.execute(select(Label.id, Label.plot_type_id, Label.name, Label.colour, Label.is_bad, Label.order)
                             .order_by(Label.plot_type_id, Label.order, Label.id))
    for lab in labels:
        if lab.plot_type_id in types:
            types[lab.plot_type_id].labels.append(
                LabelInfo(lab.id, lab.name, label_colour(lab.colour), bool(lab.is_bad), lab.order)
            )
    rows = session.execute(
        select(PlotTypeGrouping.plot_type_id, PlotGroup.name, SuperGroup.name)
        .join(PlotGroup, PlotGroup.id == PlotTypeGrouping.plot_group_id)
        .outerjoin(SuperGroup, SuperGroup.id == PlotGroup.super_group_id)
        .order_by(PlotGroup.name)
    )
    for plot_type_id, group, super_group in rows:
        if plot_type_id in types:
            types[plot_type_id].groups.append(group)
            if super_group and super_group not in types[plot_type_id].super_groups:
                types[plot_type_id].super_groups.append(super_group)
    return types


def groups(session: Session) -> list[tuple[int, str, str | None]]:
    """(id, plot group, super group) of every plot group."""
    return list(
        session.execute(
            select(PlotGroup.id, PlotGroup.name, SuperGroup.name)
            .outerjoin(SuperGroup, SuperGroup.id == PlotGroup.super_group_id)
            .order_by(PlotGroup.name)
        ).tuples()
    )


def plot_type_ids_in(session: Session, *, group: str | None = None, super_group: str | None = None) -> list[int]:
    query = select(PlotTypeGrouping.plot_type_id).join(PlotGroup, PlotGroup.id == PlotTypeGrouping.plot_group_id)
    if group:
        query = query.where(PlotGroup.name == group)
    if super_group:
        query = query.join(SuperGroup, SuperGroup.id == PlotGroup.super_group_id).where(SuperGroup.name == super_group)
    return sorted(set(session.scalars(query)))


def user_role(session: Session, name: str | None) -> tuple[int | None, str | None]:
    """(user id, role name) of a Hydra user, or (None, None) when the login has no Hydra user."""
    if not name:
        return None, None
    row = session.execute(select(User.id, User.role_id).where(User.name == name, User.active == true())).first()
    if row is None:
        return None, None
    from hydra_assets.db.models import Role

    role = session.scalar(select(Role.name).where(Role.id == row.role_id)) if row.role_id else None
    return row.id, role


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
    confirmed: bool = False
    is_bad: bool = False
    gradcam: bool = False

    @property
    def state(self) -> str:
        """bad (confirmed Bad) | unconfirmed | good | pending (no classification yet)."""
        if self.inference_id is None or self.status != "classified":
            return "pending"
        if self.is_bad and self.confirmed:
            return "bad"
        return "good" if self.confirmed else "unconfirmed"

    @property
    def rank(self) -> tuple[int, str]:
        """Confirmed Bad first, then unconfirmed, then the rest; by name within each."""
        return ({"bad": 0, "unconfirmed": 1}.get(self.state, 2), self.plot_type.lower())


def run_grid(session: Session, plot_type_ids: Sequence[int] | None = None) -> list[Card]:
    """The latest image of every plot type (or of the given ones), Bad and unconfirmed first."""
    query = (
        select(
            RunTime.plot_type_id, PlotType.name, RunTime.run_number, RunTime.chunk, RunTime.image_id,
            RunTime.updated_at, Inference.id, Inference.classified_at, Inference.status, Label.name,
            Label.colour, Inference.top_weight, Inference.confirmed, Inference.is_bad,
            Inference.gradcam_path.is_not(None),
        )
        .join(PlotType, PlotType.id == RunTime.plot_type_id)
        .outerjoin(Inference, Inference.id == RunTime.inference_id)
        .outerjoin(Label, Label.id == Inference.top_label_id)
    )
    if plot_type_ids is not None:
        query = query.where(RunTime.plot_type_id.in_(list(plot_type_ids)))
    cards = [
        Card(
            plot_type_id=r[0], plot_type=r[1], run=r[2], chunk=r[3], image_id=r[4], updated_at=r[5],
            inference_id=r[6], classified_at=r[7], status=r[8], label=r[9], colour=label_colour(r[10]),
            weight=r[11], confirmed=bool(r[12]), is_bad=bool(r[13]), gradcam=bool(r[14]),
        )
        for r in session.execute(query)
    ]
    return sorted(cards, key=lambda c: c.rank)


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


def alarms_after(session: Session, after_id: int, *, limit: int = 50) -> list[AlarmInfo]:
    """Alarms raised since the alarm `after_id` (what the Run page has not announced yet), oldest first."""
    rows = session.execute(
        select(Alarm.id, PlotType.name, Image.run_number, Image.chunk, Label.name, Alarm.message, Alarm.raised_at,
               Alarm.image_id)
        .join(PlotType, PlotType.id == Alarm.plot_type_id)
        .join(Image, Image.id == Alarm.image_id)
        .outerjoin(Label, Label.id == Alarm.label_id)
        .where(Alarm.id > after_id, Alarm.acknowledged_at.is_(None))
        .order_by(Alarm.id)
        .limit(limit)
    )
    return [AlarmInfo(*r) for r in rows]


def acknowledged_among(session: Session, alarm_ids: Sequence[int]) -> set[int]:
    """Which of these alarms someone has acknowledged (on any Run page) since they were shown."""
    if not alarm_ids:
        return set()
    return set(session.scalars(select(Alarm.id).where(Alarm.id.in_(list(alarm_ids)),
                                                      Alarm.acknowledged_at.is_not(None))))


def last_alarm_id(session: Session) -> int:
    return session.scalar(select(func.max(Alarm.id))) or 0


def news(session: Session, *, limit: int = 3) -> list[tuple[datetime, str, str]]:
    """The newest active news lines: (created_at, text, author)."""
    rows = session.execute(
        select(NewsLine.created_at, NewsLine.text, NewsLine.created_by)
        .where(NewsLine.active == true())
        .order_by(NewsLine.created_at.desc())
        .limit(limit)
    )
    return [tuple(r) for r in rows]  # type: ignore[misc]


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
    confirmed: bool
    is_bad: bool
    gradcam: bool
    weights: dict[str, Any]
    human_label: str | None = None
    group: str = UNGROUPED

    @property
    def kind(self) -> str:
        return "confirmed Bad" if self.confirmed and self.is_bad else "unconfirmed"


def log_entries(
    session: Session, since: datetime, until: datetime | None = None, *, limit: int = 2000
) -> list[LogEntry]:
    """Every confirmed Bad and unconfirmed classification in [since, until], newest first."""
    human = aliased(Label)
    query = (
        select(
            Inference.id, Inference.image_id, Inference.plot_type_id, PlotType.name, Inference.run_number,
            Inference.chunk, Inference.classified_at, Label.name, Label.colour, Inference.top_weight,
            Inference.confirmed, Inference.is_bad, Inference.gradcam_path.is_not(None), Inference.weights,
            human.name,
        )
        # outer joins only, so the planner must start from inferences and walk ix_inferences_log backwards;
        # with inner joins MariaDB started from plot_types and sorted a day of run history (3 s at 10 M rows)
        .outerjoin(PlotType, PlotType.id == Inference.plot_type_id)
        .outerjoin(Image, Image.id == Inference.image_id)
        .outerjoin(Label, Label.id == Inference.top_label_id)
        .outerjoin(human, human.id == Image.label_id)
        .where(Inference.flagged == true(), Inference.classified_at >= since)  # `IS true` would skip ix_inferences_log
        .order_by(Inference.classified_at.desc(), Inference.id.desc())
        .limit(limit)
    )
    if until is not None:
        query = query.where(Inference.classified_at <= until)
    return [
        LogEntry(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], label_colour(r[8]), r[9], bool(r[10]), bool(r[11]),
                 bool(r[12]), dict(r[13] or {}), r[14])
        for r in session.execute(query)
    ]


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


def _model_info(m: Model) -> ModelInfo:
    return ModelInfo(
        m.id, m.plot_type_id, m.mlflow_name, m.mlflow_version, m.topology, m.created_at, m.created_by or "",
        m.training_set_size or 0, m.sampling or "", bool(m.active), m.activated_at, m.activated_by or "",
        m.mlflow_run_id or "", dict(m.metrics or {}), list(m.label_names or []), m.training_set_id,
    )


def models_of(session: Session, plot_type_id: int) -> list[ModelInfo]:
    """Every model version of a plot type, newest first."""
    rows = session.scalars(
        select(Model).where(Model.plot_type_id == plot_type_id).order_by(Model.created_at.desc(), Model.id.desc())
    )
    return [_model_info(m) for m in rows]


def model(session: Session, model_id: int) -> ModelInfo | None:
    row = session.get(Model, model_id)
    return _model_info(row) if row else None


def active_model(session: Session, plot_type_id: int) -> ModelInfo | None:
    row = session.scalar(
        select(Model).where(Model.plot_type_id == plot_type_id, Model.active == true()).order_by(Model.id.desc())
    )
    return _model_info(row) if row else None


@dataclass(slots=True)
class ThresholdInfo:
    label_id: int
    label: str
    colour: str
    value: float | None
    f1: float | None
    changed_at: datetime | None
    changed_by: str


def thresholds_of(session: Session, model_id: int, plot_type_id: int) -> list[ThresholdInfo]:
    """One row per label of the plot type, with the model's threshold when it has one."""
    rows = session.execute(
        select(Label.id, Label.name, Label.colour, Threshold.value, Threshold.f1, Threshold.changed_at,
               Threshold.changed_by)
        .outerjoin(Threshold, and_(Threshold.label_id == Label.id, Threshold.model_id == model_id))
        .where(Label.plot_type_id == plot_type_id)
        .order_by(Label.order, Label.id)
    )
    return [ThresholdInfo(r[0], r[1], label_colour(r[2]), r[3], r[4], r[5], r[6] or "") for r in rows]


def threshold_changes(session: Session, model_id: int, *, limit: int = 20) -> list[tuple[datetime, str, Any, float, str]]:
    rows = session.execute(
        select(ThresholdChange.changed_at, Label.name, ThresholdChange.old_value, ThresholdChange.new_value,
               ThresholdChange.changed_by)
        .join(Label, Label.id == ThresholdChange.label_id)
        .where(ThresholdChange.model_id == model_id)
        .order_by(ThresholdChange.changed_at.desc(), ThresholdChange.id.desc())
        .limit(limit)
    )
    return [tuple(r) for r in rows]  # type: ignore[misc]


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


def confusion(session: Session, info: ModelInfo, label_names: list[str], *, limit: int = 20000) -> Confusion:
    """The enhanced confusion matrix of a model version, from the best source available.

    1. its validation report (TrainingReportItems of split `validation`, when they hold agreements too);
    2. its own inferences on images a human has labeled (production data);
    3. a plain count matrix in the model's metrics (`confusion`: rows true, columns predicted).
    """
    labels = list(info.label_names or label_names)
    report_id = session.scalar(
        select(TrainingReport.id).where(TrainingReport.model_id == info.id).order_by(TrainingReport.id.desc())
    )
    names = {lab_id: name for lab_id, name in session.execute(select(Label.id, Label.name).where(
        Label.plot_type_id == info.plot_type_id))}
    if report_id is not None:
        rows = session.execute(
            select(TrainingReportItem.human_label_id, TrainingReportItem.model_label_id,
                   TrainingReportItem.model_weight)
            .where(TrainingReportItem.report_id == report_id, TrainingReportItem.split == "validation")
            .limit(limit)
        ).all()
        if any(h == m for h, m, _ in rows):  # a report of disagreements only has no diagonal
            return Confusion(labels, _cells(rows, names), "validation set (training report)")
    rows = session.execute(
        select(Image.label_id, Inference.top_label_id, Inference.top_weight)
        .join(Image, Image.id == Inference.image_id)
        .where(Inference.model_id == info.id, Image.label_id.is_not(None), Inference.top_label_id.is_not(None))
        .order_by(Inference.id.desc())
        .limit(limit)
    ).all()
    if rows:
        return Confusion(labels, _cells(rows, names), f"{len(rows)} human-labeled images it classified")
    matrix = info.metrics.get("confusion")
    if isinstance(matrix, dict) and "matrix" in matrix:
        labels = list(matrix.get("labels") or labels)
        matrix = matrix["matrix"]
    if isinstance(matrix, list) and matrix and all(isinstance(row, list) for row in matrix):
        counts = {
            (labels[i], labels[j]): int(v)
            for i, row in enumerate(matrix[: len(labels)])
            for j, v in enumerate(row[: len(labels)])
        }
        return Confusion(labels, {}, "counts from the model's metrics (no weights recorded)", counts)
    return Confusion(labels, {}, "")


def confusion_from_predictions(label_names: Sequence[str], true_index: Any, weights: Any) -> Confusion:
    """Cells from recorded predictions: true label index per image and the model's weights (images x labels)."""
    cells: dict[tuple[str, str], list[float]] = defaultdict(list)
    for human, row in zip(true_index, weights, strict=True):
        predicted = int(max(range(len(row)), key=lambda k: row[k]))
        cells[(label_names[int(human)], label_names[predicted])].append(float(row[predicted]))
    return Confusion(list(label_names), dict(cells), f"validation split of the fit ({len(true_index)} images)")


def _cells(rows: Iterable[Sequence[Any]], names: dict[int, str]) -> dict[tuple[str, str], list[float]]:
    cells: dict[tuple[str, str], list[float]] = defaultdict(list)
    for human, predicted, weight in rows:
        if human in names and predicted in names:
            cells[(names[human], names[predicted])].append(float(weight or 0.0))
    return dict(cells)


def training_set_counts(session: Session, training_set_id: int) -> dict[str, int]:
    rows = session.execute(
        select(Label.name, func.count())
        .select_from(TrainingSetItem)
        .join(Label, Label.id == TrainingSetItem.label_id)
        .where(TrainingSetItem.training_set_id == training_set_id)
        .group_by(Label.name)
    )
    return {name: int(n) for name, n in rows}


def history_from_metrics(metrics: dict[str, Any]) -> dict[str, list[float]]:
    """Per-epoch curves from a model's metrics (`history: {loss: [...], ...}` or top-level lists)."""
    source = metrics.get("history") if isinstance(metrics.get("history"), dict) else metrics
    return {
        key: [float(v) for v in values]
        for key, values in source.items()
        if isinstance(values, list) and values and all(isinstance(v, int | float) for v in values)
    }


# ---- Labeler page ---------------------------------------------------------------------------------


def queue_counts(session: Session, plot_type_ids: Sequence[int]) -> dict[int, int]:
    """How many queued, unlabeled images each plot type has (one range of `ix_images_labeler_queue` each)."""
    if not plot_type_ids:
        return {}
    rows = session.execute(
        select(Image.plot_type_id, func.count())
        .where(Image.plot_type_id.in_(list(plot_type_ids)), Image.label_id.is_(None), Image.queue_priority.is_not(None))
        .group_by(Image.plot_type_id)
    )
    counts = dict.fromkeys(plot_type_ids, 0)
    counts.update({plot_type_id: int(n) for plot_type_id, n in rows})
    return counts


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
    confirmed: bool | None = None
    gradcam: bool = False

    @property
    def queue_key(self) -> tuple[int, int]:
        return (self.priority if self.priority is not None else 99, self.image_id)

    @property
    def editor_key(self) -> tuple[datetime, int]:
        return (self.labeled_at or datetime.min, self.image_id)


_TILE_COLUMNS = (Image.id, Image.plot_type_id, Image.run_number, Image.chunk, Image.received_at, Image.label_id,
                 Image.labeled_at, Image.queue_priority)


def _tiles(rows: Iterable[Sequence[Any]]) -> list[Tile]:
    return [Tile(*r) for r in rows]


def labeler_queue(
    session: Session, plot_type_id: int, *, limit: int = 100, after: tuple[int, int] | None = None
) -> list[Tile]:
    """The next unlabeled queued images: unconfirmed and Bad (priority 0) first, then collected, by id."""
    query = (
        select(*_TILE_COLUMNS)
        .where(Image.plot_type_id == plot_type_id, Image.label_id.is_(None), Image.queue_priority.is_not(None))
        .order_by(Image.queue_priority, Image.id)
        .limit(limit)
    )
    if after is not None:
        priority, image_id = after
        query = query.where(
            or_(Image.queue_priority > priority, and_(Image.queue_priority == priority, Image.id > image_id))
        )
    return attach_inferences(session, _tiles(session.execute(query)))


def editor_page(
    session: Session,
    plot_type_id: int,
    label_ids: Sequence[int],
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    before: tuple[datetime, int] | None = None,
    limit: int = 100,
) -> list[Tile]:
    """Labeled images, newest label first, keyset-paginated on (labeled_at, id) below `before`.

    One index range of `ix_images_editor` per label, merged — so "any label" costs k small reads, never a
    sort of every labeled image.
    """
    per_label: list[list[tuple[datetime, int]]] = []
    for label_id in label_ids:
        # (labeled_at, id) straight from ix_images_editor: no row is read until the page is known
        query = (
            select(Image.labeled_at, Image.id)
            .where(Image.plot_type_id == plot_type_id, Image.label_id == label_id, Image.labeled_at.is_not(None))
            .order_by(Image.labeled_at.desc(), Image.id.desc())
            .limit(limit)
        )
        if start is not None:
            query = query.where(Image.labeled_at >= start)
        if end is not None:
            query = query.where(Image.labeled_at <= end)
        if before is not None:
            at, image_id = before
            query = query.where(or_(Image.labeled_at < at, and_(Image.labeled_at == at, Image.id < image_id)))
        per_label.append([(r[0], r[1]) for r in session.execute(query)])
    keys = list(heapq.merge(*per_label, reverse=True))[:limit]
    return attach_inferences(session, _tiles_by_id(session, [image_id for _at, image_id in keys]))


def attach_inferences(session: Session, tiles: list[Tile]) -> list[Tile]:
    """Fill in each tile's model label from its latest classification.

    First the covering index `uq_inference_image_model` (image_id, model_key, id) names every image's
    classifications without reading rows; then only the newest one per image (highest id) is read.  An image
    re-classified by ten model versions costs one row read, not ten.
    """
    if not tiles:
        return tiles
    by_id = {t.image_id: t for t in tiles}
    latest: dict[int, int] = {}
    for image_id, inference_id in session.execute(
        select(Inference.image_id, Inference.id).where(Inference.image_id.in_(list(by_id)))
    ):
        if inference_id > latest.get(image_id, 0):
            latest[image_id] = inference_id
    if not latest:
        return tiles
    rows = session.execute(
        select(Inference.image_id, Inference.top_label_id, Inference.top_weight, Inference.confirmed,
               Inference.gradcam_path.is_not(None))
        .where(Inference.id.in_(list(latest.values())))
    )
    for image_id, label_id, weight, confirmed, gradcam in rows:
        tile = by_id[image_id]
        tile.model_label_id, tile.model_weight, tile.confirmed, tile.gradcam = label_id, weight, confirmed, gradcam
    return tiles


def _tiles_by_id(session: Session, ids: Sequence[int]) -> list[Tile]:
    """Tiles of the given images, in the given order."""
    if not ids:
        return []
    found = {t.image_id: t for t in _tiles(session.execute(select(*_TILE_COLUMNS).where(Image.id.in_(list(ids)))))}
    return [found[i] for i in ids if i in found]


# ---- Status page ----------------------------------------------------------------------------------


def stage_timings(session: Session, since: datetime, *, limit: int = 50000) -> list[tuple[str, float, int, datetime]]:
    """(stage, duration_ms, run_number, finished_at) of every stage execution since `since`."""
    rows: list[tuple[str, float, int, datetime]] = []
    for stage in STAGES:
        rows += session.execute(
            select(StageTiming.stage, StageTiming.duration_ms, StageTiming.run_number, StageTiming.finished_at)
            .where(StageTiming.stage == stage, StageTiming.finished_at >= since)
            .order_by(StageTiming.finished_at.desc())
            .limit(limit)
        ).tuples().all()
    return rows


def heartbeats(session: Session) -> list[tuple[str, datetime, str]]:
    return [tuple(r) for r in session.execute(
        select(Heartbeat.stage, Heartbeat.beat_at, Heartbeat.detail).order_by(Heartbeat.stage))]  # type: ignore[misc]


def images_per_hour(session: Session, since: datetime, until: datetime | None = None) -> list[tuple[datetime, int]]:
    """Images received per hour since `since` (binned in Python over the covering index `ix_images_received`)."""
    query = select(Image.received_at).where(Image.received_at >= since)
    if until is not None:
        query = query.where(Image.received_at <= until)
    counts: dict[datetime, int] = defaultdict(int)
    for (received,) in session.execute(query):
        counts[received.replace(minute=0, second=0, microsecond=0)] += 1
    return sorted(counts.items())


# ---- Plot Browser ---------------------------------------------------------------------------------


@dataclass
class BrowseFilter:
    run_min: int | None = None
    run_max: int | None = None
    plot_type_ids: list[int] | None = None  # None = all; [] = none (e.g. an empty group)
    label_source: str = "human"  # human | model
    label_name: str | None = None  # None = any; "(unlabeled)" for human = no label yet
    since: datetime | None = None
    until: datetime | None = None


UNLABELED = "(unlabeled)"
SORTS = {  # ids grow as images are registered (received_at is set then), so id order is arrival order
    "newest first": (Image.id.desc(),),
    "oldest first": (Image.id.asc(),),
    "run, chunk (descending)": (Image.run_number.desc(), Image.chunk.desc(), Image.id.desc()),
    "run, chunk (ascending)": (Image.run_number.asc(), Image.chunk.asc(), Image.id.asc()),
}


def _browse_where(f: BrowseFilter, label_ids: list[int]) -> list[Any]:
    where: list[Any] = []
    if not (f.label_name and f.label_name != UNLABELED and f.label_source == "human"):
        # a human label implies a registered image; without one, leave quarantined files out (that check
        # reads rows, so it is skipped when the label index alone can answer)
        where.append(Image.status != "quarantined")
    if f.plot_type_ids is not None:
        where.append(Image.plot_type_id.in_(f.plot_type_ids) if f.plot_type_ids else Image.id.is_(None))
    if f.run_min is not None:
        where.append(Image.run_number >= f.run_min)
    if f.run_max is not None:
        where.append(Image.run_number <= f.run_max)
    if f.since is not None:
        where.append(Image.received_at >= f.since)
    if f.until is not None:
        where.append(Image.received_at <= f.until)
    if f.label_name:
        if f.label_source == "human":
            if f.label_name == UNLABELED:
                where.append(Image.label_id.is_(None))
            else:
                where.append(Image.label_id.in_(label_ids))
        else:
            # a correlated lookup per candidate image (uq_inference_image_model), stopping at the page's end:
            # as EXISTS, MariaDB would turn it into a semi-join over every inference with that label
            labeled_by_model = (
                select(Inference.id)
                .where(Inference.image_id == Image.id, Inference.top_label_id.in_(label_ids))
                .limit(1)
                .scalar_subquery()
            )
            where.append(labeled_by_model.is_not(None))
    return where


def browse(
    session: Session, f: BrowseFilter, *, sort: str = "newest first", limit: int = 60, offset: int = 0,
) -> tuple[list[Tile], bool]:
    """One page of images matching the filter, and whether another page follows."""
    where = _browse_where(f, _label_ids(session, f))
    rows = session.execute(
        select(*_TILE_COLUMNS).where(*where).order_by(*SORTS.get(sort, SORTS["newest first"])).limit(limit + 1)
        .offset(offset)
    ).all()
    return attach_inferences(session, _tiles(rows[:limit])), len(rows) > limit


def browse_count(session: Session, f: BrowseFilter, *, cap: int = 1000) -> int | None:
    """How many images match, counted up to `cap` (cap + 1 means "more"); None when a count would cost a
    scan of the run history (a model-label filter): the pager then says only whether more pages follow."""
    if f.label_name and f.label_source == "model":
        return None
    capped = select(Image.id).where(*_browse_where(f, _label_ids(session, f))).limit(cap + 1).subquery()
    return session.scalar(select(func.count()).select_from(capped)) or 0


def _label_ids(session: Session, f: BrowseFilter) -> list[int]:
    """Label ids of the filter's label name, as literals (the planner then uses the indexes)."""
    if not f.label_name or f.label_name == UNLABELED:
        return []
    query = select(Label.id).where(Label.name == f.label_name)
    if f.plot_type_ids:  # only the chosen plot types' label: a tighter range for the planner
        query = query.where(Label.plot_type_id.in_(f.plot_type_ids))
    return list(session.scalars(query))


# ---- Trends ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class TrendPoint:
    at: datetime
    weights: dict[str, Any]
    model_key: str
    confirmed: bool
    run: int


def trend(
    session: Session, plot_type_id: int, since: datetime, until: datetime | None = None, *, limit: int = 20000
) -> list[TrendPoint]:
    """Every classification of a plot type in the window (newest `limit`), oldest first."""
    query = (
        select(Inference.classified_at, Inference.weights, Inference.model_key, Inference.confirmed,
               Inference.run_number)
        .where(Inference.plot_type_id == plot_type_id, Inference.classified_at >= since,
               Inference.status == "classified")
        .order_by(Inference.classified_at.desc())
        .limit(limit)
    )
    if until is not None:
        query = query.where(Inference.classified_at <= until)
    points = [TrendPoint(r[0], dict(r[1] or {}), r[2], bool(r[3]), r[4]) for r in session.execute(query)]
    points.reverse()
    return points


# ---- Training report ------------------------------------------------------------------------------


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


def reports(session: Session, plot_type_id: int | None = None) -> list[ReportInfo]:
    query = (
        select(TrainingReport.id, Model.id, Model.mlflow_name, Model.mlflow_version, Model.plot_type_id,
               TrainingReport.created_at, TrainingReport.n_images, TrainingReport.n_disagreements,
               TrainingReport.mlflow_run_id)
        .join(Model, Model.id == TrainingReport.model_id)
        .order_by(TrainingReport.created_at.desc(), TrainingReport.id.desc())
    )
    if plot_type_id is not None:
        query = query.where(Model.plot_type_id == plot_type_id)
    return [ReportInfo(r[0], r[1], f"{r[2]}/{r[3]}", r[4], r[5], r[6] or 0, r[7] or 0, r[8] or "")
            for r in session.execute(query)]


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


def disagreements(
    session: Session, report_id: int, *, limit: int = 24, offset: int = 0, split: str | None = None
) -> tuple[list[Disagreement], int]:
    """Items of a report where the model's label differs from the human label (at report time)."""
    where = [
        TrainingReportItem.report_id == report_id,
        or_(TrainingReportItem.human_label_id.is_(None),
            TrainingReportItem.model_label_id.is_(None),
            TrainingReportItem.human_label_id != TrainingReportItem.model_label_id),
    ]
    if split:
        where.append(TrainingReportItem.split == split)
    rows = session.execute(
        select(TrainingReportItem.id, TrainingReportItem.image_id, TrainingReportItem.split,
               TrainingReportItem.human_label_id, Image.label_id, TrainingReportItem.model_label_id,
               TrainingReportItem.model_weight, TrainingReportItem.weights, Image.run_number, Image.chunk)
        .join(Image, Image.id == TrainingReportItem.image_id)
        .where(*where)
        .order_by(TrainingReportItem.model_weight.desc(), TrainingReportItem.id)
        .limit(limit)
        .offset(offset)
    )
    items = [Disagreement(r[0], r[1], r[2], r[3], r[4], r[5], float(r[6] or 0), dict(r[7] or {}), r[8], r[9])
             for r in rows]
    total = session.scalar(select(func.count()).select_from(TrainingReportItem).where(*where)) or 0
    return items, total


# ---- helpers --------------------------------------------------------------------------------------


def window(hours: float, *, now: datetime | None = None) -> tuple[datetime, datetime]:
    now = now or utcnow()
    return now - timedelta(hours=hours), now


def latest_run(session: Session) -> int | None:
    return session.scalar(select(func.max(RunTime.run_number)))

