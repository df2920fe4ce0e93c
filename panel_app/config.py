"""What the pages need to know about their installation: settings, links to the other UIs, refresh rates."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from hydra_assets.settings import HydraSettings, load_settings

# slug -> (title, one-line purpose); the order is the navigation order
PAGES: dict[str, tuple[str, str]] = {
    "run": ("Run", "live grid of the latest image of every plot type"),
    "log": ("Log", "confirmed Bad and unconfirmed images of the last hours"),
    "library": ("Library", "model versions, confusion matrices, thresholds"),
    "labeler": ("Labeler", "paint labels on images"),
    "status": ("Status", "pipeline timings and heartbeats"),
    "browser": ("Plot Browser", "filter and sort every image"),
    "trends": ("Trends", "label weights over time"),
    "report": ("Training report", "where model and human disagree"),
}


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


@dataclass
class PagesConfig:
    """Settings of the Panel app; every field has an environment variable for production."""

    settings: HydraSettings = field(default_factory=load_settings)
    dagster_url: str = field(default_factory=lambda: os.environ.get("HYDRA_DAGSTER_URL", "http://127.0.0.1:3000"))
    mlflow_url: str = field(default_factory=lambda: os.environ.get("HYDRA_MLFLOW_URL", "http://127.0.0.1:5000"))
    run_refresh_ms: int = field(default_factory=lambda: int(_env_float("HYDRA_RUN_REFRESH_MS", 1000)))
    status_refresh_ms: int = field(default_factory=lambda: int(_env_float("HYDRA_STATUS_REFRESH_MS", 10000)))
    # activating a version also moves the MLflow alias `active` (tests without an MLflow registry turn it off)
    sync_mlflow_alias: bool = True
    # when the app runs without login (local development), writes are made as this Hydra user (or nobody)
    local_user: str | None = field(default_factory=lambda: os.environ.get("HYDRA_PAGES_USER") or None)

    def mlflow_run_link(self, run_id: str) -> str:
        return f"{self.mlflow_url.rstrip('/')}/#/runs/{run_id}" if run_id else ""

    def mlflow_model_link(self, name: str, version: str) -> str:
        return f"{self.mlflow_url.rstrip('/')}/#/models/{name}/versions/{version}"
