"""Classifying a batch with a plot type's active model in this process: what Predict and the predictor
service both call.

`InProcessClassifier` loads the active model once per version (the model cache of `hydra_assets.ml.active`)
and runs it as one traced graph; GradCAM overlays are written for Bad classifications.  `Classifier` is
what Predict needs from it or from the warm service's client (`hydra_assets.ingest.predictor`).

A model version with a novelty reference (`ActiveModel.novelty`) answers its embedding in the same traced
pass as its weights, and each image gets a novelty score: how unlike the training images it is.

The plain forward pass (weights, embedding) runs on ONNX Runtime where `HYDRA_INFERENCE_ENGINE` allows it
(`hydra_assets.ml.onnx_engine`: 1.1-3.3x Keras on the compact model, docs/models.md); GradCAM needs gradients and
always runs on Keras.  Whatever goes wrong with ONNX Runtime, the Keras graph answers.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from hydra_assets.db.engine import HydraDB
from hydra_assets.settings import HydraSettings

log = logging.getLogger(__name__)
BATCH = 64  # images per forward pass: bounded memory for 299 px inputs, full speed for small ones


class InputSizeMismatch(ValueError):
    """The batch was prepared for another input size than the active model's (activated meanwhile)."""

    def __init__(self, size: tuple[int, int]) -> None:
        super().__init__(f"the active model expects {size[0]}x{size[1]} inputs")
        self.size = (int(size[0]), int(size[1]))


@dataclass
class BatchPrediction:
    """Output of one batch: every label's weight per image, which model version gave them, GradCAM paths,
    and each image's novelty score with the version's limit (None: the version has no novelty reference)."""

    model_id: int
    model_key: str
    label_names: list[str]
    bad_labels: list[str]
    weights: np.ndarray  # (N, n_labels)
    gradcams: dict[int, str] = field(default_factory=dict)  # batch index -> overlay path (Bad only)
    novelty: np.ndarray | None = None  # (N,) novelty scores
    novelty_limit: float | None = None
    load_ms: float = 0.0
    infer_ms: float = 0.0  # forward pass and novelty scores
    novelty_ms: float = 0.0  # of which the novelty scores (nearest training images)
    gradcam_ms: float = 0.0
    where: str = "in-process"
    engine: str = "keras"  # of the forward pass: keras or onnxruntime


class Classifier(Protocol):
    def classify(
        self, plot_type: str, images: np.ndarray, gradcam_paths: Sequence[str | None], *,
        expected_key: str | None = None,
    ) -> BatchPrediction | None:
        """Weights for `images` (N, H, W, 3 uint8) with the plot type's active model; None without one.

        `expected_key` is the active version the caller just read: when the loaded model is that version,
        the database is not asked again.  Raises `ModelLoadError` when the model file cannot be loaded and
        `InputSizeMismatch` when the images were prepared for another input size.
        """


_FORWARD: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()


def forward(model: Any) -> Any:
    """The model's forward pass as one traced TensorFlow graph (any batch size), made once per model.

    Calling a Keras model eagerly dispatches every layer from Python: ~30-40 ms per call on 2 busy cores
    for the compact model whatever the batch, which dominates a Hall with 80 plot types of one image each.
    The traced graph answers the same weights in a few ms.  Weakly keyed: a replaced model is not kept.
    """
    fn = _FORWARD.get(model)
    if fn is None:
        import tensorflow as tf

        spec = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)
        fn = tf.function(lambda x: model(x, training=False), input_signature=[spec])
        _FORWARD[model] = fn
    return fn


def engine_of(active: Any) -> str:
    """The engine the next forward pass of `active` runs on (converting the version on first use)."""
    from hydra_assets.ml.onnx_engine import runner_for

    return "keras" if runner_for(active) is None else "onnxruntime"


