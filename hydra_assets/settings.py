"""Hydra configuration: one home folder with embedded defaults, every location overridable by environment.

Production points `HYDRA_DB_URL` at MySQL, `MLFLOW_TRACKING_URI` at a tracking server and the image
folders at shared storage; a newcomer sets nothing and gets SQLite files under `./.hydra`.
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_FILE_PATTERN = r"^(?P<plot_type>[A-Za-z0-9_]+)-(?P<run>\d+)-(?P<chunk>\d+)\.(?P<ext>png|jpg|jpeg)$"


class SettingsError(RuntimeError):
    """Raised with a readable message when the configuration cannot work."""


class HydraSettings(BaseSettings):
    """Every location and tunable of a Hydra installation, read from `HYDRA_*` environment variables."""

    model_config = SettingsConfigDict(env_prefix="HYDRA_", extra="ignore", populate_by_name=True)

    home: Path = Field(default=Path(".hydra"), description="Folder holding every embedded default.")
    db_url: str | None = Field(default=None, description="SQLAlchemy URL of the Hydra database.")
    input_dir: Path | None = Field(default=None, description="Incoming images watched by the file sensor.")
    images_dir: Path | None = Field(default=None, description="Where registered images are stored.")
    kept_dir: Path | None = Field(default=None, description="Copies of images kept for labeling.")
    quarantine_dir: Path | None = Field(default=None, description="Files that could not be processed.")
    gradcam_dir: Path | None = Field(default=None, description="GradCAM heatmaps of Bad classifications.")
    models_dir: Path | None = Field(default=None, description="Local cache of models pulled from MLflow.")
    mlflow_tracking_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "HYDRA_MLFLOW_TRACKING_URI"),
        description="MLflow tracking store or server.",
    )
    mlflow_artifact_root: Path | None = Field(default=None, description="Artifact root for new experiments.")
    dagster_home: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("DAGSTER_HOME", "HYDRA_DAGSTER_HOME"),
        description="Dagster instance folder (dagster.yaml, run and event storage).",
    )
    file_pattern: str = Field(default=DEFAULT_FILE_PATTERN, description="Regex with groups plot_type, run, chunk.")
    max_image_pixels: int = Field(default=50_000_000, gt=0, description="Larger images are refused (bombs).")
    min_file_age_seconds: float = Field(default=1.0, ge=0, description="Sensor waits this long after a write.")
    sensor_interval_seconds: int = Field(default=5, ge=1)
    max_runs_per_tick: int = Field(default=25, ge=1, description="Caps the size of a sensor tick.")
    max_files_per_run: int = Field(default=2000, ge=1, description="Caps the files of one run number requested per "
                                   "tick; split into runs of at most ~400 (the run config's 40-kB budget).")
    db_outage_seconds: float = Field(
        default=300.0, ge=0,
        description="How long an ingestion step waits for a database that is down (e.g. restarting) before "
                    "its run fails; 0 fails at once.",
    )
    seed: int = 12345
    # --- how the pipeline runs --------------------------------------------------------------------------
    executor: Literal["in_process", "multiprocess", "celery"] = Field(
        default="in_process", description="Executor of the chunk job (celery needs the `distributed` extra).")
    celery_broker: str = Field(default="pyamqp://guest:guest@127.0.0.1:5672//",
                               description="Broker of the Celery workers (HYDRA_EXECUTOR=celery; deploy/README.md).")
    celery_backend: str = Field(default="rpc://", description="Where Celery workers send step results.")
    celery_queue: str = Field(default="hydra", description="Prefix of the Celery queue; the code version follows.")
    predictor: Literal["auto", "service", "inprocess"] = Field(
        default="auto", description="Where Predict classifies: a warm predictor service, or in the run's process.")
    predictor_models: int = Field(default=128, ge=1, description="Models the predictor service keeps loaded.")
    tf_threads: int = Field(default=0, ge=0, description="TensorFlow threads for training; 0: one per core.")
    inference_engine: Literal["auto", "keras", "onnxruntime"] = Field(
        default="auto", description="Engine of the plain forward pass (docs/models.md): onnxruntime runs each model "
                                    "version converted once to ONNX, keras the Keras graph; auto: onnxruntime for the "
                                    "topologies it was measured faster on (compact), where installed. GradCAM runs "
                                    "on Keras; a failed conversion falls back to Keras.")
    # --- who acts, and the pages -----------------------------------------------------------------------
    user: str = Field(default="cli", description="Hydra user the command line acts as (`--user` overrides).")
    pages_user: str | None = Field(default=None, description="Without login, writes on the pages are made as "
                                                              "this Hydra user (local development).")
    cookie_secret: str | None = Field(default=None, description="Secret of the pages' login cookies; default: "
                                                                "a random one kept under HYDRA_HOME.")
    dagster_url: str = Field(default="http://127.0.0.1:3000", description="Dagster UI, linked from the pages.")
    mlflow_url: str = Field(default="http://127.0.0.1:5000", description="MLflow UI, linked from the pages.")
    run_refresh_ms: int = Field(default=1000, ge=100, description="Run page refresh period.")
    status_refresh_ms: int = Field(default=10000, ge=100, description="Status page refresh period.")
    # --- notifications and run conditions (docs/notifications.md, docs/run-conditions.md) ---------------
    smtp_host: str | None = Field(default=None, description="SMTP server for e-mail notifications.")
    smtp_port: int = Field(default=25, ge=1, le=65535, description="Its port (587 with STARTTLS).")
    smtp_from: str = Field(default="hydra@localhost", description="Sender address of notification e-mails.")
    smtp_user: str | None = Field(default=None, description="SMTP login, when the server wants one.")
    smtp_password: str | None = Field(default=None, description="Password of that login.")
    smtp_starttls: bool = Field(default=False, description="Upgrade the SMTP connection with STARTTLS.")
    notify_timeout_seconds: float = Field(default=5.0, gt=0, le=15,
                                          description="Longest wait for one webhook or SMTP answer.")
    run_conditions_file: Path | None = Field(default=None, description="CSV/JSON file of run conditions watched "
                                                                       "by the run_conditions sensor.")

    @field_validator("executor", mode="before")
    @classmethod
    def _executor_spelling(cls, value: object) -> object:
        return value.strip().lower().replace("-", "_") if isinstance(value, str) else value

    @field_validator("inference_engine", mode="before")
    @classmethod
    def _engine_spelling(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("pages_user", "cookie_secret", "smtp_host", "smtp_user", "smtp_password", "run_conditions_file",
                     mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return value or None

    @field_validator("file_pattern")
    @classmethod
    def _pattern_has_groups(cls, value: str) -> str:
        try:
            compiled = re.compile(value, re.ASCII)
        except re.error as error:
            raise ValueError(f"HYDRA_FILE_PATTERN is not a valid regular expression: {error}") from error
        missing = {"plot_type", "run", "chunk"} - set(compiled.groupindex)
        if missing:
            raise ValueError(f"HYDRA_FILE_PATTERN lacks the named group(s) {sorted(missing)}")
        return value

    @field_validator("db_url", "mlflow_tracking_uri")
    @classmethod
    def _url_has_scheme(cls, value: str | None) -> str | None:
        if value is not None and "://" not in value and not value.startswith("sqlite:"):
            raise ValueError(f"{value!r} is not a URL (expected e.g. sqlite:///path or mysql+pymysql://…)")
        return value

    @model_validator(mode="after")
    def _fill_defaults(self) -> "HydraSettings":
        home = self.home.expanduser().resolve()
        self.home = home
        self.db_url = self.db_url or f"sqlite:///{home / 'hydra.db'}"
        self.input_dir = (self.input_dir or home / "incoming").expanduser().resolve()
        self.images_dir = (self.images_dir or home / "images").expanduser().resolve()
        self.kept_dir = (self.kept_dir or home / "kept").expanduser().resolve()
        self.quarantine_dir = (self.quarantine_dir or home / "quarantine").expanduser().resolve()
        self.gradcam_dir = (self.gradcam_dir or home / "gradcam").expanduser().resolve()
        self.models_dir = (self.models_dir or home / "models").expanduser().resolve()
        self.mlflow_tracking_uri = self.mlflow_tracking_uri or f"sqlite:///{home / 'mlflow.db'}"
        self.mlflow_artifact_root = (self.mlflow_artifact_root or home / "mlartifacts").expanduser().resolve()
        self.dagster_home = (self.dagster_home or home / "dagster").expanduser().resolve()
        return self

    @cached_property
    def file_regex(self) -> re.Pattern[str]:
        return re.compile(self.file_pattern, re.ASCII)  # run and chunk digits are 0-9 only

    @property
    def folders(self) -> dict[str, Path]:
        """Folders Hydra writes into, by role (created by `hydra init`)."""
        return {
            "home": self.home,
            "incoming": self.input_dir,
            "images": self.images_dir,
            "kept": self.kept_dir,
            "quarantine": self.quarantine_dir,
            "gradcam": self.gradcam_dir,
            "models": self.models_dir,
            "mlflow artifacts": self.mlflow_artifact_root,
            "dagster home": self.dagster_home,
        }

    def ensure_folders(self) -> None:
        for role, folder in self.folders.items():
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise SettingsError(f"cannot create the {role} folder {folder}: {error.strerror}") from error


def load_settings(**overrides: object) -> HydraSettings:
    """Read the settings from the environment, turning validation errors into one readable message."""
    try:
        return HydraSettings(**overrides)
    except ValidationError as error:
        lines = [f"  {_variable(e['loc'])}: {e['msg']}" for e in error.errors()]
        raise SettingsError("invalid Hydra configuration:\n" + "\n".join(lines)) from error


def _variable(loc: tuple[object, ...]) -> str:
    """The environment variable behind a settings field, as a person would set it."""
    name = ".".join(str(part) for part in loc) or "settings"
    if name in {"mlflow_tracking_uri", "dagster_home"}:
        return name.upper()
    return f"HYDRA_{name.upper()}" if name in HydraSettings.model_fields else name
