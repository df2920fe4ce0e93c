"""Training a plot type's model: the training set, the fit, thresholds, the training report.

Each step is a plain function over the Hydra database, the settings and the tracking service, so the
Dagster assets stay thin and tests call the steps directly.  Steps hand over through the Hydra database
(training set rows, the model version) and one predictions file per model version (validation and
training weights, written once by the fit, logged to MLflow and cached under ``models_dir``) — the
threshold and report steps never re-run the network.

Minimums: a label takes part when it has at least `min_per_label` human-labeled images (default 10);
training is refused when no image is labeled, when fewer than two labels reach the minimum, or when no
*bad* label does — the message names what is missing.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from hydra_assets import catalog
from hydra_assets.catalog import CatalogError
from hydra_assets.db.models import (
    Image,
    Label,
    Model,
    TrainingReport,
    TrainingReportItem,
    TrainingSet,
    TrainingSetItem,
)
from hydra_assets.ml import evaluation
from hydra_assets.ml.thresholds import evaluate_at_thresholds, select_thresholds
from hydra_assets.rules import decided_index
from hydra_assets.tracking import TrackingService, registered_model_name

if TYPE_CHECKING:
    import keras

    from hydra_assets.db.engine import HydraDB
    from hydra_assets.settings import HydraSettings

log = logging.getLogger(__name__)

SAMPLINGS = ("balanced", "all")
ACTIVATION = ("never", "if_better", "always")
IN_MEMORY_LIMIT_BYTES = 768 * 2**20  # larger training sets are streamed from disk batch by batch
PREDICTIONS_FILE = "predictions.npz"


class TrainingRefused(CatalogError):
    """Training cannot start (not enough labels, no model, ...); the message names what is missing."""


# ---- progress ------------------------------------------------------------------------------------

ProgressListener = Callable[[str, dict[str, Any]], None]
_listeners: list[ProgressListener] = []


def add_progress_listener(listener: ProgressListener) -> Callable[[], None]:
    """Hear training events in-process (the CLI's progress bar); returns a function that stops listening."""
    _listeners.append(listener)
    return lambda: _listeners.remove(listener) if listener in _listeners else None


def emit(event: str, **data: Any) -> None:
    for listener in _listeners:
        try:
            listener(event, data)
        except Exception:  # a broken progress bar must not fail a training
            log.debug("progress listener failed", exc_info=True)


def configure_tensorflow(threads: int | None = None) -> None:
    """Limit TensorFlow's thread pools (a shared 2-core box); only possible before its first op."""
    import os

    import tensorflow as tf

    threads = threads or int(os.environ.get("HYDRA_TF_THREADS", "0") or 0) or (os.cpu_count() or 2)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
    except RuntimeError:  # TensorFlow already running in this process: keep what it has
        pass


# ---- the training set ----------------------------------------------------------------------------


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
                                tags=_tags(plot_type, dagster_run_id, "training_set",
                                           training_set_id=training_set_id)) as run:
            run_id = run.info.run_id
            mlflow.log_params({"sampling": options.sampling, "seed": options.seed,
                               "validation_fraction": options.validation_fraction,
                               "min_per_label": options.min_per_label, "max_per_label": options.max_per_label,
                               "n_train": n_train, "n_validation": n_validation,
                               "labels": ",".join(plan.label_names)})
            mlflow.log_metrics({f"available_{_metric_name(k)}": v for k, v in plan.available.items()})
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


# ---- pixels --------------------------------------------------------------------------------------


def load_images(paths: Sequence[str], size: tuple[int, int]) -> np.ndarray:
    """Float32 RGB in [0, 1] at (height, width), refusing a missing or unreadable file by name."""
    from hydra_assets.images import load_rgb

    out = np.empty((len(paths), size[0], size[1], 3), dtype=np.float32)
    for k, path in enumerate(paths):
        try:
            out[k] = load_rgb(Path(path), size)
        except (OSError, ValueError) as error:
            raise TrainingRefused(f"cannot read training image {path}: {error}") from error
    return out