def _on_onnx(active: Any, run: Any) -> Any:
    """`run(runner)` on the version's ONNX Runtime runner; None when it has none or the run fails (then
    the version stays on Keras in this process, with the reason logged)."""
    from hydra_assets.ml import onnx_engine

    runner = onnx_engine.runner_for(active)
    if runner is None:
        return None
    try:
        return run(runner)
    except Exception as error:  # onnxruntime raises its own kinds: Keras answers this batch and the next
        onnx_engine.forget(active, error)
        return None


def predict_weights(active: Any, floats: np.ndarray, batch: int = BATCH) -> np.ndarray:
    """Weights (N, n_labels) of float32 images in [0, 1], in slices of `batch`, through the traced graph."""
    if len(floats) == 0:
        return np.zeros((0, len(active.label_names)), np.float32)
    weights = _on_onnx(active, lambda runner: runner.weights(floats, batch))
    if weights is not None:
        return weights
    try:
        fn = forward(active.keras_model)
        parts = [np.asarray(fn(floats[i : i + batch])) for i in range(0, len(floats), batch)]
    except (TypeError, ValueError):  # a model that cannot be traced: the eager call of the ML contract
        parts = [active.predict(floats[i : i + batch]) for i in range(0, len(floats), batch)]
    return np.concatenate(parts).astype(np.float32)


_FORWARD_BOTH: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()


def forward_with_embedding(model: Any) -> Any | None:
    """`forward` of the model that also answers its embedding: (embedding, weights) in one traced pass.

    None when the model has no embedding (`ml/embedding.py`); made once per model, like `forward`.
    """
    if model in _FORWARD_BOTH:
        return _FORWARD_BOTH[model]
    from hydra_assets.ml.embedding import with_embedding

    both = with_embedding(model)
    fn = None
    if both is not None:
        import tensorflow as tf

        spec = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)
        # `with_embedding` builds on `model.inputs`, a list: called with one, Keras does not warn about structure
        fn = tf.function(lambda x: both([x], training=False), input_signature=[spec])
    _FORWARD_BOTH[model] = fn
    return fn


def _embeddings_and_weights(active: Any, floats: np.ndarray, batch: int) -> tuple[np.ndarray | None, np.ndarray]:
    both = _on_onnx(active, lambda runner: runner.embeddings_and_weights(floats, batch) if runner.has_embedding
                    else None)
    if both is not None:
        return both
    fn = forward_with_embedding(active.keras_model)
    if fn is None:
        return None, predict_weights(active, floats, batch)
    try:
        parts = [fn(floats[i : i + batch]) for i in range(0, len(floats), batch)]
    except (TypeError, ValueError):  # cannot be traced: the eager pass of ml/embedding
        from hydra_assets.ml.embedding import embed

        return embed(active.keras_model, floats, batch=batch)
    features = np.concatenate([np.asarray(f) for f, _ in parts]).reshape(len(floats), -1)
    return features.astype(np.float32), np.concatenate([np.asarray(w) for _, w in parts]).astype(np.float32)


def predict_scored(active: Any, floats: np.ndarray, batch: int = BATCH) -> tuple[np.ndarray, np.ndarray | None, float]:
    """(weights (N, n_labels), novelty scores (N,) or None, ms spent on the scores) of float32 images.

    Without a novelty reference this is `predict_weights`: no embedding is computed.  A reference whose
    features do not fit the model's embedding (a file from another version) gives no scores, with a warning.
    """
    reference = getattr(active, "novelty", None)
    if reference is None or len(floats) == 0:
        scores = None if reference is None else np.zeros(0, np.float64)
        return predict_weights(active, floats, batch), scores, 0.0
    features, weights = _embeddings_and_weights(active, floats, batch)
    if features is None or features.shape[1] != reference.features.shape[1]:
        log.warning("%s: no novelty scores: the model's embedding (%s) does not fit its novelty reference (%s)",
                    active.key, None if features is None else features.shape[1], reference.features.shape[1])
        return weights, None, 0.0
    started = time.perf_counter()
    with _one_thread():
        scores = reference.scores(features)
    return weights, scores, (time.perf_counter() - started) * 1000


