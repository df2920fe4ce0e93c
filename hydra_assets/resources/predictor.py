"""Where Predict runs the model, as a Dagster resource: the warm predictor service or the run's process."""

from __future__ import annotations

from typing import Any

import dagster as dg
from pydantic import Field

from hydra_assets.db.engine import HydraDB
from hydra_assets.ingest.classifier import Classifier, InProcessClassifier
from hydra_assets.ingest.predictor import ensure_service
from hydra_assets.settings import HydraSettings

PREDICTOR_MODES = ("auto", "service", "inprocess")


class PredictorResource(dg.ConfigurableResource):
    """Where Predict runs the model: `auto` (the warm predictor service, started on demand; in-process if it
    cannot be reached), `service` (the service or fail) or `inprocess` (load the model in the run process)."""

    mode: str = Field(default="auto", description="auto | service | inprocess")
    wait_seconds: float = Field(default=90.0, description="How long a run waits for a starting service.")

    def classifier(self, db: HydraDB, config: HydraSettings, log: Any = None) -> Classifier:
        if self.mode not in PREDICTOR_MODES:
            raise ValueError(f"predictor mode {self.mode!r} is not one of {', '.join(PREDICTOR_MODES)}")
        if self.mode == "inprocess":
            return InProcessClassifier(db, config)
        service = ensure_service(config, wait_s=self.wait_seconds)
        if service is not None:
            return service
        if self.mode == "service":
            raise RuntimeError("the predictor service did not come up; see <HYDRA_HOME>/run/predictor.log")
        if log is not None:
            log.warning("predictor service unreachable; classifying in this process (slower first chunk)")
        return InProcessClassifier(db, config)

    def prewarm(self, config: HydraSettings) -> None:
        """Start the service without waiting, so TensorFlow loads while the run is being launched."""
        if self.mode != "inprocess":
            ensure_service(config, wait_s=0.0)