def _batches(paths: Sequence[str], targets: np.ndarray, size: tuple[int, int], batch_size: int, *,
             shuffle: bool, seed: int) -> Any:
    """Images streamed from disk batch by batch, for training sets too large to hold in memory."""
    import keras

    class Batches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__(workers=1, use_multiprocessing=False)
            self.order = np.arange(len(paths))
            self.rng = np.random.default_rng(seed)
            self.on_epoch_end()

        def __len__(self) -> int:
            return (len(paths) + batch_size - 1) // batch_size

        def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
            chosen = self.order[index * batch_size:(index + 1) * batch_size]
            return load_images([paths[i] for i in chosen], size), targets[chosen]

        def on_epoch_end(self) -> None:
            if shuffle:
                self.rng.shuffle(self.order)

    return Batches()


# ---- the fit -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainOptions:
    topology: str | None = None  # None: the plot type's
    epochs: int | None = None  # None: the topology's default
    batch_size: int | None = None
    learning_rate: float | None = None
    input_size: tuple[int, int] | None = None  # None: the plot type's
    weights_path: str | None = None
    seed: int = 12345


class _Reporter:
    """Keras callback: per-epoch metrics to MLflow and the log, batch progress to listeners."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        import keras

        class Reporter(keras.callbacks.Callback):
            def __init__(self, epochs: int, logger: logging.Logger | Any) -> None:
                super().__init__()
                self.epochs, self.logger, self.started = epochs, logger, time.perf_counter()

            def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
                emit("batch", epoch=self.epoch, batch=batch + 1, batches=self.params.get("steps"))

            def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
                self.epoch = epoch + 1

            def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
                import mlflow

                values = {k: float(v) for k, v in (logs or {}).items() if np.isscalar(v)}
                if mlflow.active_run() is not None:
                    mlflow.log_metrics(values, step=epoch + 1)
                text = " ".join(f"{k}={v:.4f}" for k, v in values.items())
                self.logger.info(f"epoch {epoch + 1}/{self.epochs} {text} "
                                 f"({time.perf_counter() - self.started:.1f}s)")
                emit("epoch", epoch=epoch + 1, epochs=self.epochs, **values)

        return Reporter(*args, **kwargs)


def fit(
    train: tuple[np.ndarray | Sequence[str], np.ndarray],
    validation: tuple[np.ndarray | Sequence[str], np.ndarray],
    label_names: Sequence[str],
    *,
    topology: str,
    input_size: tuple[int, int],
    epochs: int,
    batch_size: int,
    learning_rate: float,
    weights_path: str | None = None,
    seed: int = 12345,
    logger: Any = log,
) -> tuple[keras.Model, dict[str, Any]]:
    """Build the topology and fit it; inputs are arrays or, for large sets, lists of image paths.

    The learning rate decays along a cosine to 5 % by the last epoch, and the weights of the epoch with
    the lowest validation loss are kept (`history["best_epoch"]`): on a few hundred images the validation
    accuracy swings from epoch to epoch, and the last epoch is then a lottery.
    """
    import keras

    from hydra_assets.ml.topologies import build_model

    keras.utils.set_random_seed(seed)
    model = build_model(topology, (*input_size, 3), len(label_names), weights_path=weights_path)
    (x_train, y_train), (x_val, y_val) = train, validation
    steps = max(1, (len(x_train) + batch_size - 1) // batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=epochs * steps, alpha=0.05)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    best = _BestWeights()
    callbacks = [_Reporter(epochs, logger), best]
    if isinstance(x_train, np.ndarray):
        history = model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=epochs,
                            batch_size=batch_size, shuffle=True, verbose=0, callbacks=callbacks)
    else:
        history = model.fit(_batches(x_train, y_train, input_size, batch_size, shuffle=True, seed=seed),
                            validation_data=_batches(x_val, y_val, input_size, batch_size, shuffle=False,
                                                     seed=seed),
                            epochs=epochs, verbose=0, callbacks=callbacks)
    out: dict[str, Any] = {k: [float(v) for v in values] for k, values in history.history.items()}
    out["best_epoch"] = best.epoch
    if best.epoch:
        logger.info(f"kept the weights of epoch {best.epoch} (lowest validation loss {best.loss:.4f})")
    return model, out


class _BestWeights:
    """Keras callback: keep the weights of the epoch with the lowest validation loss, restore them at the end."""

    def __new__(cls) -> Any:
        import keras

        class BestWeights(keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.loss, self.epoch, self.weights = float("inf"), 0, None

            def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
                loss = (logs or {}).get("val_loss")
                if loss is not None and np.isfinite(loss) and loss <= self.loss:
                    self.loss, self.epoch, self.weights = float(loss), epoch + 1, self.model.get_weights()

            def on_train_end(self, logs: dict | None = None) -> None:
                if self.weights is not None:
                    self.model.set_weights(self.weights)

        return BestWeights()


def predict(model: keras.Model, images: np.ndarray | Sequence[str], input_size: tuple[int, int], *,
            batch_size: int = 64) -> np.ndarray:
    """Weights (N, n_labels) for arrays or paths, batch by batch."""
    n_labels = int(model.output_shape[-1])
    out = np.zeros((len(images), n_labels), dtype=np.float32)
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        batch = chunk if isinstance(chunk, np.ndarray) else load_images(list(chunk), input_size)
        out[start:start + len(batch)] = np.asarray(model(batch, training=False))
    return out


@dataclass
class ModelResult:
    model_id: int
    name: str
    version: str
    model_uri: str
    mlflow_run_id: str
    topology: str
    input_size: tuple[int, int]
    epochs: int
    label_names: list[str]
    training_set_id: int
    metrics: dict[str, Any]
    training_seconds: float


def train_model_step(
    db: HydraDB,
    config: HydraSettings,
    tracking: TrackingService,
    plot_type: str,
    options: TrainOptions = TrainOptions(),
    *,
    dagster_run_id: str = "",
    created_by: str = "",
    logger: Any = log,
) -> ModelResult:
    """Fit the plot type's topology on its latest training set, register it in MLflow and mirror it."""
    import mlflow

    from hydra_assets.ml.topologies import check_topology, training_defaults

    with db.read() as s:
        plot = catalog.get_plot_type(s, plot_type)
        training_set = latest_training_set(s, plot.id)
        if training_set is None:
            raise TrainingRefused(f"plot type {plot_type} has no training set yet; materialise training_set first")
        items = training_set_items(s, training_set.id)
        label_names = list(training_set.label_counts.get("label_names") or [])
    topology = options.topology or plot.topology
    default_epochs, default_batch, default_rate = training_defaults(topology)
    epochs = options.epochs or default_epochs
    batch_size = options.batch_size or default_batch
    learning_rate = options.learning_rate or default_rate
    input_size = tuple(options.input_size or (plot.input_height, plot.input_width))
    check_topology(topology, input_size)
    index = {name: k for k, name in enumerate(label_names)}
    missing = [p for _, p, _, _ in items if not Path(p).is_file()]
    if missing:
        raise TrainingRefused(f"{len(missing)} image file(s) of training set {training_set.id} are missing, "
                              f"e.g. {missing[0]}")
    split = {s: [(i, p, lab) for i, p, lab, sp in items if sp == s] for s in ("train", "validation")}
    targets = {s: np.array([index[lab] for _, _, lab in rows], dtype=np.int64) for s, rows in split.items()}
    paths = {s: [p for _, p, _ in rows] for s, rows in split.items()}
    in_memory = len(items) * input_size[0] * input_size[1] * 3 * 4 <= IN_MEMORY_LIMIT_BYTES
    emit("loading", images=len(items))
    data = {s: (load_images(paths[s], input_size) if in_memory else paths[s]) for s in paths}
    name = registered_model_name(plot_type)
    started = time.perf_counter()
    with tracking.start_run(run_name=f"{plot_type} {topology}", parent_run_id=training_set.mlflow_run_id or None,
                            tags=_tags(plot_type, dagster_run_id, "model", training_set_id=training_set.id)) as run:
        run_id = run.info.run_id
        mlflow.log_params({
            "topology": topology, "input_shape": f"{input_size[0]}x{input_size[1]}x3", "epochs": epochs,
            "batch_size": batch_size, "learning_rate": learning_rate, "sampling": training_set.sampling,
            "n_train": len(paths["train"]), "n_validation": len(paths["validation"]),
            "labels": ",".join(label_names), "training_set_id": training_set.id, "seed": options.seed,
            "weights_path": options.weights_path or "none",
        })
        emit("fit", epochs=epochs, topology=topology)
        model, history = fit((data["train"], targets["train"]), (data["validation"], targets["validation"]),
                             label_names, topology=topology, input_size=input_size, epochs=epochs,
                             batch_size=batch_size, learning_rate=learning_rate,
                             weights_path=options.weights_path, seed=options.seed, logger=logger)
        training_seconds = time.perf_counter() - started
        emit("predicting", images=len(items))
        weights = {s: predict(model, data[s], input_size) for s in data}
        top = weights["validation"].argmax(axis=1)
        metrics = {
            "val_accuracy": float(np.mean(top == targets["validation"])) if len(top) else None,
            "val_loss": history.get("val_loss", [None])[-1],
            "train_accuracy": history.get("accuracy", [None])[-1],
            "best_epoch": history.get("best_epoch"),
            "training_seconds": round(training_seconds, 2),
        }
        mlflow.log_metrics({k: v for k, v in (("training_seconds", training_seconds),
                                              ("final_val_accuracy", metrics["val_accuracy"]),
                                              ("best_epoch", metrics["best_epoch"])) if v is not None})
        tracking.log_figure(run_id, evaluation.history_figure(history, title=f"{plot_type} {topology}"),
                            "plots/loss_accuracy.png")
        matrix = evaluation.confusion(targets["validation"], top, len(label_names))
        tracking.log_figure(run_id, evaluation.confusion_figure(matrix, label_names,
                                                                title=f"{plot_type} validation (top label)"),
                            "plots/confusion_matrix_top_label.png")
        mlflow.log_dict(history, "history.json")
        emit("registering", name=name)
        # MLflow prints "Successfully registered model" straight to stderr; keep it in the run's log instead.
        with contextlib.redirect_stderr(io.StringIO()) as chatter:
            info = mlflow.keras.log_model(model, name="model", registered_model_name=name,
                                          pip_requirements=["tensorflow-cpu", "keras>=3"],
                                          metadata={"hydra_plot_type": plot_type, "label_names": label_names,
                                                    "input_size": list(input_size)})
        for line in chatter.getvalue().splitlines():
            logger.info(line)
        version = str(info.registered_model_version)
        cache = Path(config.models_dir) / name / version
        (cache / "data").mkdir(parents=True, exist_ok=True)
        model.save(cache / "data" / "model.keras")  # the trainer has the file: no download on this machine
        predictions = cache / PREDICTIONS_FILE
        np.savez_compressed(
            predictions,
            image_id=np.array([i for s in ("train", "validation") for i, _, _ in split[s]], dtype=np.int64),
            split=np.array(["train"] * len(split["train"]) + ["validation"] * len(split["validation"])),
            true_index=np.concatenate([targets["train"], targets["validation"]]),
            weights=np.concatenate([weights["train"], weights["validation"]]),
            label_names=np.array(label_names),
        )
        mlflow.log_artifact(str(predictions), "predictions")
        tracking.client.set_model_version_tag(name, version, "plot_type", plot_type)
        tracking.client.set_model_version_tag(name, version, "dagster_run_id", dagster_run_id or "none")
        tracking.client.set_model_version_tag(name, version, "training_set_id", str(training_set.id))

    def mirror(session: Session) -> int:
        row = Model(
            plot_type_id=plot.id, mlflow_name=name, mlflow_version=version, mlflow_run_id=run_id,
            model_uri=f"models:/{name}/{version}", topology=topology, input_height=input_size[0],
            input_width=input_size[1], input_channels=3, label_names=label_names, training_set_id=training_set.id,
            training_set_size=len(items), sampling=training_set.sampling, metrics=metrics,
            created_by=created_by or "training",
        )
        session.add(row)
        session.flush()
        return row.id

    model_id = db.write(mirror, what="mirror model version")
    emit("model", name=name, version=version, model_id=model_id)
    return ModelResult(model_id, name, version, f"models:/{name}/{version}", run_id, topology, input_size, epochs,
                       label_names, training_set.id, metrics, training_seconds)


