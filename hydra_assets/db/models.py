"""The Hydra database: what Hydra's MySQL holds, as SQLAlchemy 2 models for SQLite and MySQL alike.

Long module: the schema is read as one piece (tables, their relations and the indexes below belong
together, and the Alembic migrations are checked against all of it at once).

Indexes and the page query each one serves:
- ``ix_images_labeler_queue`` (plot_type_id, label_id, queue_priority, id) — Labeler: next unlabeled images
  of a plot type, unconfirmed and Bad first.
- ``ix_images_editor`` (plot_type_id, label_id, labeled_at) — Labeler editor mode: labeled images of a
  plot type filtered by label and time range.
- ``ix_images_browser_run`` (plot_type_id, run_number, chunk) and ``ix_images_run`` (run_number) — Plot
  Browser run-range filters; `hydra inferences --run N`.
- ``ix_images_received`` (received_at) — Plot Browser time filter and sort.
- ``ix_images_digest`` (digest) — idempotent registration (same bytes dropped twice).
- ``ix_inferences_log`` (flagged, classified_at) — Log page: confirmed Bad + unconfirmed in a window.
- ``ix_inferences_trend`` (plot_type_id, classified_at) — Trends page: weights of a plot type over time.
- ``ix_inferences_run`` (run_number, plot_type_id) — backfills and per-run listings.
- ``uq_inference_image_model`` (image_id, model_key) — one inference per image and model version.
- ``run_time`` primary key (plot_type_id) — Run page: the latest image of every plot type.
- ``ix_stage_timings_stage_time`` (stage, finished_at) — Status page histograms and scatter.
- ``ix_alarms_raised`` (raised_at) — Run page alarms newer than the last poll.
- ``ix_label_history_image`` (image_id, labeled_at) — an image's labeling history.
- ``ix_label_history_user_time`` (user_id, labeled_at) — Labeler: how many labels this user stored today.
- ``ix_reference_scores_trend`` (plot_type_id, computed_at) — Trends: reference score over time;
  ``ix_reference_scores_run`` (run_number, plot_type_id) — per-run listings; ``ix_reference_scores_flagged``
  (flagged, computed_at) — Log and daily brief: images unlike their reference.
- ``ix_run_flags_run`` (run_number, scope, group_name, first_chunk) — Runs page: flags of a page of runs.
- ``ix_flag_signoffs_run`` (run_number, scope, group_name, signed_at) — the standing sign-off of a flag.
- ``ix_notifications_pending`` (target_id, sent_at, created_at) — the notifier: what is still to send.
- ``ix_shadow_inferences_backtest`` (backtest_id, run_number) — a backtest's comparison per run;
  ``ix_shadow_inferences_model_run`` (model_id, run_number) — a challenger's running comparison.
- ``ix_label_checks_queue`` (plot_type_id, is_issue, resolved_at, rank) — the Labeler's audit queue.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAME = 128  # length of names: plot types, labels, users, groups
PATH = 1024


def utcnow() -> datetime:
    """Naive UTC, because MySQL DATETIME drops time zones and SQLite has none."""
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


# ---- plot types and their grouping ---------------------------------------------------------------


class SuperGroup(Base):
    """A detector system grouping plot groups (e.g. "Tracking")."""

    __tablename__ = "super_groups"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")


class PlotGroup(Base):
    """A detector or sub-detector whose plot types are shown together (Run grid filter, Log grouping)."""

    __tablename__ = "plot_groups"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME), unique=True)
    super_group_id: Mapped[int | None] = mapped_column(ForeignKey("super_groups.id", ondelete="SET NULL"))
    description: Mapped[str] = mapped_column(Text, default="")
    super_group: Mapped[SuperGroup | None] = relationship()


class PlotType(Base):
    """One kind of monitoring plot; each has its own labels, models and thresholds."""

    __tablename__ = "plot_types"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    topology: Mapped[str] = mapped_column(String(64), default="compact")
    input_height: Mapped[int] = mapped_column(Integer, default=128)
    input_width: Mapped[int] = mapped_column(Integer, default=128)
    collect_percent: Mapped[float] = mapped_column(Float, default=5.0)
    # Confirmed precision each label's threshold must reach on run-held-out validation (ml/thresholds.py).
    precision_target: Mapped[float] = mapped_column(Float, default=0.95, server_default="0.95")
    # Whether an image unlike the model's training data ("novel") raises an alarm of its own.
    novel_alarm: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # The label-free reference score (hydra_assets/references.py): alarm on it or not, the reference's own
    # quantile its limit sits at (0.99 = "as unusual as the reference's own 1-in-100"), and whether the
    # reference follows the most recent confirmed-Good run ("auto") or stays where an expert put it ("expert").
    reference_alarm: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    reference_quantile: Mapped[float] = mapped_column(Float, default=0.99, server_default="0.99")
    reference_rule: Mapped[str] = mapped_column(String(16), default="auto", server_default="auto")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    labels: Mapped[list["Label"]] = relationship(
        back_populates="plot_type", order_by="Label.order", cascade="all, delete-orphan"
    )
    groups: Mapped[list[PlotGroup]] = relationship(secondary="plot_type_groupings")


class PlotTypeGrouping(Base):
    """Membership of a plot type in a plot group (a plot type may sit in several)."""

    __tablename__ = "plot_type_groupings"
    plot_group_id: Mapped[int] = mapped_column(ForeignKey("plot_groups.id", ondelete="CASCADE"), primary_key=True)
    plot_type_id: Mapped[int] = mapped_column(ForeignKey("plot_types.id", ondelete="CASCADE"), primary_key=True)


class Label(Base):
    """A valid label of a plot type; `is_bad` labels raise alarms and get GradCAM heatmaps."""

    __tablename__ = "labels"
    __table_args__ = (UniqueConstraint("plot_type_id", "name", name="uq_label_plot_type_name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plot_type_id: Mapped[int] = mapped_column(ForeignKey("plot_types.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(NAME))
    colour: Mapped[str] = mapped_column(String(32), default="#888888")
    order: Mapped[int] = mapped_column("sort_order", Integer, default=0)
    is_bad: Mapped[bool] = mapped_column(Boolean, default=False)
    plot_type: Mapped[PlotType] = relationship(back_populates="labels")


# ---- users and permissions ------------------------------------------------------------------------


class Role(Base):
    """A named set of permissions (viewer, labeler, expert, admin)."""

    __tablename__ = "roles"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME), unique=True)
    full_name: Mapped[str] = mapped_column(String(256), default="")
    email: Mapped[str] = mapped_column(String(256), default="")
    role_id: Mapped[int | None] = mapped_column(ForeignKey("roles.id", ondelete="SET NULL"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    role: Mapped[Role | None] = relationship()


PERMISSIONS = ("label", "edit_thresholds", "activate_models", "edit_reference", "certify", "admin")


class Permission(Base):
    """A grant to a user or a role, for one plot type or (plot_type_id NULL) for all; `admin` implies all."""

    __tablename__ = "permissions"
    __table_args__ = (
        UniqueConstraint("user_id", "role_id", "plot_type_id", "permission", name="uq_permission_grant"),
        Index("ix_permissions_user", "user_id"),
        Index("ix_permissions_role", "role_id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    role_id: Mapped[int | None] = mapped_column(ForeignKey("roles.id", ondelete="CASCADE"))
    plot_type_id: Mapped[int | None] = mapped_column(ForeignKey("plot_types.id", ondelete="CASCADE"))
    permission: Mapped[str] = mapped_column(String(32))
    granted_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    granted_by: Mapped[str] = mapped_column(String(NAME), default="")


# ---- runs and images ------------------------------------------------------------------------------


class Run(Base):
    """An experiment run as seen by Hydra (first/last image received, run conditions)."""

    __tablename__ = "runs"
    number: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    first_seen: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    conditions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    image_count: Mapped[int] = mapped_column(Integer, default=0)
    # Run metadata imported from a run conditions source (`hydra runs import`), and per-run counts kept up
    # to date by the flags step so the Runs page reads one row per run.
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime)
    chunk_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    alarm_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


IMAGE_STATUSES = ("registered", "quarantined", "labeled_import")


class Image(Base):
    """One monitoring image; identified by its content digest plus (plot type, run, chunk).

    Files whose name or bytes cannot be used are kept as rows too (status `quarantined`, with a reason),
    so nothing that landed is lost.  `label_id` is the current human label (history in `label_history`);
    `queue_priority` places the image in the Labeler queue: 0 = Bad or unconfirmed, 1 = collected,
    NULL = not queued.
    """

    __tablename__ = "images"
    __table_args__ = (
        UniqueConstraint("plot_type_id", "run_number", "chunk", "digest", name="uq_image_identity"),
        Index("ix_images_labeler_queue", "plot_type_id", "label_id", "queue_priority", "id"),
        Index("ix_images_editor", "plot_type_id", "label_id", "labeled_at"),
        Index("ix_images_browser_run", "plot_type_id", "run_number", "chunk"),
        Index("ix_images_run", "run_number"),
        Index("ix_images_received", "received_at"),
        Index("ix_images_digest", "digest"),
        Index("ix_images_status", "status", "received_at"),
    )
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    plot_type_id: Mapped[int | None] = mapped_column(ForeignKey("plot_types.id", ondelete="CASCADE"))
    run_number: Mapped[int | None] = mapped_column(BigInteger)
    chunk: Mapped[int | None] = mapped_column(Integer)
    digest: Mapped[str] = mapped_column(String(64))
    file_name: Mapped[str] = mapped_column(String(512))
    stored_path: Mapped[str] = mapped_column(String(PATH), default="")
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    received_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    status: Mapped[str] = mapped_column(String(32), default="registered")
    quarantine_reason: Mapped[str | None] = mapped_column(Text)
    label_id: Mapped[int | None] = mapped_column(ForeignKey("labels.id", ondelete="SET NULL"))
    labeled_at: Mapped[datetime | None] = mapped_column(DateTime)
    labeled_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    queue_priority: Mapped[int | None] = mapped_column(SmallInteger)
    plot_type: Mapped[PlotType | None] = relationship()
    label: Mapped[Label | None] = relationship(foreign_keys=[label_id])


class LabelHistory(Base):
    """Every human labeling action (label NULL = erased), with the label it replaced."""

    __tablename__ = "label_history"
    __table_args__ = (
        Index("ix_label_history_image", "image_id", "labeled_at"),
        Index("ix_label_history_user_time", "user_id", "labeled_at"),
    )
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    label_id: Mapped[int | None] = mapped_column(ForeignKey("labels.id", ondelete="SET NULL"))
    previous_label_id: Mapped[int | None] = mapped_column(ForeignKey("labels.id", ondelete="SET NULL"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    labeled_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    source: Mapped[str] = mapped_column(String(32), default="labeler")


# ---- models, training sets and thresholds ---------------------------------------------------------


class TrainingSet(Base):
    """A sample of labeled images of one plot type with its sampling method and split."""

    __tablename__ = "training_sets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plot_type_id: Mapped[int] = mapped_column(ForeignKey("plot_types.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    sampling: Mapped[str] = mapped_column(String(32), default="balanced")
    seed: Mapped[int] = mapped_column(Integer, default=0)
    n_train: Mapped[int] = mapped_column(Integer, default=0)
    n_validation: Mapped[int] = mapped_column(Integer, default=0)
    label_counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    dagster_run_id: Mapped[str] = mapped_column(String(64), default="")
    mlflow_run_id: Mapped[str] = mapped_column(String(64), default="")


class TrainingSetItem(Base):
    """One image of a training set, with the split it went to and the label it carried then."""

    __tablename__ = "training_set_items"
    __table_args__ = (UniqueConstraint("training_set_id", "image_id", name="uq_training_set_image"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    training_set_id: Mapped[int] = mapped_column(ForeignKey("training_sets.id", ondelete="CASCADE"))
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    label_id: Mapped[int] = mapped_column(ForeignKey("labels.id", ondelete="CASCADE"))
    split: Mapped[str] = mapped_column(String(16))  # train | validation


class Model(Base):
    """A trained model version of a plot type, mirrored from the MLflow registry."""

    __tablename__ = "models"
    __table_args__ = (
        UniqueConstraint("mlflow_name", "mlflow_version", name="uq_model_version"),
        Index("ix_models_plot_type_active", "plot_type_id", "active"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plot_type_id: Mapped[int] = mapped_column(ForeignKey("plot_types.id", ondelete="CASCADE"))
    mlflow_name: Mapped[str] = mapped_column(String(256))
    mlflow_version: Mapped[str] = mapped_column(String(32))
    mlflow_run_id: Mapped[str] = mapped_column(String(64), default="")
    model_uri: Mapped[str] = mapped_column(String(PATH), default="")
    topology: Mapped[str] = mapped_column(String(64))
    input_height: Mapped[int] = mapped_column(Integer)
    input_width: Mapped[int] = mapped_column(Integer)
    input_channels: Mapped[int] = mapped_column(Integer, default=3)
    label_names: Mapped[list[Any]] = mapped_column(JSON, default=list)  # output order of the model
    training_set_id: Mapped[int | None] = mapped_column(ForeignKey("training_sets.id", ondelete="SET NULL"))
    training_set_size: Mapped[int] = mapped_column(Integer, default=0)
    sampling: Mapped[str] = mapped_column(String(32), default="balanced")
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(NAME), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    activated_at: Mapped[datetime | None] = mapped_column(DateTime)
    activated_by: Mapped[str] = mapped_column(String(NAME), default="")
    # The mask (regions ignored) this version was trained with and applies to its input; None = no mask.
    mask_id: Mapped[int | None] = mapped_column(
        ForeignKey("plot_type_masks.id", ondelete="SET NULL", name="fk_models_mask_id")
    )
    # The plot type's challenger (MLflow alias `challenger`): classifies every live chunk in shadow.
    challenger: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    plot_type: Mapped[PlotType] = relationship()

    @property
    def key(self) -> str:
        return f"{self.mlflow_name}/{self.mlflow_version}"


class Threshold(Base):
    """The current threshold of one label of one model version; history in `threshold_changes`."""

    __tablename__ = "thresholds"
    __table_args__ = (UniqueConstraint("model_id", "label_id", name="uq_threshold_model_label"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    label_id: Mapped[int] = mapped_column(ForeignKey("labels.id", ondelete="CASCADE"))
    value: Mapped[float] = mapped_column(Float)
    f1: Mapped[float | None] = mapped_column(Float)
    changed_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    changed_by: Mapped[str] = mapped_column(String(NAME), default="training")


class ThresholdChange(Base):
    """Who changed a threshold, when, from what to what."""

    __tablename__ = "threshold_changes"
    __table_args__ = (Index("ix_threshold_changes_model", "model_id", "changed_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    label_id: Mapped[int] = mapped_column(ForeignKey("labels.id", ondelete="CASCADE"))
    old_value: Mapped[float | None] = mapped_column(Float)
    new_value: Mapped[float] = mapped_column(Float)
    changed_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    changed_by: Mapped[str] = mapped_column(String(NAME))


# ---- inference, keep, run time, alarms ------------------------------------------------------------


class Inference(Base):
    """Run history: one classification of one image by one model version (or `no_model`).

    `weights` maps every label name to the model's output weight; `flagged` is true for confirmed Bad
    and for unconfirmed classifications (what the Log page lists).
    """

    __tablename__ = "inferences"
    __table_args__ = (
        UniqueConstraint("image_id", "model_key", name="uq_inference_image_model"),
        Index("ix_inferences_log", "flagged", "classified_at"),
        Index("ix_inferences_trend", "plot_type_id", "classified_at"),
        Index("ix_inferences_run", "run_number", "plot_type_id"),
    )
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    plot_type_id: Mapped[int] = mapped_column(ForeignKey("plot_types.id", ondelete="CASCADE"))
    run_number: Mapped[int] = mapped_column(BigInteger)
    chunk: Mapped[int] = mapped_column(Integer)
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id", ondelete="SET NULL"))
    model_key: Mapped[str] = mapped_column(String(300))  # "<mlflow name>/<version>" or "none"
    status: Mapped[str] = mapped_column(String(32), default="classified")  # classified | no_model | error
    error: Mapped[str | None] = mapped_column(Text)
    weights: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    top_label_id: Mapped[int | None] = mapped_column(ForeignKey("labels.id", ondelete="SET NULL"))
    top_weight: Mapped[float | None] = mapped_column(Float)
    confirmed: Mapped[bool] = mapped_column(Boolean, default=False)
    is_bad: Mapped[bool] = mapped_column(Boolean, default=False)
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)
    gradcam_path: Mapped[str | None] = mapped_column(String(PATH))
    # How unlike the model's training images (hydra_assets/scores/novelty.py) and the model's calibrated
    # limit; None for models without a novelty calibration.  Above the limit: not confirmed (rules.is_novel).
    novelty: Mapped[float | None] = mapped_column(Float)
    novelty_limit: Mapped[float | None] = mapped_column(Float)
    classified_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    feed_ms: Mapped[float | None] = mapped_column(Float)
    predict_ms: Mapped[float | None] = mapped_column(Float)
    keep_ms: Mapped[float | None] = mapped_column(Float)
    dagster_run_id: Mapped[str] = mapped_column(String(64), default="")
    image: Mapped[Image] = relationship()
    top_label: Mapped[Label | None] = relationship()


class KeepDecision(Base):
    """Whether an inference's image was kept for labeling, and why (bad | unconfirmed | collect)."""

    __tablename__ = "keep_decisions"
    __table_args__ = (Index("ix_keep_decisions_image", "image_id"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    inference_id: Mapped[int] = mapped_column(ForeignKey("inferences.id", ondelete="CASCADE"), unique=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    keep: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(String(32))
    kept_path: Mapped[str | None] = mapped_column(String(PATH))
    decided_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class RunTime(Base):
    """The latest image of every plot type: one row per plot type, what the Run page grid shows."""

    __tablename__ = "run_time"
    plot_type_id: Mapped[int] = mapped_column(ForeignKey("plot_types.id", ondelete="CASCADE"), primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    inference_id: Mapped[int | None] = mapped_column(ForeignKey("inferences.id", ondelete="SET NULL"))
    run_number: Mapped[int] = mapped_column(BigInteger)
    chunk: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Alarm(Base):
    """A confirmed Bad classification the Run page must announce (until acknowledged)."""

    __tablename__ = "alarms"
    __table_args__ = (Index("ix_alarms_raised", "raised_at"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    inference_id: Mapped[int] = mapped_column(ForeignKey("inferences.id", ondelete="CASCADE"), unique=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    plot_type_id: Mapped[int] = mapped_column(ForeignKey("plot_types.id", ondelete="CASCADE"))
    label_id: Mapped[int | None] = mapped_column(ForeignKey("labels.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(16), default="bad", server_default="bad")  # bad | novel | reference
    message: Mapped[str] = mapped_column(Text, default="")
    raised_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    acknowledged_by: Mapped[str | None] = mapped_column(String(NAME))
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime)


# ---- label-free reference comparison (issue 14) ---------------------------------------------------


class PlotTypeMask(Base):
    """A version of a plot type's mask: rectangles (fractions of width and height) that the classifier
    input, the GradCAM display and the reference score ignore.  The newest version is the current one; each
    model version records the one it was trained with (`models.mask_id`)."""

    __tablename__ = "plot_type_masks"
    __table_args__ = (UniqueConstraint("plot_type_id", "version", name="uq_plot_type_mask_version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plot_type_id: Mapped[int] = mapped_column(ForeignKey("plot_types.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    regions: Mapped[list[Any]] = mapped_column(JSON, default=list)  # [[x0, y0, x1, y1], …] in 0..1
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(NAME), default="")
    comment: Mapped[str] = mapped_column(Text, default="")


class ReferenceSet(Base):
    """A version of a plot type's reference: the runs whose images define "normal" for the reference score.

    Every change is a new version (who, when, which rule), so the rows are the history; `active` marks the
    one in use.  `score_limit` is calibrated on the reference's own images at `quantile`."""

    __tablename__ = "reference_sets"
    __table_args__ = (
        UniqueConstraint("plot_type_id", "version", name="uq_reference_set_version"),
        Index("ix_reference_sets_active", "plot_type_id", "active"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plot_type_id: Mapped[int] = mapped_column(ForeignKey("plot_types.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    runs: Mapped[list[Any]] = mapped_column(JSON, default=list)
    rule: Mapped[str] = mapped_column(String(16), default="expert")  # expert | auto
    method: Mapped[str] = mapped_column(String(32), default="")
    chosen_by: Mapped[str] = mapped_column(String(NAME), default="")
    chosen_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    comment: Mapped[str] = mapped_column(Text, default="")
    n_images: Mapped[int] = mapped_column(Integer, default=0)
    image_height: Mapped[int | None] = mapped_column(Integer)
    image_width: Mapped[int | None] = mapped_column(Integer)
    quantile: Mapped[float] = mapped_column(Float, default=0.99)
    score_limit: Mapped[float | None] = mapped_column(Float)
    mask_id: Mapped[int | None] = mapped_column(ForeignKey("plot_type_masks.id", ondelete="SET NULL"))
    artifact_path: Mapped[str] = mapped_column(String(PATH), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=False)


class ReferenceScore(Base):
    """How far one image is from one reference version: stored once per (image, reference version).

    `reference_version` is 0 and `status` is `missing` (with a `reason`) when no score could be computed:
    no reference yet, an image of another size, an unreadable image."""

    __tablename__ = "reference_scores"
    __table_args__ = (
        UniqueConstraint("image_id", "reference_version", name="uq_reference_score_image_version"),
        Index("ix_reference_scores_trend", "plot_type_id", "computed_at"),
        Index("ix_reference_scores_run", "run_number", "plot_type_id"),
        Index("ix_reference_scores_flagged", "flagged", "computed_at"),
    )
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    plot_type_id: Mapped[int] = mapped_column(ForeignKey("plot_types.id", ondelete="CASCADE"))
    run_number: Mapped[int] = mapped_column(BigInteger)
    chunk: Mapped[int] = mapped_column(Integer)
    reference_id: Mapped[int | None] = mapped_column(ForeignKey("reference_sets.id", ondelete="SET NULL"))
    reference_version: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="scored")  # scored | missing
    reason: Mapped[str | None] = mapped_column(Text)
    score: Mapped[float | None] = mapped_column(Float)
    score_limit: Mapped[float | None] = mapped_column(Float)
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)
    score_ms: Mapped[float | None] = mapped_column(Float)
    computed_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


# ---- run quality flags and certification (issue 16) ----------------------------------------------

FLAG_VALUES = ("Good", "Medium", "Bad", "Null")
FLAG_SCOPES = ("group", "super_group")


class FlagRule(Base):
    """How one plot group's (or super group's) flag is computed from its plot types' chunk verdicts."""

    __tablename__ = "flag_rules"
    __table_args__ = (UniqueConstraint("scope", "group_name", name="uq_flag_rule_group"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scope: Mapped[str] = mapped_column(String(16), default="group")  # group | super_group
    group_name: Mapped[str] = mapped_column(String(NAME))
    rule: Mapped[str] = mapped_column(String(32), default="worst_of")  # worst_of | bad_share | consecutive
    bad_share: Mapped[float] = mapped_column(Float, default=0.0)  # Bad above this share of Bad chunks
    medium_share: Mapped[float] = mapped_column(Float, default=0.0)  # Medium above this share
    consecutive: Mapped[int] = mapped_column(Integer, default=1)  # Bad only after N Bad chunks in a row
    ignore_labels: Mapped[list[Any]] = mapped_column(JSON, default=list)  # e.g. ["NoData"]
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(NAME), default="")


class RunFlag(Base):
    """A computed flag for a chunk range of a run, for one plot group or super group, with its reasons."""

    __tablename__ = "run_flags"
    __table_args__ = (Index("ix_run_flags_run", "run_number", "scope", "group_name", "first_chunk"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    run_number: Mapped[int] = mapped_column(BigInteger)
    scope: Mapped[str] = mapped_column(String(16), default="group")
    group_name: Mapped[str] = mapped_column(String(NAME))
    first_chunk: Mapped[int] = mapped_column(Integer)
    last_chunk: Mapped[int] = mapped_column(Integer)
    flag: Mapped[str] = mapped_column(String(8))  # Good | Medium | Bad | Null
    reasons: Mapped[list[Any]] = mapped_column(JSON, default=list)
    computed_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class FlagSignoff(Base):
    """A run coordinator's confirmation or override of a run's flag for a group: the audit trail (who, when,
    before -> after, comment).  The newest one per (run, scope, group, range) stands; recomputation never
    touches these rows."""

    __tablename__ = "flag_signoffs"
    __table_args__ = (Index("ix_flag_signoffs_run", "run_number", "scope", "group_name", "signed_at"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    run_number: Mapped[int] = mapped_column(BigInteger)
    scope: Mapped[str] = mapped_column(String(16), default="group")
    group_name: Mapped[str] = mapped_column(String(NAME))
    first_chunk: Mapped[int | None] = mapped_column(Integer)  # None: the whole run
    last_chunk: Mapped[int | None] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(16))  # confirm | override
    previous_flag: Mapped[str | None] = mapped_column(String(8))
    flag: Mapped[str] = mapped_column(String(8))
    comment: Mapped[str] = mapped_column(Text, default="")
    user_name: Mapped[str] = mapped_column(String(NAME))
    signed_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class NotificationTarget(Base):
    """Where alarms and Bad flags of a plot group (None: every group) are sent: a webhook or an e-mail."""

    __tablename__ = "notification_targets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_name: Mapped[str | None] = mapped_column(String(NAME))
    kind: Mapped[str] = mapped_column(String(16))  # webhook | email
    address: Mapped[str] = mapped_column(String(PATH))
    events: Mapped[str] = mapped_column(String(64), default="alarm,flag")
    min_interval_s: Mapped[int] = mapped_column(Integer, default=300)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(NAME), default="")


class Notification(Base):
    """One event for one target: pending until sent; events within a target's interval go out as one message."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_pending", "target_id", "sent_at", "created_at"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("notification_targets.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(16))  # alarm | flag
    text: Mapped[str] = mapped_column(Text, default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)


# ---- closing the loop: backtests, challengers, label audit (issue 15) -----------------------------


class ShadowInference(Base):
    """A classification by a model version that is not the active one: a backtest's candidate or the plot
    type's challenger.  Kept apart from `inferences` so it can never alarm, change a keep decision or reach
    the Run page; one per (image, model version, purpose)."""

    __tablename__ = "shadow_inferences"
    __table_args__ = (
        UniqueConstraint("image_id", "model_key", "purpose", name="uq_shadow_inference_image_model"),
        Index("ix_shadow_inferences_model_run", "model_id", "run_number"),
        Index("ix_shadow_inferences_backtest", "backtest_id", "run_number"),
        Index("ix_shadow_inferences_trend", "plot_type_id", "classified_at"),
    )
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    plot_type_id: Mapped[int] = mapped_column(ForeignKey("plot_types.id", ondelete="CASCADE"))
    run_number: Mapped[int] = mapped_column(BigInteger)
    chunk: Mapped[int] = mapped_column(Integer)
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    model_key: Mapped[str] = mapped_column(String(300))
    purpose: Mapped[str] = mapped_column(String(16))  # backtest | challenger
    backtest_id: Mapped[int | None] = mapped_column(ForeignKey("backtests.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(32), default="classified")  # classified | error
    error: Mapped[str | None] = mapped_column(Text)
    weights: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    top_label_id: Mapped[int | None] = mapped_column(ForeignKey("labels.id", ondelete="SET NULL"))
    top_weight: Mapped[float | None] = mapped_column(Float)
    confirmed: Mapped[bool] = mapped_column(Boolean, default=False)
    is_bad: Mapped[bool] = mapped_column(Boolean, default=False)
    would_alarm: Mapped[bool] = mapped_column(Boolean, default=False)
    novelty: Mapped[float | None] = mapped_column(Float)
    novelty_limit: Mapped[float | None] = mapped_column(Float)
    predict_ms: Mapped[float | None] = mapped_column(Float)
    classified_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    dagster_run_id: Mapped[str] = mapped_column(String(64), default="")


class Backtest(Base):
    """A candidate model version run in shadow over stored runs, and its comparison with the active one."""

    __tablename__ = "backtests"
    __table_args__ = (Index("ix_backtests_candidate", "candidate_model_id", "requested_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plot_type_id: Mapped[int] = mapped_column(ForeignKey("plot_types.id", ondelete="CASCADE"))
    candidate_model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    active_model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id", ondelete="SET NULL"))
    first_run: Mapped[int] = mapped_column(BigInteger)
    last_run: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default="requested")  # requested | running | done | failed
    message: Mapped[str] = mapped_column(Text, default="")
    requested_by: Mapped[str] = mapped_column(String(NAME), default="")
    requested_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    n_images: Mapped[int] = mapped_column(Integer, default=0)
    report: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    mlflow_run_id: Mapped[str] = mapped_column(String(64), default="")
    dagster_backfill_id: Mapped[str] = mapped_column(String(64), default="")


class LabelCheck(Base):
    """Whether a human label looks wrong to a model version's out-of-fold predictions (confident learning):
    the audit queue.  One per (model version, image); `resolved_*` records the expert's answer."""

    __tablename__ = "label_checks"
    __table_args__ = (
        UniqueConstraint("model_id", "image_id", name="uq_label_check_model_image"),
        Index("ix_label_checks_queue", "plot_type_id", "is_issue", "resolved_at", "rank"),
    )
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    plot_type_id: Mapped[int] = mapped_column(ForeignKey("plot_types.id", ondelete="CASCADE"))
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    given_label_id: Mapped[int | None] = mapped_column(ForeignKey("labels.id", ondelete="SET NULL"))
    suggested_label_id: Mapped[int | None] = mapped_column(ForeignKey("labels.id", ondelete="SET NULL"))
    self_confidence: Mapped[float] = mapped_column(Float)  # out-of-fold weight of the given label
    is_issue: Mapped[bool] = mapped_column(Boolean, default=False)
    rank: Mapped[int | None] = mapped_column(Integer)  # 0 = most likely mislabeled
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime)
    resolved_by: Mapped[str | None] = mapped_column(String(NAME))
    resolution: Mapped[str | None] = mapped_column(String(16))  # confirmed | fixed


# ---- pipeline health -----------------------------------------------------------------------------


class StageTiming(Base):
    """How long a stage (feeder | predict | keeper) took for one chunk."""

    __tablename__ = "stage_timings"
    __table_args__ = (Index("ix_stage_timings_stage_time", "stage", "finished_at"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    stage: Mapped[str] = mapped_column(String(32))
    plot_type_id: Mapped[int | None] = mapped_column(ForeignKey("plot_types.id", ondelete="SET NULL"))
    run_number: Mapped[int] = mapped_column(BigInteger)
    chunk: Mapped[int | None] = mapped_column(Integer)
    image_count: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    duration_ms: Mapped[float] = mapped_column(Float, default=0.0)
    status: Mapped[str] = mapped_column(String(32), default="ok")
    dagster_run_id: Mapped[str] = mapped_column(String(64), default="")


class Heartbeat(Base):
    """The last sign of life of each stage (and of the sensor), for the Status page."""

    __tablename__ = "heartbeats"
    stage: Mapped[str] = mapped_column(String(32), primary_key=True)
    beat_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    detail: Mapped[str] = mapped_column(Text, default="")


class NewsLine(Base):
    """A line of news shown on the Run page (shift notes, run conditions)."""

    __tablename__ = "news"
    __table_args__ = (Index("ix_news_created", "active", "created_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(NAME), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class AuditLog(Base):
    """Writes and refused write attempts from the pages and the CLI (who, what, when)."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_time", "at"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    user_name: Mapped[str] = mapped_column(String(NAME), default="")
    action: Mapped[str] = mapped_column(String(64))
    allowed: Mapped[bool] = mapped_column(Boolean, default=True)
    detail: Mapped[str] = mapped_column(Text, default="")


# ---- training reports -----------------------------------------------------------------------------


class TrainingReport(Base):
    """Images where a model version and the human label disagree, for experts to review."""

    __tablename__ = "training_reports"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    mlflow_run_id: Mapped[str] = mapped_column(String(64), default="")
    n_images: Mapped[int] = mapped_column(Integer, default=0)
    n_disagreements: Mapped[int] = mapped_column(Integer, default=0)


class TrainingReportItem(Base):
    __tablename__ = "training_report_items"
    __table_args__ = (Index("ix_training_report_items_report", "report_id"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("training_reports.id", ondelete="CASCADE"))
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    split: Mapped[str] = mapped_column(String(16))
    human_label_id: Mapped[int | None] = mapped_column(ForeignKey("labels.id", ondelete="SET NULL"))
    model_label_id: Mapped[int | None] = mapped_column(ForeignKey("labels.id", ondelete="SET NULL"))
    model_weight: Mapped[float] = mapped_column(Float)
    weights: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
