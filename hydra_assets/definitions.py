"""The one Definitions object of the Hydra code location, and the one place where resources are bound.

Dagster refuses a module with more than one Definitions at module scope, so the packages are imported
as modules and only `defs` is bound here.  `resources_for` binds the resources of one installation's
settings: the code location uses the environment's, `hydra train` the settings it was started with.
"""

from __future__ import annotations

import dagster as dg

from hydra_assets.assets import training as training_assets
from hydra_assets.assets.ingest import PredictorResource
from hydra_assets.jobs import ingest as ingest_jobs
from hydra_assets.jobs import training as training_jobs
from hydra_assets.resources.hydra import HydraResource
from hydra_assets.resources.mlflow import MlflowResource
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


defs = dg.Definitions.merge(
    ingest_jobs.defs,
    training_assets.defs,
    training_jobs.defs,
    dg.Definitions(resources=resources_for()),
)