# ---- predictions of a version --------------------------------------------------------------------


@dataclass
class Predictions:
    image_id: np.ndarray
    split: np.ndarray
    true_index: np.ndarray
    weights: np.ndarray
    label_names: list[str]

    def of(self, split: str) -> Predictions:
        keep = self.split == split
        return Predictions(self.image_id[keep], self.split[keep], self.true_index[keep], self.weights[keep],
                           self.label_names)


def load_predictions(config: HydraSettings, tracking: TrackingService, model: Model) -> Predictions:
    """The weights the fit recorded for its training and validation images (cached, else from MLflow)."""
    path = Path(config.models_dir) / model.mlflow_name / model.mlflow_version / PREDICTIONS_FILE
    if not path.is_file():
        if not model.mlflow_run_id:
            raise TrainingRefused(f"model {model.key} has no recorded predictions (it was not trained by Hydra)")
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent) as staging:
            fetched = tracking.client.download_artifacts(model.mlflow_run_id, f"predictions/{PREDICTIONS_FILE}",
                                                         staging)
            Path(fetched).replace(path)
    with np.load(path, allow_pickle=False) as data:
        return Predictions(data["image_id"], data["split"], data["true_index"], data["weights"],
                           [str(n) for n in data["label_names"]])


def latest_trained_model(session: Session, plot_type_id: int) -> Model | None:
    """The newest model version trained by Hydra (not a hand-registered local one)."""
    return session.scalar(select(Model).where(Model.plot_type_id == plot_type_id, Model.training_set_id.is_not(None),
                                              Model.mlflow_run_id != "").order_by(Model.id.desc()).limit(1))


