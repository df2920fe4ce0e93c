"""The model step: fit the plot type's topology on its latest training set, register it, record its predictions.

The new version goes to the MLflow registry (``hydra-<plot_type>``) and is mirrored as a `models` row; the
weights it gives its own training and validation images go to its predictions file (`predictions`).

With a training set split into cross-validation folds over runs (few labeled runs), one model per fold
predicts its held-out run first (the out-of-fold predictions are the validation predictions), then the
registered model is fit on every image.  The novelty reference of the registered model (its embedding of
its training images, `hydra_assets.scores.novelty`) is saved beside it as ``novelty.npz`` and logged to
its MLflow run as ``novelty/novelty.npz``.
Last, the version's label checks (the audit queue) are written from out-of-fold weights
(`hydra_assets/label_audit.py`).
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

from hydra_assets import catalog, label_audit
from hydra_assets.db.models import Model
from hydra_assets.mask_versions import current_mask
from hydra_assets.masks import Region, validate_regions
from hydra_assets.ml import evaluation
from hydra_assets.ml.fit import embed_all, fit, load_images
from hydra_assets.ml.predictions import PREDICTIONS_FILE, Predictions, save_predictions
from hydra_assets.ml.steps import TrainingRefused, emit, run_tags
from hydra_assets.ml.training_set import FOLD_PREFIX, latest_training_set, training_set_items
from hydra_assets.rules import is_novel
from hydra_assets.scores import novelty
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
    augment: bool = False  # light shifts, stretches and brightness changes while training (`fit.augmenter`);
    # off by default: on drifting synthetic runs it lowered the later runs' ROC-AUC (docs/models.md)


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
        # The plot type's mask now: applied to every training and validation input, recorded on the version.
        mask_row = current_mask(s, plot.id)
        mask_id, mask = (mask_row.id, validate_regions(mask_row.regions)) if mask_row else (None, [])
    topology = options.topology or plot.topology
    default_epochs, default_batch, default_rate = training_defaults(topology)
    settings = _FitSettings(topology=topology, epochs=options.epochs or default_epochs,
                            batch_size=options.batch_size or default_batch,
                            learning_rate=options.learning_rate or default_rate,
                            input_size=tuple(options.input_size or (plot.input_height, plot.input_width)),
                            weights_path=options.weights_path, seed=options.seed, augment=options.augment,
                            mask=tuple(mask))
    epochs, batch_size, learning_rate, input_size = (settings.epochs, settings.batch_size, settings.learning_rate,
                                                     settings.input_size)
    check_topology(topology, input_size)
    index = {name: k for k, name in enumerate(label_names)}
    missing = [p for _, p, *_ in items if not Path(p).is_file()]
    if missing:
        raise TrainingRefused(f"{len(missing)} image file(s) of training set {training_set.id} are missing, "
                              f"e.g. {missing[0]}")
    splits = np.array([sp for _, _, _, sp, _ in items])
    folds = sorted({sp for sp in splits if sp.startswith(FOLD_PREFIX)}, key=lambda f: int(f[len(FOLD_PREFIX):]))
    targets = np.array([index[lab] for _, _, lab, _, _ in items], dtype=np.int64)
    runs = np.array([run for *_, run in items], dtype=np.int64)
    all_image_ids = np.array([item[0] for item in items], dtype=np.int64)
    in_memory = len(items) * input_size[0] * input_size[1] * 3 * 4 <= IN_MEMORY_LIMIT_BYTES
    emit("loading", images=len(items))
    paths = [p for _, p, *_ in items]
    data = load_images(paths, input_size, mask) if in_memory else paths  # paths: masked as read
    # The registered model trains on the train split, or on every image under cross-validation / one run.
    train_at = np.flatnonzero(splits == "train") if not folds else np.arange(len(items))
    validation_at = np.flatnonzero(splits == "validation")
    name = registered_model_name(plot_type)
    started = time.perf_counter()
    with tracking.start_run(run_name=f"{plot_type} {topology}", parent_run_id=training_set.mlflow_run_id or None,
                            tags=run_tags(plot_type, dagster_run_id, "model", training_set_id=training_set.id)) as run:
        run_id = run.info.run_id
        mlflow.log_params({
            "topology": topology, "input_shape": f"{input_size[0]}x{input_size[1]}x3", "epochs": epochs,
            "batch_size": batch_size, "learning_rate": learning_rate, "sampling": training_set.sampling,
            "n_train": len(train_at), "n_validation": len(validation_at) if not folds else len(items),
            "labels": ",".join(label_names), "training_set_id": training_set.id, "seed": options.seed,
            "weights_path": options.weights_path or "none", "augment": options.augment,
            "split": training_set.label_counts.get("split", "runs"), "folds": len(folds),
            "mask_version": mask_row.version if mask_row else 0, "mask_regions": len(mask),
        })
        out_of_fold, fold_novel = None, None
        if folds:
            out_of_fold, fold_novel, fold_histories = _cross_validate(data, targets, splits, folds, label_names,
                                                                      settings, logger)
            for fold, fold_history in fold_histories.items():
                mlflow.log_dict(fold_history, f"folds/{fold}_history.json")
        emit("fit", epochs=epochs, topology=topology)
        validation = None if folds or not len(validation_at) else (_subset(data, validation_at),
                                                                   targets[validation_at])
        model, history = fit((_subset(data, train_at), targets[train_at]), validation, label_names,
                             topology=topology, input_size=input_size, epochs=epochs, batch_size=batch_size,
                             learning_rate=learning_rate, weights_path=options.weights_path, seed=options.seed,
                             augment=options.augment, logger=logger, mask=mask)
        training_seconds = time.perf_counter() - started
        emit("predicting", images=len(items))
        features, all_weights = embed_all(model, data, input_size, mask=mask)
        if out_of_fold is not None:
            val_weights, val_targets = out_of_fold, targets
        else:
            val_weights, val_targets = all_weights[validation_at], targets[validation_at]
        top = val_weights.argmax(axis=1)
        metrics = {
            "val_accuracy": float(np.mean(top == val_targets)) if len(top) else None,
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
        if len(top):
            matrix = evaluation.confusion(val_targets, top, len(label_names))
            what = "out-of-fold" if folds else "held-out runs"
            tracking.log_figure(run_id, evaluation.confusion_figure(
                matrix, label_names, title=f"{plot_type} validation, {what} (top label)"),
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
        rows = np.concatenate([train_at, np.arange(len(items)) if folds else validation_at])
        save_predictions(predictions, Predictions(
            image_id=np.array([items[k][0] for k in rows], dtype=np.int64),
            split=np.array(["train"] * len(train_at) + ["validation"] * (len(rows) - len(train_at))),
            true_index=targets[rows],
            weights=np.concatenate([all_weights[train_at], val_weights]),
            label_names=list(label_names),
            run=runs[rows],
        ))
        mlflow.log_artifact(str(predictions), "predictions")
        metrics["novelty"] = _calibrate_novelty(features, train_at, validation_at, fold_novel, cache, logger)
        if metrics["novelty"] is not None:
            mlflow.log_artifact(str(cache / novelty.FILE_NAME), "novelty")
            mlflow.log_metrics({"novelty_limit": metrics["novelty"]["limit"]}
                               | ({"novelty_validation_rate": metrics["novelty"]["validation_rate"]}
                                  if metrics["novelty"]["validation_rate"] is not None else {}))
        # Out-of-fold weights for the label audit (hydra_assets/label_audit.py): checks written once mirrored.
        audit_weights = label_audit.out_of_fold_weights(targets, out_of_fold, features, len(label_names),
                                                        seed=options.seed)
        if audit_weights is not None:
            label_audit.save_out_of_fold(cache / label_audit.OUT_OF_FOLD_FILE, all_image_ids, *audit_weights)
            mlflow.log_artifact(str(cache / label_audit.OUT_OF_FOLD_FILE), "label_audit")
        tracking.client.set_model_version_tag(name, version, "plot_type", plot_type)
        tracking.client.set_model_version_tag(name, version, "dagster_run_id", dagster_run_id or "none")
        tracking.client.set_model_version_tag(name, version, "training_set_id", str(training_set.id))

    def mirror(session: Session) -> int:
        row = Model(
            plot_type_id=plot.id, mlflow_name=name, mlflow_version=version, mlflow_run_id=run_id,
            model_uri=f"models:/{name}/{version}", topology=topology, input_height=input_size[0],
            input_width=input_size[1], input_channels=3, label_names=label_names, training_set_id=training_set.id,
            training_set_size=len(items), sampling=training_set.sampling, metrics=metrics,
            created_by=created_by or "training", mask_id=mask_id,
        )
        session.add(row)
        session.flush()
        return row.id

    model_id = db.write(mirror, what="mirror model version")
    if audit_weights is not None:
        label_audit.record_after_training(db, model_id, all_image_ids, *audit_weights, logger=logger)
    emit("model", name=name, version=version, model_id=model_id)
    return ModelResult(model_id, name, version, f"models:/{name}/{version}", run_id, topology, input_size, epochs,
                       label_names, training_set.id, metrics, training_seconds)


@dataclass(frozen=True)
class _FitSettings:
    topology: str
    epochs: int
    batch_size: int
    learning_rate: float
    input_size: tuple[int, int]
    weights_path: str | None
    seed: int
    augment: bool
    mask: tuple[Region, ...] = ()


def _subset(data: np.ndarray | list[str], at: np.ndarray) -> np.ndarray | list[str]:
    return data[at] if isinstance(data, np.ndarray) else [data[k] for k in at]


def _cross_validate(data: np.ndarray | list[str], targets: np.ndarray, splits: np.ndarray, folds: list[str],
                    label_names: list[str], settings: _FitSettings, logger: Any
                    ) -> tuple[np.ndarray, tuple[int, int] | None, dict[str, dict[str, Any]]]:
    """Fit one model per fold (every run but the fold's), each predicting its held-out run.

    Returns the out-of-fold weights (image order), (novel, scored) counts of the held-out images against
    each fold's own novelty reference (None without an embedding), and each fold's history.  The folds
    keep their last epoch: picking the epoch on the held-out run would make its predictions optimistic.
    """
    out = np.zeros((len(targets), len(label_names)), dtype=np.float32)
    novel, scored, has_embedding = 0, 0, True
    histories: dict[str, dict[str, Any]] = {}
    for fold in folds:
        held = np.flatnonzero(splits == fold)
        kept = np.flatnonzero(splits != fold)
        emit("fold", fold=fold, folds=len(folds), images=len(held))
        logger.info(f"cross-validation {fold}: training on {len(kept)} images, predicting {len(held)} held out")
        model, history = fit((_subset(data, kept), targets[kept]), (_subset(data, held), targets[held]), label_names,
                             topology=settings.topology, input_size=settings.input_size, epochs=settings.epochs,
                             batch_size=settings.batch_size, learning_rate=settings.learning_rate,
                             weights_path=settings.weights_path, seed=settings.seed, keep_best=False,
                             augment=settings.augment, metric_prefix=f"{fold}_", logger=logger, mask=settings.mask)
        histories[fold] = history
        held_features, out[held] = embed_all(model, _subset(data, held), settings.input_size, mask=settings.mask)
        kept_features, _ = embed_all(model, _subset(data, kept), settings.input_size, mask=settings.mask)
        if held_features is None or kept_features is None or len(kept) < 2:
            has_embedding = False
            continue
        reference = novelty.calibrate(kept_features)
        novel += int(sum(is_novel(s, reference.limit) for s in reference.scores(held_features)))
        scored += len(held)
    return out, ((novel, scored) if has_embedding else None), histories


def _calibrate_novelty(features: np.ndarray | None, train_at: np.ndarray, validation_at: np.ndarray,
                       fold_novel: tuple[int, int] | None, cache: Path, logger: Any) -> dict[str, Any] | None:
    """Calibrate the registered model's novelty reference on its training images and save it beside the model.

    `validation_rate` is the share of run-held-out validation images above the limit: the registered
    model's reference scores the validation runs, or under cross-validation each fold's model scored its
    held-out run against a reference calibrated on its own training folds (`fold_novel`).  None with one run.
    """
    if features is None or len(train_at) < 2:
        logger.warning("this topology has no embedding layer: its inferences carry no novelty score")
        return None
    reference = novelty.calibrate(features[train_at])
    novelty.save(reference, cache / novelty.FILE_NAME)
    rate = None
    if fold_novel is not None and fold_novel[1]:
        rate = fold_novel[0] / fold_novel[1]
    elif fold_novel is None and len(validation_at):
        scores = reference.scores(features[validation_at])
        rate = float(np.mean([is_novel(s, reference.limit) for s in scores]))
    return {"limit": reference.limit, "quantile": reference.quantile, "neighbours": reference.neighbours,
            "method": reference.method, "validation_rate": rate, "train_images": len(train_at)}


def latest_trained_model(session: Session, plot_type_id: int) -> Model | None:
    """The newest model version trained by Hydra (not a hand-registered local one)."""
    return session.scalar(select(Model).where(Model.plot_type_id == plot_type_id, Model.training_set_id.is_not(None),
                                              Model.mlflow_run_id != "").order_by(Model.id.desc()).limit(1))


__all__ = ["IN_MEMORY_LIMIT_BYTES", "ModelResult", "TrainOptions", "latest_trained_model", "train_model_step"]
