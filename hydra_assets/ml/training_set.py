"""The training set step: which human-labeled images a model learns from, and which validate it.

`plan_training_set` is pure (labels in, sample and split out) so its rules are tested without a database;
`create_training_set` records the plan and its MLflow run.

Minimums: a label takes part when it has at least `min_per_label` human-labeled images (default 10);
training is refused when no image is labeled, when fewer than two labels reach the minimum, or when no
*bad* label does — the message names what is missing.

The split is by **run**: chunks of one run look alike, so an image-level split puts near-copies on both
sides and validation says 1.000 while the next run fails.  No run is ever on both sides:
- `MIN_RUNS_FOR_HOLDOUT` runs or more: scikit-learn's `StratifiedGroupKFold` (groups = run, stratified by
  label as far as runs allow) and one of its folds is the validation set (``split = "runs"``); at the
  default fraction 0.2 it then holds at least 3 runs;
- 2 to `MIN_RUNS_FOR_HOLDOUT` - 1 runs: cross-validation over runs in at most `MAX_FOLDS` folds (items
  ``fold-1`` … ``fold-K``; one run per fold up to `MAX_FOLDS` runs): each fold's model predicts its
  held-out runs, the registered model is fit on every image.  A single held-out fold of so few runs
  would hold one or two runs, and its thresholds would rest on them alone;
- one run: every image trains and no run-held-out validation exists; the plan says so loudly.
Images without a run number (hand-collected, run 0) count as one run.
"""

from __future__ import annotations

import logging
import warnings
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

log = logging.getLogger(__name__)
SAMPLINGS = ("balanced", "all")
MIN_RUNS_FOR_HOLDOUT = 15  # fewer labeled runs: cross-validation over runs instead of one held-out fold
MAX_FOLDS = 5  # cross-validation costs one fit per fold, plus the registered model's
SPLIT_RUNS = "runs"
SPLIT_CROSS_VALIDATION = "cross-validation over runs"
SPLIT_SINGLE_RUN = "single run"
FOLD_PREFIX = "fold-"


@dataclass(frozen=True)
class TrainingSetOptions:
    sampling: str = "balanced"  # balanced: every label down to the number of Bad images; all: every image
    validation_fraction: float = 0.2
    min_per_label: int = 10
    max_per_label: int | None = None
    seed: int = 12345


@dataclass
class TrainingSetPlan:
    """Which image goes where: (image id, label name, split) plus what was left out and why.

    `split` is ``train`` or ``validation`` (held-out runs), or ``fold-K`` under cross-validation over runs.
    """

    items: list[tuple[int, str, str]]
    label_names: list[str]  # model output order (the plot type's label order, labels that take part)
    available: dict[str, int]
    excluded: dict[str, str] = field(default_factory=dict)
    run_of: dict[int, int] = field(default_factory=dict)  # image id -> run number
    split_method: str = SPLIT_RUNS
    warnings: list[str] = field(default_factory=list)

    def counts(self, split: str | None = None) -> dict[str, int]:
        counts = Counter(label for _, label, s in self.items if split is None or s == split)
        return {name: counts.get(name, 0) for name in self.label_names}

    def runs(self, split: str) -> list[int]:
        """The run numbers of one split (sorted)."""
        return sorted({self.run_of.get(i, 0) for i, _, s in self.items if s == split})

    def folds(self) -> dict[str, list[int]]:
        """Cross-validation folds and the runs each holds out (empty without cross-validation)."""
        names = sorted({s for *_, s in self.items if s.startswith(FOLD_PREFIX)},
                       key=lambda s: int(s[len(FOLD_PREFIX):]))
        return {name: self.runs(name) for name in names}

    def summary(self) -> dict[str, Any]:
        """Which runs went where, for the training set's label_counts JSON."""
        return {"split": self.split_method, "runs": sorted(set(self.run_of.values())),
                "train_runs": self.runs("train"), "validation_runs": self.runs("validation"),
                "folds": self.folds(), "warnings": list(self.warnings)}