# ---- thresholds and activation -------------------------------------------------------------------


@dataclass
class ThresholdsResult:
    model_id: int
    model_key: str
    thresholds: dict[str, float]
    f1: dict[str, float | None]
    validation: dict[str, Any]
    activated: bool
    activation_reason: str
    mlflow_run_id: str


def _macro_f1(report: dict[str, dict[str, Any]]) -> float:
    values = [r["f1"] for r in report.values() if r["support"]]
    return float(np.mean([v or 0.0 for v in values])) if values else 0.0


def _summary(weights: np.ndarray, true_index: np.ndarray, label_names: list[str], thresholds: dict[str, float],
             bad: list[str]) -> dict[str, Any]:
    per_label = evaluate_at_thresholds(weights, true_index, label_names, thresholds)
    bad_rows = [per_label[n] for n in label_names if n in bad and per_label[n]["support"]]
    bad_tp = sum(round((r["recall"] or 0) * r["support"]) for r in bad_rows)
    bad_support = sum(r["support"] for r in bad_rows)
    top = weights.argmax(axis=1) if len(weights) else np.zeros(0, dtype=int)
    return {
        "images": len(weights),
        "accuracy": float(np.mean(top == true_index)) if len(weights) else None,
        "macro_f1": _macro_f1(per_label),
        "bad_recall": bad_tp / bad_support if bad_support else None,
        "per_label": per_label,
    }


