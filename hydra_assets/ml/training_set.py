"""The training set step: which human-labeled images a model learns from, and which validate it.

`plan_training_set` is pure (labels in, sample and split out) so its rules are tested without a database;
`create_training_set` records the plan and its MLflow run.

Minimums: a label takes part when it has at least `min_per_label` human-labeled images (default 10);
training is refused when no image is labeled, when fewer than two labels reach the minimum, or when no
*bad* label does — the message names what is missing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from hydra_assets import catalog
from hydra_assets.db.models import Image, Label, TrainingSet, TrainingSetItem
from hydra_assets.ml.steps import TrainingRefused, emit, metric_name, run_tags

if TYPE_CHECKING:
    from hydra_assets.db.engine import HydraDB
    from hydra_assets.settings import HydraSettings
    from hydra_assets.tracking import TrackingService

SAMPLINGS = ("balanced", "all")


@dataclass(frozen=True)
class TrainingSetOptions:
    sampling: str = "balanced"  # balanced: every label down to the number of Bad images; all: every image
    validation_fraction: float = 0.2
    min_per_label: int = 10
    max_per_label: int | None = None
    seed: int = 12345


@dataclass
class TrainingSetPlan:
    """Which image goes where: (image id, label name, split) plus what was left out and why."""

    items: list[tuple[int, str, str]]
    label_names: list[str]  # model output order (the plot type's label order, labels that take part)
    available: dict[str, int]
    excluded: dict[str, str] = field(default_factory=dict)

    def counts(self, split: str | None = None) -> dict[str, int]:
        counts = Counter(label for _, label, s in self.items if split is None or s == split)
        return {name: counts.get(name, 0) for name in self.label_names}


def plan_training_set(
    labeled: Sequence[tuple[int, str]],
    labels: Sequence[tuple[str, bool]],
    options: TrainingSetOptions,
    *,
    plot_type: str = "",
) -> TrainingSetPlan:
    """Sample and split labeled images (image id, label) of a plot type whose labels are (name, is_bad).

    Balanced sampling draws every label down to the number of images of the largest bad label — Hydra
    found this cuts training time without costing accuracy.  The split is stratified: each label sends
    `validation_fraction` of its images (at least one) to validation.
    """
    if options.sampling not in SAMPLINGS:
        raise TrainingRefused(f"unknown sampling {options.sampling!r}; use one of {', '.join(SAMPLINGS)}")
    if not 0.0 < options.validation_fraction < 1.0:
        raise TrainingRefused(f"validation fraction must be between 0 and 1, not {options.validation_fraction}")
    minimum = max(2, options.min_per_label)
    what = f"plot type {plot_type}" if plot_type else "this plot type"
    by_label: dict[str, list[int]] = {name: [] for name, _ in labels}
    for image_id, label in labeled:
        if label in by_label:
            by_label[label].append(image_id)
    available = {name: len(ids) for name, ids in by_label.items()}
    summary = ", ".join(f"{n}={c}" for n, c in available.items())
    if not any(available.values()):
        raise TrainingRefused(f"{what} has no labeled images; label some first "
                              f"(hydra label import DIR --plot-type {plot_type or 'T'}, or the Labeler page)")
    eligible = [name for name, _ in labels if available[name] >= minimum]
    bad = [name for name, is_bad in labels if is_bad]
    excluded = {name: f"{available[name]} labeled image(s), fewer than the minimum {minimum}"
                for name, _ in labels if name not in eligible}
    if len(eligible) < 2:
        short = [f"{n} needs {minimum - available[n]} more" for n, _ in labels if n not in eligible]
        raise TrainingRefused(f"{what} needs at least {minimum} labeled images of at least two labels; has "
                              f"{summary} ({'; '.join(short)})")
    if not any(name in eligible for name in bad):
        needs = "; ".join(f"{n} needs {minimum - available[n]} more" for n in bad)
        raise TrainingRefused(f"{what} needs at least {minimum} labeled images of a bad label "
                              f"({', '.join(bad)}); has {summary} ({needs})")
    rng = np.random.default_rng(options.seed)
    cap = None
    if options.sampling == "balanced":
        cap = max(available[name] for name in bad if name in eligible)
    if options.max_per_label:
        cap = min(cap or options.max_per_label, options.max_per_label)
    items: list[tuple[int, str, str]] = []
    for name in eligible:
        ids = np.array(sorted(by_label[name]))
        chosen = rng.permutation(ids)[: cap or len(ids)]
        n_validation = min(len(chosen) - 1, max(1, round(len(chosen) * options.validation_fraction)))
        items += [(int(i), name, "validation") for i in chosen[:n_validation]]
        items += [(int(i), name, "train") for i in chosen[n_validation:]]
    items.sort()
    return TrainingSetPlan(items=items, label_names=eligible, available=available, excluded=excluded)


def labeled_images(session: Session, plot_type_id: int) -> list[tuple[int, str]]:
    """Every human-labeled, usable image of a plot type as (image id, label name)."""
    rows = session.execute(
        select(Image.id, Label.name).join(Label, Label.id == Image.label_id)
        .where(Image.plot_type_id == plot_type_id, Image.status != "quarantined", Image.stored_path != "")
        .order_by(Image.id)
    )
    return [(int(i), name) for i, name in rows]


@dataclass
class TrainingSetResult:
    training_set_id: int
    plot_type: str
    sampling: str
    n_train: int
    n_validation: int
    label_names: list[str]
    label_counts: dict[str, Any]
    excluded: dict[str, str]
    mlflow_run_id: str


def create_training_set(
    db: HydraDB,
    config: HydraSettings,
    tracking: TrackingService | None,
    plot_type: str,
    options: TrainingSetOptions = TrainingSetOptions(),
    *,
    dagster_run_id: str = "",
) -> TrainingSetResult:
    """Record a training set (sampling method, every image with its split) and its MLflow run."""
    with db.read() as s:
        plot = catalog.get_plot_type(s, plot_type)
        labels = catalog.labels_of(s, plot)
        label_ids = {lab.name: lab.id for lab in labels}
        labeled = labeled_images(s, plot.id)
    plan = plan_training_set(labeled, [(lab.name, lab.is_bad) for lab in labels], options, plot_type=plot_type)
    counts = {"available": plan.available, "train": plan.counts("train"), "validation": plan.counts("validation"),
              "label_names": plan.label_names, "excluded": plan.excluded,
              "validation_fraction": options.validation_fraction, "min_per_label": options.min_per_label,
              "max_per_label": options.max_per_label}
    n_train = sum(1 for *_, split in plan.items if split == "train")
    n_validation = len(plan.items) - n_train

    def write(session: Session) -> int:
        row = TrainingSet(plot_type_id=plot.id, sampling=options.sampling, seed=options.seed, n_train=n_train,
                          n_validation=n_validation, label_counts=counts, dagster_run_id=dagster_run_id)
        session.add(row)
        session.flush()
        session.add_all(
            TrainingSetItem(training_set_id=row.id, image_id=image_id, label_id=label_ids[label], split=split)
            for image_id, label, split in plan.items
        )
        session.flush()
        return row.id

    training_set_id = db.write(write, what="create training set")
    run_id = ""
    if tracking is not None:
        import mlflow

        with tracking.start_run(run_name=f"{plot_type} training set {training_set_id}",
                                tags=run_tags(plot_type, dagster_run_id, "training_set",
                                           training_set_id=training_set_id)) as run:
            run_id = run.info.run_id
            mlflow.log_params({"sampling": options.sampling, "seed": options.seed,
                               "validation_fraction": options.validation_fraction,
                               "min_per_label": options.min_per_label, "max_per_label": options.max_per_label,
                               "n_train": n_train, "n_validation": n_validation,
                               "labels": ",".join(plan.label_names)})
            mlflow.log_metrics({f"available_{metric_name(k)}": v for k, v in plan.available.items()})
            mlflow.log_dict(counts, "training_set/label_counts.json")
            mlflow.log_text("image_id,label,split\n" + "\n".join(f"{i},{lab},{s}" for i, lab, s in plan.items),
                            "training_set/items.csv")

        def link(session: Session) -> None:
            session.get(TrainingSet, training_set_id).mlflow_run_id = run_id

        db.write(link, what="link training set run")
    emit("training_set", training_set_id=training_set_id, n_train=n_train, n_validation=n_validation)
    return TrainingSetResult(training_set_id, plot_type, options.sampling, n_train, n_validation, plan.label_names,
                             counts, plan.excluded, run_id)


def latest_training_set(session: Session, plot_type_id: int) -> TrainingSet | None:
    return session.scalar(select(TrainingSet).where(TrainingSet.plot_type_id == plot_type_id)
                          .order_by(TrainingSet.id.desc()).limit(1))


def training_set_items(session: Session, training_set_id: int) -> list[tuple[int, str, str, str]]:
    """(image id, stored path, label name, split) of a training set, in image order."""
    rows = session.execute(
        select(TrainingSetItem.image_id, Image.stored_path, Label.name, TrainingSetItem.split)
        .join(Image, Image.id == TrainingSetItem.image_id).join(Label, Label.id == TrainingSetItem.label_id)
        .where(TrainingSetItem.training_set_id == training_set_id).order_by(TrainingSetItem.image_id)
    )
    return [(int(i), p, lab, s) for i, p, lab, s in rows]


__all__ = [
    "SAMPLINGS", "TrainingSetOptions", "TrainingSetPlan", "TrainingSetResult", "create_training_set",
    "labeled_images", "latest_training_set", "plan_training_set", "training_set_items",
]
