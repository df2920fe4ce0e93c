"""What the pages need to know about their installation: settings, links to the other UIs, refresh rates.

Every value comes from `HydraSettings` (its `HYDRA_*` variables); the page list is the registry in
`panel_app.pages`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra_assets.settings import HydraSettings, load_settings


@dataclass
class PagesConfig:
    """Settings of the Panel app."""

    settings: HydraSettings = field(default_factory=load_settings)
    # activating a version also moves the MLflow alias `active` (tests without an MLflow registry turn it off)
    sync_mlflow_alias: bool = True
    # when the app runs without login (local development), writes are made as this Hydra user (or nobody):
    # `hydra pages --no-auth --user NAME`, else HYDRA_PAGES_USER
    local_user: str | None = None

    def __post_init__(self) -> None:
        if self.local_user is None:
            self.local_user = self.settings.pages_user

    @property
    def dagster_url(self) -> str:
        return self.settings.dagster_url

    @property
    def mlflow_url(self) -> str:
        return self.settings.mlflow_url

    @property
    def run_refresh_ms(self) -> int:
        return self.settings.run_refresh_ms

    @property
    def status_refresh_ms(self) -> int:
        return self.settings.status_refresh_ms

    def mlflow_run_link(self, run_id: str) -> str:
        return f"{self.mlflow_url.rstrip('/')}/#/runs/{run_id}" if run_id else ""

    def mlflow_model_link(self, name: str, version: str) -> str:
        return f"{self.mlflow_url.rstrip('/')}/#/models/{name}/versions/{version}"