def thresholds_step(
    db: HydraDB,
    config: HydraSettings,
    tracking: TrackingService,
    plot_type: str,
    *,
    activate: str = "never",
    user: str = "training",
    dagster_run_id: str = "",
) -> ThresholdsResult:
    """Choose each label's max-F1 threshold on the validation set, store them, maybe activate the model.

    `activate`: never; always; if_better — when the new version beats the active one (mean per-label F1
    at each model's own thresholds) on the new validation set, or no model is active.
    """
    import mlflow

    from hydra_assets.ml.registry import activate_model, store_thresholds

    if activate not in ACTIVATION:
        raise TrainingRefused(f"activate must be one of {', '.join(ACTIVATION)}, not {activate!r}")
    with db.read() as s:
        plot = catalog.get_plot_type(s, plot_type)
        model = latest_trained_model(s, plot.id)
        if model is None:
            raise TrainingRefused(f"plot type {plot_type} has no trained model yet; materialise model first")
        bad = [lab.name for lab in catalog.labels_of(s, plot) if lab.is_bad]
        s.expunge(model)
    predictions = load_predictions(config, tracking, model)
    val = predictions.of("validation")
    names = predictions.label_names
    chosen = select_thresholds(val.weights, val.true_index, names, bad_labels=bad)
    values = {n: t.threshold for n, t in chosen.items()}
    summary = _summary(val.weights, val.true_index, names, values, bad)
    db.write(lambda s: store_thresholds(s, s.get(Model, model.id), {n: (t.threshold, t.f1) for n, t in chosen.items()},
                                        by="training"), what="store thresholds")

    def record_metrics(session: Session) -> None:
        row = session.get(Model, model.id)
        row.metrics = {**(row.metrics or {}), "validation": summary}

    db.write(record_metrics, what="record validation metrics")

    activated, reason = False, "not requested"
    if activate == "always":
        activated, reason = True, "requested"
    elif activate == "if_better":
        activated, reason = _beats_active(db, config, plot_type, model, val, summary, bad)
    with tracking.start_run(run_name=f"{plot_type} thresholds {model.key}", parent_run_id=model.mlflow_run_id,
                            tags=_tags(plot_type, dagster_run_id, "thresholds", model=model.key)) as run:
        run_id = run.info.run_id
        mlflow.log_params({"model": model.key, "n_validation": len(val.weights), "activate": activate})
        flat = {"val_accuracy": summary["accuracy"], "val_macro_f1": summary["macro_f1"],
                "val_bad_recall": summary["bad_recall"]}
        for name, row in summary["per_label"].items():
            for key in ("precision", "recall", "f1"):
                flat[f"{key}_{_metric_name(name)}"] = row[key]
            flat[f"threshold_{_metric_name(name)}"] = values[name]
        mlflow.log_metrics({k: float(v) for k, v in flat.items() if v is not None})
        table = {"label": names, "threshold": [values[n] for n in names], "f1": [chosen[n].f1 for n in names],
                 "precision": [summary["per_label"][n]["precision"] for n in names],
                 "recall": [summary["per_label"][n]["recall"] for n in names],
                 "support": [summary["per_label"][n]["support"] for n in names]}
        mlflow.log_table(table, "thresholds.json")
        mlflow.log_text(_csv(table), "thresholds.csv")
        decided = decided_index(val.weights, names, values)
        matrix = evaluation.confusion(val.true_index, decided, len(names))
        tracking.log_figure(run_id, evaluation.confusion_figure(matrix, names,
                                                                title=f"{plot_type} validation at thresholds"),
                            "plots/confusion_matrix.png")
        tracking.log_figure(run_id, evaluation.enhanced_confusion_figure(
            val.weights, val.true_index, names, thresholds=values,
            title=f"{plot_type} {model.key}: weight histograms (dashed: threshold)"),
            "plots/enhanced_confusion_matrix.png")
        mlflow.set_tag("activation", f"{activated}: {reason}")
    # The model's own run shows the thresholds table too, beside its curves.
    tracking.client.log_text(model.mlflow_run_id, _csv(table), "thresholds.csv")
    if activated:
        activate_model(db, config, plot_type, model.mlflow_version, user, reason=reason)
    emit("thresholds", thresholds=values, activated=activated)
    return ThresholdsResult(model.id, model.key, values, {n: t.f1 for n, t in chosen.items()}, summary, activated,
                            reason, run_id)


