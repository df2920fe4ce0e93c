"""MLflow: the tracking store set-up and the one small service that owns tracking URI, experiment and client.

Every training step is an MLflow run in the ``hydra-training`` experiment, tagged with the Dagster run id
and the plot type; every trained model is a version of the registered model ``hydra-<plot_type>`` and the
version in use carries the alias ``active`` (aliases, not the deprecated stages).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra_assets.settings import HydraSettings

if TYPE_CHECKING:
    import mlflow
    from mlflow.tracking import MlflowClient

EXPERIMENT_PREFIX = "hydra"
TRAINING_EXPERIMENT = "hydra-training"
ACTIVE_ALIAS = "active"

# No progress bars from MLflow downloads in the pipeline's logs.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def registered_model_name(plot_type: str) -> str:
    """One registered model per plot type."""
    return f"{EXPERIMENT_PREFIX}-{plot_type}"


def _quiet_mlflow_logs() -> None:
    import logging

    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # one-off migration chatter
    logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)
    logging.getLogger("mlflow.keras.save").setLevel(logging.ERROR)  # "no model signature" on every save
    logging.getLogger("mlflow.models.model").setLevel(logging.ERROR)


def ensure_tracking_store(config: HydraSettings) -> None:
    """Create (and migrate) the MLflow store once, before parallel processes race on a fresh SQLite file."""
    from mlflow.tracking import MlflowClient

    _quiet_mlflow_logs()
    client = MlflowClient(tracking_uri=config.mlflow_tracking_uri)
    client.search_experiments(max_results=1)


def is_local_store(tracking_uri: str) -> bool:
    """A store Hydra writes directly (SQLite/file/DB URL), as opposed to an MLflow tracking server."""
    return not tracking_uri.startswith(("http://", "https://", "databricks"))


class TrackingService:
    """Tracking URI, the training experiment and a client; runs are opened with `start_run` (a context manager).

    The fluent `mlflow` API is process-global, so `start_run` points it at this service's store first;
    one Hydra process talks to one store.
    """

    def __init__(self, tracking_uri: str, artifact_root: Path | str | None = None,
                 experiment: str = TRAINING_EXPERIMENT) -> None:
        self.tracking_uri = tracking_uri
        self.artifact_root = Path(artifact_root) if artifact_root else None
        self.experiment_name = experiment
        _quiet_mlflow_logs()

    @classmethod
    def from_settings(cls, config: HydraSettings) -> TrackingService:
        return cls(config.mlflow_tracking_uri, config.mlflow_artifact_root)

    @cached_property
    def client(self) -> MlflowClient:
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def use(self) -> None:
        """Point the fluent API (mlflow.log_*, mlflow.keras.log_model, models:/ downloads) at this store."""
        import mlflow

        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)

    @cached_property
    def experiment_id(self) -> str:
        """The training experiment, created with an explicit artifact location (not ./mlruns of the cwd)."""
        experiment = self.client.get_experiment_by_name(self.experiment_name)
        if experiment is not None:
            return experiment.experiment_id
        location = None
        if self.artifact_root is not None and is_local_store(self.tracking_uri):
            folder = self.artifact_root / self.experiment_name
            folder.mkdir(parents=True, exist_ok=True)
            location = folder.resolve().as_uri()
        try:
            return self.client.create_experiment(self.experiment_name, artifact_location=location)
        except Exception:  # another process created it first
            experiment = self.client.get_experiment_by_name(self.experiment_name)
            if experiment is None:
                raise
            return experiment.experiment_id

    @contextmanager
    def start_run(
        self,
        *,
        run_name: str | None = None,
        tags: dict[str, Any] | None = None,
        parent_run_id: str | None = None,
        run_id: str | None = None,
    ) -> Iterator[mlflow.ActiveRun]:
        """Open (or, given `run_id`, resume) a run; it ends FAILED if the block raises."""
        import mlflow

        self.use()
        clean_tags = {k: str(v) for k, v in (tags or {}).items() if v is not None and v != ""}
        if parent_run_id:
            clean_tags["mlflow.parentRunId"] = parent_run_id
        if mlflow.active_run() is not None:  # never nest by accident (a failed step left one open)
            mlflow.end_run("KILLED")
        if run_id:
            run = mlflow.start_run(run_id=run_id)
            if clean_tags:
                mlflow.set_tags(clean_tags)
        else:
            run = mlflow.start_run(experiment_id=self.experiment_id, run_name=run_name, tags=clean_tags)
        status = "FINISHED"
        try:
            yield run
        except BaseException:
            status = "FAILED"
            raise
        finally:
            mlflow.end_run(status)

    def log_figure(self, run_id: str, figure: Any, artifact_file: str) -> None:
        """Log a matplotlib figure (made with `matplotlib.figure.Figure`, no pyplot state) as an image artifact."""
        self.client.log_figure(run_id, figure, artifact_file)


__all__ = [
    "ACTIVE_ALIAS",
    "TRAINING_EXPERIMENT",
    "TrackingService",
    "ensure_tracking_store",
    "is_local_store",
    "registered_model_name",
]