def split_by_run(labels: Sequence[str], runs: Sequence[int], label_names: Sequence[str],
                 validation_fraction: float, seed: int) -> tuple[list[str], str, list[str]]:
    """Split images (their labels and runs, same order) so that no run is on both sides.

    Returns each image's split, the method (`SPLIT_RUNS`, `SPLIT_CROSS_VALIDATION`, `SPLIT_SINGLE_RUN`) and
    warnings about what the split cannot give (a label missing from validation, one run only).
    """
    from sklearn.model_selection import StratifiedGroupKFold

    runs_array = np.asarray(runs, dtype=np.int64)
    distinct = sorted(set(runs_array.tolist()))
    if len(distinct) == 1:
        return (["train"] * len(labels), SPLIT_SINGLE_RUN,
                [f"all labeled images come from one run ({distinct[0]}): no run-held-out validation exists, "
                 "so nothing measures how the model does on another run; label images of more runs"])
    y = np.array([list(label_names).index(lab) for lab in labels])
    if len(distinct) < MIN_RUNS_FOR_HOLDOUT:
        if len(distinct) <= MAX_FOLDS:  # leave one run out
            fold_of = {run: k + 1 for k, run in enumerate(distinct)}
        else:
            folds = StratifiedGroupKFold(n_splits=MAX_FOLDS, shuffle=True, random_state=seed)
            with warnings.catch_warnings():  # "least populated class has fewer members than n_splits"
                warnings.simplefilter("ignore", UserWarning)
                fold_of = {int(r): k + 1 for k, (_, held) in enumerate(folds.split(np.zeros(len(y)), y, runs_array))
                           for r in set(runs_array[held].tolist())}
        fold = np.array([fold_of[int(r)] for r in runs_array])
        notes = []
        for k in sorted(set(fold.tolist())):
            missing = [n for i, n in enumerate(label_names) if not np.any((fold != k) & (y == i))]
            if missing:
                held_runs = ", ".join(str(r) for r in sorted(set(runs_array[fold == k].tolist())))
                notes.append(f"the fold holding out run(s) {held_runs} trains without any {', '.join(missing)} image")
        return [f"{FOLD_PREFIX}{k}" for k in fold], SPLIT_CROSS_VALIDATION, notes
    n_splits = min(len(distinct), max(2, round(1 / validation_fraction)))
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    best, best_key = None, None
    with warnings.catch_warnings():  # "least populated class has fewer members than n_splits": handled below
        warnings.simplefilter("ignore", UserWarning)
        candidates = [held_out for _, held_out in folds.split(np.zeros(len(y)), y, groups=runs_array)]
    for held_out in candidates:
        in_validation = set(y[held_out].tolist())
        in_train = set(np.delete(y, held_out).tolist())
        # Every label on both sides if the runs allow, then the fraction nearest the one asked for.
        key = (len(in_validation) + len(in_train), -abs(len(held_out) / len(y) - validation_fraction))
        if best_key is None or key > best_key:
            best, best_key = held_out, key
    split = np.array(["train"] * len(y), dtype=object)
    split[best] = "validation"
    notes = [f"no run holds out a {name} image for validation (its runs are all in training)"
                for k, name in enumerate(label_names) if not np.any((y == k) & (split == "validation"))]
    notes += [f"every {name} image is in a validation run; the model trains without one"
              for k, name in enumerate(label_names) if not np.any((y == k) & (split == "train"))]
    return [str(s) for s in split], SPLIT_RUNS, notes


def plan_training_set(
    labeled: Sequence[tuple[int, str, int]],
    labels: Sequence[tuple[str, bool]],
    options: TrainingSetOptions,
    *,
    plot_type: str = "",
) -> TrainingSetPlan:
    """Sample and split labeled images (image id, label, run) of a plot type whose labels are (name, is_bad).

    Balanced sampling draws every label down to the number of images of the largest bad label — Hydra
    found this cuts training time without costing accuracy.  The split is by run (`split_by_run`),
    stratified by label as far as the runs allow.
    """
    if options.sampling not in SAMPLINGS:
        raise TrainingRefused(f"unknown sampling {options.sampling!r}; use one of {', '.join(SAMPLINGS)}")
    if not 0.0 < options.validation_fraction < 1.0:
        raise TrainingRefused(f"validation fraction must be between 0 and 1, not {options.validation_fraction}")
    minimum = max(2, options.min_per_label)
    what = f"plot type {plot_type}" if plot_type else "this plot type"
    by_label: dict[str, list[int]] = {name: [] for name, _ in labels}
    run_of: dict[int, int] = {}
    for image_id, label, run in labeled:
        if label in by_label:
            by_label[label].append(image_id)
            run_of[int(image_id)] = int(run or 0)
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
    chosen: list[tuple[int, str]] = []
    for name in eligible:
        ids = np.array(sorted(by_label[name]))
        chosen += [(int(i), name) for i in rng.permutation(ids)[: cap or len(ids)]]
    chosen.sort()
    splits, method, warnings = split_by_run([lab for _, lab in chosen], [run_of[i] for i, _ in chosen], eligible,
                                            options.validation_fraction, options.seed)
    items = [(i, lab, s) for (i, lab), s in zip(chosen, splits, strict=True)]
    return TrainingSetPlan(items=items, label_names=eligible, available=available, excluded=excluded,
                           run_of={i: run_of[i] for i, _ in chosen}, split_method=method, warnings=warnings)


