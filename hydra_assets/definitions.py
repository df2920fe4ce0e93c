"""The one Definitions object of the Hydra code location, and the one place where resources are bound.

Each package exposes plain lists and factories (assets/, jobs/, sensors/, resources/); only this module
puts them together, per installation: `resources_for` binds the resources of one installation's settings
(the code location uses the environment's, `hydra train` the settings it was started with) and the chunk
job gets the executor the settings name (HYDRA_EXECUTOR).  Dagster refuses a module with more than one
Definitions at module scope, so only `defs` is one.
"""

from __future__ import annotations

import dagster as dg

from hydra_assets.assets.challenger import CHALLENGER_ASSETS
from hydra_assets.assets.flags import FLAG_ASSETS
from hydra_assets.assets.ingest import INGEST_ASSETS
from hydra_assets.assets.reference import REFERENCE_ASSETS
from hydra_assets.assets.shadow import BACKTEST_ASSETS
from hydra_assets.assets.training import TRAINING_ASSETS
from hydra_assets.jobs.backtest import backtest_model, backtest_requests
from hydra_assets.jobs.flags import recompute_flags
from hydra_assets.jobs.ingest import ingest_chunk_job
from hydra_assets.jobs.reference import reference_refresh, reference_refresh_schedule
from hydra_assets.jobs.training import train_plot_type
from hydra_assets.resources.hydra import HydraResource
from hydra_assets.resources.mlflow import MlflowResource
from hydra_assets.resources.predictor import PredictorResource
from hydra_assets.sensors.incoming import incoming_images
from hydra_assets.sensors.labels import label_changes
from hydra_assets.sensors.notify import notifications
from hydra_assets.sensors.run_conditions import run_conditions
from hydra_assets.settings import HydraSettings, load_settings


def resources_for(settings: HydraSettings | None = None) -> dict[str, dg.ConfigurableResource]:
    """Every resource of the code location; with `settings`, pinned to that installation."""
    if settings is None:  # the code location: fields left empty fall back to the environment at run time
        return {"hydra": HydraResource(), "mlflow": MlflowResource(),
                "predictor": PredictorResource(mode=load_settings().predictor)}
    return {
        "hydra": HydraResource(home=str(settings.home), db_url=settings.db_url),
        "mlflow": MlflowResource(tracking_uri=settings.mlflow_tracking_uri,
                                 artifact_root=str(settings.mlflow_artifact_root)),
        "predictor": PredictorResource(mode=settings.predictor),
    }


defs = dg.Definitions(
    assets=[*INGEST_ASSETS, *REFERENCE_ASSETS, *TRAINING_ASSETS, *FLAG_ASSETS, *BACKTEST_ASSETS,
            *CHALLENGER_ASSETS],
    jobs=[ingest_chunk_job(load_settings().executor), train_plot_type, recompute_flags, reference_refresh,
          backtest_model],
    schedules=[reference_refresh_schedule],
    sensors=[incoming_images, label_changes, notifications, run_conditions, backtest_requests],
    resources=resources_for(),
)