_CONTROLLER: Any = None


def _one_thread() -> Any:
    """scikit-learn's neighbour search on one thread: a few hundred training images take ~1 ms that way,
    while its OpenMP threads, fighting TensorFlow's for 2 busy cores, took 0.7-150 ms (measured)."""
    global _CONTROLLER
    if _CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1)


def warm_up(active: Any) -> None:
    """Trace the graphs a batch will use, before the first chunk asks."""
    predict_scored(active, np.zeros((1, *active.input_size, 3), np.float32))


_ACTIVE: dict[str, dict[str, Any]] = {}


class InProcessClassifier:
    """Loads the active model in this process (once per model version, thanks to the model cache)."""

    def __init__(self, db: HydraDB, config: HydraSettings, *, batch: int = BATCH) -> None:
        self.db, self.config, self.batch = db, config, batch
        self._lock = threading.Lock()  # one forward pass at a time: TensorFlow already uses every core
        self._active = _ACTIVE.setdefault(config.db_url, {})  # plot type -> ActiveModel last used (per process)

    def classify(
        self, plot_type: str, images: np.ndarray, gradcam_paths: Sequence[str | None], *,
        expected_key: str | None = None,
    ) -> BatchPrediction | None:
        from hydra_assets.ml.active import load_active_model

        started = time.perf_counter()
        with self._lock:
            active = self._active.get(plot_type)
            if active is None or expected_key is None or active.key != expected_key:
                active = load_active_model(self.db, self.config, plot_type)  # ~6 queries, then the file cache
                if active is None:
                    self._active.pop(plot_type, None)
                else:
                    self._active[plot_type] = active
            loaded = time.perf_counter()
            if active is None:
                return None
            if tuple(images.shape[1:3]) != tuple(active.input_size):
                raise InputSizeMismatch(active.input_size)
            pixels = np.asarray(images, dtype=np.float32) / 255.0
            floats = active.masked(pixels)  # the version's mask, as in its training (docs/masks.md)
            weights, novelty, novelty_ms = predict_scored(active, floats, self.batch)
            inferred = time.perf_counter()
            gradcams = self._explain(active, floats, weights, gradcam_paths, shown=pixels)
            done = time.perf_counter()
        return BatchPrediction(
            model_id=active.model_id, model_key=active.key, label_names=list(active.label_names),
            bad_labels=list(active.bad_labels), weights=weights, gradcams=gradcams, novelty=novelty,
            novelty_limit=None if novelty is None else float(active.novelty.limit),
            load_ms=(loaded - started) * 1000, infer_ms=(inferred - loaded) * 1000, novelty_ms=novelty_ms,
            gradcam_ms=(done - inferred) * 1000,
            where=f"in-process pid {os.getpid()}", engine=engine_of(active),
        )

    def _explain(self, active: Any, floats: np.ndarray, weights: np.ndarray,
                 paths: Sequence[str | None], *, shown: np.ndarray) -> dict[int, str]:
        """GradCAM overlays for images whose top label is a Bad one: one gradient pass per batch, on the
        masked input the model saw, drawn over the plot as it came (`shown`) with the mask shaded."""
        top = weights.argmax(axis=1) if len(weights) else np.zeros(0, dtype=int)
        bad = {i for i, name in enumerate(active.label_names) if name in set(active.bad_labels)}
        chosen = [i for i in range(len(weights)) if int(top[i]) in bad and paths[i]]
        if not chosen:
            return {}
        from hydra_assets.ml.gradcam import gradcam_batch, save_overlay

        out: dict[int, str] = {}
        for start in range(0, len(chosen), self.batch):
            part = chosen[start : start + self.batch]
            heatmaps = gradcam_batch(active.keras_model, floats[part], top[part])
            for i, heatmap in zip(part, heatmaps, strict=True):
                out[i] = str(save_overlay(shown[i], heatmap, Path(str(paths[i])), mask=active.mask))
        return out