def _beats_active(db: HydraDB, config: HydraSettings, plot_type: str, model: Model, val: Predictions,
                  summary: dict[str, Any], bad: list[str]) -> tuple[bool, str]:
    from hydra_assets.ml.active import ModelLoadError, load_active_model

    try:
        active = load_active_model(db, config, plot_type)
    except ModelLoadError as error:
        return True, f"the active model cannot be loaded ({error})"
    if active is None:
        return True, "no model was active"
    if active.model_id == model.id:
        return False, "already active"
    with db.read() as s:
        paths = dict(s.execute(select(Image.id, Image.stored_path).where(Image.id.in_(val.image_id.tolist()))).all())
    images = load_images([paths[int(i)] for i in val.image_id], active.input_size)
    theirs = predict(active.keras_model, images, active.input_size)
    # Re-index the human labels into the active model's output order; labels it lacks count as misses.
    mapping = {k: (active.label_names.index(n) if n in active.label_names else -1)
               for k, n in enumerate(val.label_names)}
    true_theirs = np.array([mapping[int(t)] for t in val.true_index])
    thresholds = {n: active.thresholds.get(n, 0.5) for n in active.label_names}
    their_summary = _summary(theirs, true_theirs, active.label_names, thresholds, bad)
    ours, old = summary["macro_f1"], their_summary["macro_f1"]
    if ours > old:
        return True, f"macro F1 {ours:.4f} beats active {active.key} ({old:.4f}) on the same validation set"
    return False, f"macro F1 {ours:.4f} does not beat active {active.key} ({old:.4f})"


# ---- the training report -------------------------------------------------------------------------


@dataclass
class ReportResult:
    report_id: int
    model_key: str
    n_images: int
    n_disagreements: int
    by_split: dict[str, int]
    mlflow_run_id: str