def labeled_images(session: Session, plot_type_id: int) -> list[tuple[int, str, int]]:
    """Every human-labeled, usable image of a plot type as (image id, label name, run number; 0 if none)."""
    rows = session.execute(
        select(Image.id, Label.name, Image.run_number).join(Label, Label.id == Image.label_id)
        .where(Image.plot_type_id == plot_type_id, Image.status != "quarantined", Image.stored_path != "")
        .order_by(Image.id)
    )
    return [(int(i), name, int(run or 0)) for i, name, run in rows]


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
              "max_per_label": options.max_per_label, **plan.summary()}
    if plan.split_method == SPLIT_CROSS_VALIDATION:
        # The registered model trains on every image, and every image is predicted once by a fold's model
        # that never saw its run.
        counts["train"] = counts["validation"] = plan.counts()
        n_train = n_validation = len(plan.items)
    else:
        n_train = sum(1 for *_, split in plan.items if split == "train")
        n_validation = len(plan.items) - n_train
    for warning in plan.warnings:
        log.warning(f"{plot_type} training set: {warning}")

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
            mlflow.log_params({"sampling": options.sampling, "seed": options.seed, "split": plan.split_method,
                               "n_runs": len(set(plan.run_of.values())),
                               "validation_fraction": options.validation_fraction,
                               "min_per_label": options.min_per_label, "max_per_label": options.max_per_label,
                               "n_train": n_train, "n_validation": n_validation,
                               "labels": ",".join(plan.label_names)})
            mlflow.log_metrics({f"available_{metric_name(k)}": v for k, v in plan.available.items()})
            mlflow.log_dict(counts, "training_set/label_counts.json")
            mlflow.log_text("image_id,label,split,run\n" + "\n".join(f"{i},{lab},{s},{plan.run_of.get(i, 0)}"
                                                                    for i, lab, s in plan.items),
                            "training_set/items.csv")

        def link(session: Session) -> None:
            session.get(TrainingSet, training_set_id).mlflow_run_id = run_id

        db.write(link, what="link training set run")
    emit("training_set", training_set_id=training_set_id, n_train=n_train, n_validation=n_validation,
         split=plan.split_method, train_runs=plan.runs("train"), validation_runs=plan.runs("validation"),
         folds=plan.folds(), warnings=list(plan.warnings))
    return TrainingSetResult(training_set_id, plot_type, options.sampling, n_train, n_validation, plan.label_names,
                             counts, plan.excluded, run_id)


def latest_training_set(session: Session, plot_type_id: int) -> TrainingSet | None:
    return session.scalar(select(TrainingSet).where(TrainingSet.plot_type_id == plot_type_id)
                          .order_by(TrainingSet.id.desc()).limit(1))


def training_set_items(session: Session, training_set_id: int) -> list[tuple[int, str, str, str, int]]:
    """(image id, stored path, label name, split, run number) of a training set, in image order."""
    rows = session.execute(
        select(TrainingSetItem.image_id, Image.stored_path, Label.name, TrainingSetItem.split, Image.run_number)
        .join(Image, Image.id == TrainingSetItem.image_id).join(Label, Label.id == TrainingSetItem.label_id)
        .where(TrainingSetItem.training_set_id == training_set_id).order_by(TrainingSetItem.image_id)
    )
    return [(int(i), p, lab, s, int(run or 0)) for i, p, lab, s, run in rows]


__all__ = [
    "FOLD_PREFIX", "MAX_FOLDS", "MIN_RUNS_FOR_HOLDOUT", "SAMPLINGS", "SPLIT_CROSS_VALIDATION", "SPLIT_RUNS", "SPLIT_SINGLE_RUN",
    "TrainingSetOptions", "TrainingSetPlan", "TrainingSetResult", "create_training_set",
    "labeled_images", "latest_training_set", "plan_training_set", "split_by_run", "training_set_items",
]
