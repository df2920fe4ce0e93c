"""The network side of training: TensorFlow's threads, image pixels, the fit, and weights for images.

TensorFlow and Keras are imported inside the functions, so importing this module (as the steps, the CLI
and the pages do) costs nothing until a model is actually fitted.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hydra_assets.masks import Region, apply_mask
from hydra_assets.ml.steps import TrainingRefused, emit
from hydra_assets.settings import load_settings

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)


def configure_tensorflow(threads: int | None = None) -> None:
    """Limit TensorFlow's thread pools (a shared 2-core box); only possible before its first op."""
    import tensorflow as tf

    threads = threads or load_settings().tf_threads or (os.cpu_count() or 2)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
    except RuntimeError:  # TensorFlow already running in this process: keep what it has
        pass


# ---- pixels --------------------------------------------------------------------------------------


def load_images(paths: Sequence[str], size: tuple[int, int], mask: Sequence[Region] = ()) -> np.ndarray:
    """Float32 RGB in [0, 1] at (height, width), refusing a missing or unreadable file by name; the
    rectangles of `mask` blanked (the plot type's mask, `hydra_assets.masks`)."""
    from hydra_assets.images import load_rgb

    out = np.empty((len(paths), size[0], size[1], 3), dtype=np.float32)
    for k, path in enumerate(paths):
        try:
            out[k] = load_rgb(Path(path), size)
        except (OSError, ValueError) as error:
            raise TrainingRefused(f"cannot read training image {path}: {error}") from error
    return apply_mask(out, mask)


def augmenter(seed: int) -> Any:
    """Light, training-only changes like those between runs of a monitoring plot: the feature moves a little
    (horizontal shift up to 6 %, a little vertically), stretches (zoom up to 8 %) and its brightness shifts.

    Gain and timing drifts move and stretch a peak; luminosity changes the fill of a histogram.  A model
    that has seen such variants of its Good images is less surprised by the next run's.
    """
    import keras

    return keras.Sequential([
        keras.layers.RandomTranslation(0.02, 0.06, fill_mode="nearest", seed=seed),
        keras.layers.RandomZoom(0.04, 0.08, fill_mode="nearest", seed=seed + 1),
        keras.layers.RandomBrightness(0.06, value_range=(0.0, 1.0), seed=seed + 2),
    ], name="augment")


def _batches(images: np.ndarray | Sequence[str], targets: np.ndarray, size: tuple[int, int], batch_size: int, *,
             shuffle: bool, seed: int, augment: Any = None, mask: Sequence[Region] = ()) -> Any:
    """Batches of an array or of image files read from disk batch by batch (training sets too large to hold
    in memory), each changed by `augment` (a Keras layer, training mode) when given, then masked: a shift
    must not move pixels into the rectangles the model never sees at inference."""
    import keras

    class Batches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__(workers=1, use_multiprocessing=False)
            self.order = np.arange(len(images))
            self.rng = np.random.default_rng(seed)
            self.on_epoch_end()

        def __len__(self) -> int:
            return (len(images) + batch_size - 1) // batch_size

        def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
            chosen = self.order[index * batch_size:(index + 1) * batch_size]
            in_memory = isinstance(images, np.ndarray)
            batch = images[chosen] if in_memory else load_images([images[i] for i in chosen], size, mask)
            if augment is not None:
                batch = np.clip(np.asarray(augment(batch, training=True)), 0.0, 1.0).astype(np.float32)
                batch = apply_mask(batch, mask)
            return batch, targets[chosen]

        def on_epoch_end(self) -> None:
            if shuffle:
                self.rng.shuffle(self.order)

    return Batches()


def class_weights(targets: np.ndarray, n_labels: int) -> dict[int, float]:
    """Weights that give every label present the same total weight in the loss (1.0 each when balanced)."""
    counts = np.bincount(np.asarray(targets, dtype=np.int64), minlength=n_labels)
    present = counts > 0
    return {k: float(len(targets) / (present.sum() * counts[k])) if counts[k] else 1.0 for k in range(n_labels)}


# ---- the fit -------------------------------------------------------------------------------------


