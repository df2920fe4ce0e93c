"""The model step: fit the plot type's topology on its latest training set, register it, record its predictions.

The new version goes to the MLflow registry (``hydra-<plot_type>``) and is mirrored as a `models` row; the
weights it gives its own training and validation images go to its predictions file (`predictions`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from hydra_assets import catalog
from hydra_assets.db.models import Model
from hydra_assets.ml import evaluation
from hydra_assets.ml.fit import fit, load_images, predict
from hydra_assets.ml.predictions import PREDICTIONS_FILE, Predictions, save_predictions
from hydra_assets.ml.steps import TrainingRefused, emit, run_tags
from hydra_assets.ml.training_set import latest_training_set, training_set_items
from hydra_assets.tracking import TrackingService, registered_model_name

if TYPE_CHECKING:
    from hydra_assets.db.engine import HydraDB
    from hydra_assets.settings import HydraSettings

log = logging.getLogger(__name__)
IN_MEMORY_LIMIT_BYTES = 768 * 2**20  # larger training sets are streamed from disk batch by batch


@dataclass(frozen=True)
class TrainOptions:
    topology: str | None = None  # None: the plot type's
    epochs: int | None = None  # None: the topology's default
    batch_size: int | None = None
    learning_rate: float | None = None
    input_size: tuple[int, int] | None = None  # None: the plot type's
    weights_path: str | None = None
    seed: int = 12345


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
                            tags=run_tags(plot_type, dagster_run_id, "model", training_set_id=training_set.id)) as run:
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
        save_predictions(predictions, Predictions(
            image_id=np.array([i for s in ("train", "validation") for i, _, _ in split[s]], dtype=np.int64),
            split=np.array(["train"] * len(split["train"]) + ["validation"] * len(split["validation"])),
            true_index=np.concatenate([targets["train"], targets["validation"]]),
            weights=np.concatenate([weights["train"], weights["validation"]]),
            label_names=list(label_names),
        ))
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


def latest_trained_model(session: Session, plot_type_id: int) -> Model | None:
    """The newest model version trained by Hydra (not a hand-registered local one)."""
    return session.scalar(select(Model).where(Model.plot_type_id == plot_type_id, Model.training_set_id.is_not(None),
                                              Model.mlflow_run_id != "").order_by(Model.id.desc()).limit(1))


__all__ = ["IN_MEMORY_LIMIT_BYTES", "ModelResult", "TrainOptions", "latest_trained_model", "train_model_step"]