def training_report_step(
    db: HydraDB,
    config: HydraSettings,
    tracking: TrackingService,
    plot_type: str,
    *,
    dagster_run_id: str = "",
    thumbnails: int = 24,
) -> ReportResult:
    """Every training and validation image where the model's top label is not the human one."""
    import mlflow

    with db.read() as s:
        plot = catalog.get_plot_type(s, plot_type)
        model = latest_trained_model(s, plot.id)
        if model is None:
            raise TrainingRefused(f"plot type {plot_type} has no trained model yet; materialise model first")
        label_ids = {lab.name: lab.id for lab in catalog.labels_of(s, plot)}
        s.expunge(model)
    predictions = load_predictions(config, tracking, model)
    names = predictions.label_names
    top = predictions.weights.argmax(axis=1)
    wrong = np.flatnonzero(top != predictions.true_index)
    # Most confident mistakes first: those are the labels (or models) an expert should look at.
    wrong = wrong[np.argsort(-predictions.weights[wrong, top[wrong]], kind="stable")]
    rows = [
        {"image_id": int(predictions.image_id[k]), "split": str(predictions.split[k]),
         "human": names[int(predictions.true_index[k])], "model": names[int(top[k])],
         "weight": float(predictions.weights[k, top[k]]),
         "weights": {n: round(float(w), 6) for n, w in zip(names, predictions.weights[k], strict=True)}}
        for k in wrong
    ]

    def write(session: Session) -> int:
        report = TrainingReport(model_id=model.id, n_images=len(predictions.image_id), n_disagreements=len(rows))
        session.add(report)
        session.flush()
        session.add_all(TrainingReportItem(report_id=report.id, image_id=r["image_id"], split=r["split"],
                                           human_label_id=label_ids.get(r["human"]),
                                           model_label_id=label_ids.get(r["model"]), model_weight=r["weight"],
                                           weights=r["weights"]) for r in rows)
        session.flush()
        return report.id

    report_id = db.write(write, what="training report")
    by_split = dict(Counter(r["split"] for r in rows))
    with tracking.start_run(run_name=f"{plot_type} training report {model.key}", parent_run_id=model.mlflow_run_id,
                            tags=_tags(plot_type, dagster_run_id, "training_report", model=model.key)) as run:
        run_id = run.info.run_id
        mlflow.log_params({"model": model.key, "n_images": len(predictions.image_id)})
        mlflow.log_metrics({"disagreements": len(rows), **{f"disagreements_{k}": v for k, v in by_split.items()}})
        mlflow.log_text("image_id,split,human,model,weight\n" + "\n".join(
            f"{r['image_id']},{r['split']},{r['human']},{r['model']},{r['weight']:.6f}" for r in rows),
            "training_report.csv")
        if rows and thumbnails:
            with db.read() as s:
                shown = rows[:thumbnails]
                paths = dict(s.execute(select(Image.id, Image.stored_path)
                                       .where(Image.id.in_([r["image_id"] for r in shown]))).all())
            images = [load_images([paths[r["image_id"]]], (96, 96))[0] for r in shown if r["image_id"] in paths]
            captions = [f"#{r['image_id']} {r['split'][:5]}\nhuman {r['human']} / model {r['model']} "
                        f"{r['weight']:.2f}" for r in shown if r["image_id"] in paths]
            tracking.log_figure(run_id, evaluation.thumbnails_figure(
                images, captions, title=f"{plot_type} {model.key}: disagreements"), "plots/disagreements.png")

    def link(session: Session) -> None:
        session.get(TrainingReport, report_id).mlflow_run_id = run_id

    db.write(link, what="link training report run")
    emit("training_report", report_id=report_id, disagreements=len(rows))
    return ReportResult(report_id, model.key, len(predictions.image_id), len(rows), by_split, run_id)


# ---- helpers -------------------------------------------------------------------------------------


def _tags(plot_type: str, dagster_run_id: str, step: str, **extra: Any) -> dict[str, Any]:
    return {"plot_type": plot_type, "dagster_run_id": dagster_run_id or "none", "hydra.step": step,
            **{f"hydra.{k}": v for k, v in extra.items()}}


def _metric_name(label: str) -> str:
    """MLflow metric names allow letters, digits, _ - . / and space only."""
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in label)


def _csv(table: dict[str, list[Any]]) -> str:
    keys = list(table)
    lines = [",".join(keys)]
    for i in range(len(table[keys[0]])):
        lines.append(",".join("" if table[k][i] is None else str(table[k][i]) for k in keys))
    return "\n".join(lines) + "\n"


def to_json(result: Any) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(result), default=str))


__all__ = [
    "TrainOptions",
    "TrainingRefused",
    "TrainingSetOptions",
    "add_progress_listener",
    "configure_tensorflow",
    "create_training_set",
    "fit",
    "load_images",
    "load_predictions",
    "plan_training_set",
    "predict",
    "thresholds_step",
    "train_model_step",
    "training_report_step",
]
