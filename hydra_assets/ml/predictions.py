"""The predictions file of a model version: the weights its fit gave every training and validation image.

Split ``validation`` rows are always run-held-out: the registered model on runs it never saw, or (under
cross-validation over runs) each fold's model on its held-out run — so an image then has a ``train`` row
(the registered model, fit on every image) and a ``validation`` row (out-of-fold).  ``run`` is each image's
run number (-1 in files written before runs were recorded).

Written once by the model step (cached under ``models_dir`` and logged to MLflow), read by the thresholds
and training report steps and by the Library page's confusion matrix, so none of them re-runs the network.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hydra_assets.ml.steps import TrainingRefused

if TYPE_CHECKING:
    from hydra_assets.db.models import Model
    from hydra_assets.settings import HydraSettings
    from hydra_assets.tracking import TrackingService

PREDICTIONS_FILE = "predictions.npz"


@dataclass
class Predictions:
    """Per image (same order in every array): id, split, the human label's index, the model's weights, run."""

    image_id: np.ndarray
    split: np.ndarray
    true_index: np.ndarray
    weights: np.ndarray
    label_names: list[str]
    run: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.run is None:
            self.run = np.full(len(self.image_id), -1, dtype=np.int64)

    def of(self, split: str) -> Predictions:
        keep = self.split == split
        return Predictions(self.image_id[keep], self.split[keep], self.true_index[keep], self.weights[keep],
                           self.label_names, self.run[keep])


def save_predictions(path: Path, predictions: Predictions) -> None:
    """Write the predictions file (compressed numpy arrays, no pickles: safe to load back)."""
    np.savez_compressed(path, image_id=predictions.image_id, split=predictions.split,
                        true_index=predictions.true_index, weights=predictions.weights,
                        label_names=np.array(predictions.label_names), run=predictions.run)


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
                           [str(n) for n in data["label_names"]], data["run"] if "run" in data.files else None)


__all__ = ["PREDICTIONS_FILE", "Predictions", "load_predictions", "save_predictions"]
