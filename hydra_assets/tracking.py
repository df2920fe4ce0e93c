"""MLflow tracking store set-up (the training issue adds the run/registry service beside it)."""

from __future__ import annotations

from hydra_assets.settings import HydraSettings

EXPERIMENT_PREFIX = "hydra"


def ensure_tracking_store(config: HydraSettings) -> None:
    """Create (and migrate) the MLflow store once, before parallel processes race on a fresh SQLite file."""
    import logging

    from mlflow.tracking import MlflowClient

    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # one-off migration chatter
    logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)

    client = MlflowClient(tracking_uri=config.mlflow_tracking_uri)
    client.search_experiments(max_results=1)
