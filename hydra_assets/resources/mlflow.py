"""MLflow as a Dagster resource: the tracking service of the training assets."""

from __future__ import annotations

import dagster as dg

from hydra_assets.settings import HydraSettings, load_settings
from hydra_assets.tracking import TRAINING_EXPERIMENT, TrackingService


class MlflowResource(dg.ConfigurableResource):
    """Tracking store and experiment of the training runs; empty fields fall back to the Hydra settings
    (``MLFLOW_TRACKING_URI``, ``HYDRA_MLFLOW_ARTIFACT_ROOT``, ``HYDRA_HOME``)."""

    tracking_uri: str | None = None
    artifact_root: str | None = None
    experiment: str = TRAINING_EXPERIMENT

    def service_for(self, settings: HydraSettings | None = None) -> TrackingService:
        """The tracking service, filling empty fields from `settings` (the Hydra resource's) or the environment."""
        settings = settings or load_settings()
        return TrackingService(
            self.tracking_uri or settings.mlflow_tracking_uri,
            self.artifact_root or settings.mlflow_artifact_root,
            self.experiment,
        )
