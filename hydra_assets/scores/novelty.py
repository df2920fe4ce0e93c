"""The novelty score: how unlike the model's training images an image is.

The score of an image is the mean distance from its features to the `k` nearest training images' features
(scikit-learn's `NearestNeighbors`); features are L2-normalised rows, so distances lie in [0, 2] whatever the
topology.  The limit is calibrated on the training images themselves: each one's score against the *other*
training images (leave-one-out), and the chosen quantile (default 99 %) of those is the limit.  So "above
the limit" means "further from the training data than all but 1 % of the training images are from each
other" — the same meaning for every plot type and model.

Which features the caller passes is its choice (`hydra_assets/ml/embedding.py` documents and measures it);
this module only needs them as a 2-D array.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_QUANTILE = 0.99
DEFAULT_NEIGHBOURS = 5
FILE_NAME = "novelty.npz"  # saved beside the model file and logged to the model's MLflow run


@dataclass
class NoveltyReference:
    """Training features and the calibrated limit of one model version."""

    features: np.ndarray  # (N, D) float32, L2-normalised rows
    limit: float
    quantile: float = DEFAULT_QUANTILE
    neighbours: int = DEFAULT_NEIGHBOURS
    method: str = "embedding-knn"

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Novelty score per row of `features` (N, D): mean distance to the nearest training features."""
        return knn_scores(self.features, normalise(features), self.neighbours)


def normalise(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero), as float32."""
    rows = np.asarray(features, dtype=np.float32)
    rows = rows.reshape(len(rows), -1)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)


def knn_scores(reference: np.ndarray, features: np.ndarray, neighbours: int, *, leave_one_out: bool = False
               ) -> np.ndarray:
    """Mean distance from each row of `features` to its `neighbours` nearest rows of `reference`.

    `leave_one_out`: `features` *is* `reference`, and each row's own zero distance is skipped.
    """
    from sklearn.neighbors import NearestNeighbors

    if len(features) == 0:
        return np.zeros(0, dtype=np.float64)
    available = len(reference) - (1 if leave_one_out else 0)
    if available < 1:
        raise ValueError(f"a novelty reference needs at least {2 if leave_one_out else 1} training images")
    k = min(neighbours, available)
    index = NearestNeighbors(n_neighbors=k + (1 if leave_one_out else 0)).fit(reference)
    distances, _ = index.kneighbors(features)
    if leave_one_out:
        distances = distances[:, 1:]
    return np.nan_to_num(distances.mean(axis=1), nan=np.inf).astype(np.float64)


def calibrate(features: np.ndarray, *, quantile: float = DEFAULT_QUANTILE, neighbours: int = DEFAULT_NEIGHBOURS,
              method: str = "embedding-knn") -> NoveltyReference:
    """The reference of a model: its training images' features and the `quantile` of their leave-one-out scores."""
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"novelty quantile must be between 0 and 1, not {quantile}")
    reference = normalise(features)
    own = knn_scores(reference, reference, neighbours, leave_one_out=True)
    return NoveltyReference(reference, float(np.quantile(own, quantile)), quantile, neighbours, method)


def save(reference: NoveltyReference, path: Path) -> Path:
    """Write the reference as one `.npz` (written to a temporary name, then renamed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, features=reference.features, limit=reference.limit, quantile=reference.quantile,
                        neighbours=reference.neighbours, method=reference.method)
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_bytes(buffer.getvalue())
    staging.replace(path)
    return path


def load(path: Path) -> NoveltyReference:
    with np.load(Path(path), allow_pickle=False) as data:
        return NoveltyReference(np.asarray(data["features"], dtype=np.float32), float(data["limit"]),
                                float(data["quantile"]), int(data["neighbours"]), str(data["method"]))


__all__ = ["DEFAULT_NEIGHBOURS", "DEFAULT_QUANTILE", "FILE_NAME", "NoveltyReference", "calibrate", "knn_scores",
           "load", "normalise", "save"]
