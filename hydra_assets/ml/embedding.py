"""A model's own embedding of an image: the features its last layer classifies, for the novelty guard.

Every built-in topology ends in ``… pooling → (dropout) → logits (Dense) → predictions (softmax)``
(`hydra_assets/ml/topologies.py`); the embedding is the input of ``logits``: the pooled features the model
learned for this plot type.  A user topology without a ``logits`` layer uses the input of its last Dense
layer; a model with neither has no embedding, and its inferences carry no novelty score.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import keras

_WITH_EMBEDDING: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()


def embedding_tensor(model: keras.Model) -> Any | None:
    """The symbolic tensor the classifying Dense layer reads, or None."""
    import keras

    try:
        return model.get_layer("logits").input
    except ValueError:
        pass
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    return dense[-1].input if dense else None


def with_embedding(model: keras.Model) -> keras.Model | None:
    """A model answering [embedding, weights] in one forward pass (made once per model), or None."""
    if model in _WITH_EMBEDDING:
        return _WITH_EMBEDDING[model]
    import keras

    tensor = embedding_tensor(model)
    both = None if tensor is None else keras.Model(model.inputs, [tensor, model.output], name=f"{model.name}_embed")
    _WITH_EMBEDDING[model] = both
    return both


def embed(model: keras.Model, floats: np.ndarray, *, batch: int = 64) -> tuple[np.ndarray | None, np.ndarray]:
    """(embeddings (N, D) or None, weights (N, n_labels)) of float32 images in [0, 1]."""
    both = with_embedding(model)
    n_labels = int(model.output_shape[-1])
    if len(floats) == 0:
        return (None if both is None else np.zeros((0, int(both.output_shape[0][-1])), np.float32),
                np.zeros((0, n_labels), np.float32))
    if both is None:
        parts = [np.asarray(model(floats[i:i + batch], training=False)) for i in range(0, len(floats), batch)]
        return None, np.concatenate(parts).astype(np.float32)
    features, weights = [], []
    for start in range(0, len(floats), batch):
        f, w = both(floats[start:start + batch], training=False)
        features.append(np.asarray(f))
        weights.append(np.asarray(w))
    return (np.concatenate(features).reshape(len(floats), -1).astype(np.float32),
            np.concatenate(weights).astype(np.float32))


__all__ = ["embed", "embedding_tensor", "with_embedding"]