class _Reporter:
    """Keras callback: per-epoch metrics to MLflow and the log, batch progress to listeners."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        import keras

        class Reporter(keras.callbacks.Callback):
            def __init__(self, epochs: int, logger: logging.Logger | Any, prefix: str = "") -> None:
                super().__init__()
                self.epochs, self.logger, self.started = epochs, logger, time.perf_counter()
                self.prefix = prefix  # a cross-validation fold's metrics apart from the registered model's

            def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
                emit("batch", epoch=self.epoch, batch=batch + 1, batches=self.params.get("steps"))

            def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
                self.epoch = epoch + 1

            def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
                import mlflow

                values = {k: float(v) for k, v in (logs or {}).items() if np.isscalar(v)}
                if mlflow.active_run() is not None:
                    mlflow.log_metrics({f"{self.prefix}{k}": v for k, v in values.items()}, step=epoch + 1)
                text = " ".join(f"{k}={v:.4f}" for k, v in values.items())
                self.logger.info(f"{self.prefix}epoch {epoch + 1}/{self.epochs} {text} "
                                 f"({time.perf_counter() - self.started:.1f}s)")
                emit("epoch", epoch=epoch + 1, epochs=self.epochs, **values)

        return Reporter(*args, **kwargs)


def fit(
    train: tuple[np.ndarray | Sequence[str], np.ndarray],
    validation: tuple[np.ndarray | Sequence[str], np.ndarray] | None,
    label_names: Sequence[str],
    *,
    topology: str,
    input_size: tuple[int, int],
    epochs: int,
    batch_size: int,
    learning_rate: float,
    weights_path: str | None = None,
    seed: int = 12345,
    keep_best: bool = True,
    augment: bool = False,
    metric_prefix: str = "",
    logger: Any = log,
    mask: Sequence[Region] = (),
) -> tuple[keras.Model, dict[str, Any]]:
    """Build the topology and fit it; inputs are arrays (masked already) or, for large sets, lists of image
    paths (masked with `mask` as they are read, like augmented batches).

    The learning rate decays along a cosine to 5 % by the last epoch, and (`keep_best`) the weights of the
    epoch with the lowest validation loss are kept (`history["best_epoch"]`): on a few hundred images the
    validation accuracy swings from epoch to epoch, and the last epoch is then a lottery.  Without
    `validation` (the model of a cross-validation fit on every image) or with `keep_best` off (the folds,
    whose held-out run must stay unseen) the last epoch is kept.  `augment` trains on lightly changed
    copies (`augmenter`); labels are weighted so each counts the same (`class_weights`).
    """
    import keras

    from hydra_assets.ml.topologies import build_model

    keras.utils.set_random_seed(seed)
    model = build_model(topology, (*input_size, 3), len(label_names), weights_path=weights_path)
    (x_train, y_train), (x_val, y_val) = train, (validation or (None, None))
    steps = max(1, (len(x_train) + batch_size - 1) // batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=epochs * steps, alpha=0.05)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    best = _BestWeights()
    callbacks = [_Reporter(epochs, logger, metric_prefix)] + ([best] if keep_best and validation is not None else [])
    weights = class_weights(y_train, len(label_names))
    if isinstance(x_train, np.ndarray) and not augment:
        history = model.fit(x_train, y_train, validation_data=None if validation is None else (x_val, y_val),
                            epochs=epochs, batch_size=batch_size, shuffle=True, verbose=0, callbacks=callbacks,
                            class_weight=weights)
    else:
        history = model.fit(_batches(x_train, y_train, input_size, batch_size, shuffle=True, seed=seed,
                                     augment=augmenter(seed) if augment else None, mask=mask),
                            validation_data=None if validation is None else (
                                (x_val, y_val) if isinstance(x_val, np.ndarray)
                                else _batches(x_val, y_val, input_size, batch_size, shuffle=False, seed=seed,
                                              mask=mask)),
                            epochs=epochs, verbose=0, callbacks=callbacks, class_weight=weights)
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


def embed_all(model: keras.Model, images: np.ndarray | Sequence[str], input_size: tuple[int, int], *,
              batch_size: int = 256, mask: Sequence[Region] = ()) -> tuple[np.ndarray | None, np.ndarray]:
    """(embeddings or None, weights) for arrays (masked already) or paths (masked with `mask` as read), in
    batches (one forward pass gives both)."""
    from hydra_assets.ml.embedding import embed

    features: list[np.ndarray] = []
    weights: list[np.ndarray] = []
    has_embedding = True
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        batch = chunk if isinstance(chunk, np.ndarray) else load_images(list(chunk), input_size, mask)
        f, w = embed(model, batch)
        weights.append(w)
        if f is None:
            has_embedding = False
        else:
            features.append(f)
    if not weights:
        return embed(model, np.zeros((0, *input_size, 3), np.float32))
    return (np.concatenate(features) if has_embedding else None), np.concatenate(weights)


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


__all__ = ["augmenter", "class_weights", "configure_tensorflow", "embed_all", "fit", "load_images", "predict"]
