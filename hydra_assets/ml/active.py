"""The active model of a plot type, as the Predict stage and `hydra classify` use it.

The Hydra database says which model version is active (`models.active`) and holds its thresholds; the
model file comes from the MLflow registry (downloaded once into ``models_dir/<name>/<version>/``) or, for
models registered offline with `register_local_model`, from a local ``.keras`` path.  Files are loaded with
``safe_mode=True``: a model carrying a ``Lambda`` layer (arbitrary code) is refused, not executed.

Loaded Keras models are kept in a small per-process cache keyed by model version and file, because loading
and tracing a model costs seconds and a pipeline process classifies many chunks with the same version;
activation is still read from the database on every call, so a newly activated version is picked up at once.
The model library (`registry`) builds on this module, never the other way round.

A version's novelty reference (its training images' embeddings and calibrated limit, `scores/novelty.py`)
lives beside its file, ``models_dir/<name>/<version>/novelty.npz``, downloaded once from the MLflow artifact
``novelty/novelty.npz`` of the model's run.  Versions without one (registered locally, trained before the
guard) classify without novelty scores; a missing reference is never an error.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hydra_assets import catalog
from hydra_assets.catalog import CatalogError
from hydra_assets.db.models import Label, Model, PlotType, Threshold, utcnow
from hydra_assets.mask_versions import mask_regions
from hydra_assets.masks import Region, apply_mask
from hydra_assets.ml import onnx_engine
from hydra_assets.rules import DEFAULT_THRESHOLD, label_thresholds
from hydra_assets.scores import novelty as novelty_scores
from hydra_assets.scores.novelty import NoveltyReference
from hydra_assets.tracking import TrackingService

if TYPE_CHECKING:
    import keras

    from hydra_assets.db.engine import HydraDB
    from hydra_assets.settings import HydraSettings

log = logging.getLogger(__name__)
LOCAL_PREFIX = "local-"  # mlflow_name of models registered without MLflow
CACHE_SIZE = 16
NOVELTY_ARTIFACT = f"novelty/{novelty_scores.FILE_NAME}"  # in the MLflow run of the model version


class ModelLoadError(RuntimeError):
    """A model file that is missing, corrupt, not `.keras`, or unsafe; the message names plot type, version, file."""


@dataclass
class ActiveModel:
    """A loaded model version with what inference needs: output order, input size and thresholds."""

    model_id: int
    key: str  # "<mlflow name>/<version>"
    plot_type: str
    label_names: list[str]
    input_size: tuple[int, int]  # (height, width)
    thresholds: dict[str, float]
    keras_model: keras.Model = field(repr=False)
    topology: str = ""
    bad_labels: list[str] = field(default_factory=list)
    novelty: NoveltyReference | None = field(default=None, repr=False)  # None: no novelty scores
    mask: list[Region] = field(default_factory=list)  # rectangles this version was trained without (masks.py)
    # the plain forward pass: HYDRA_INFERENCE_ENGINE, the .keras file and where its ONNX conversion lives
    engine: str = "keras"
    keras_path: Path | None = None
    onnx_path: Path | None = None

    def masked(self, batch: np.ndarray) -> np.ndarray:
        """The batch as this version sees it: its mask's rectangles blanked, as they were in training."""
        return apply_mask(batch, self.mask)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Weights (N, n_labels) for a batch (N, H, W, 3) of float32 RGB in [0, 1] at `input_size`."""
        batch = np.asarray(batch, dtype=np.float32)
        if batch.ndim == 3:
            batch = batch[None]
        expected = (*self.input_size, 3)
        if batch.shape[1:] != expected:
            raise ValueError(f"{self.key} expects images of shape {expected}, got {batch.shape[1:]}")
        if len(batch) == 0:
            return np.zeros((0, len(self.label_names)), dtype=np.float32)
        # Direct call, not .predict(): no per-call data pipeline set-up, much faster for the small
        # batches a chunk brings.
        return np.asarray(self.keras_model(self.masked(batch), training=False), dtype=np.float32)

    def confirmed(self, weights: np.ndarray) -> np.ndarray:
        """Boolean (N, n_labels): each label's weight at or above its threshold."""
        return np.asarray(weights) >= label_thresholds(self.label_names, self.thresholds)


_cache: OrderedDict[tuple[str, str], keras.Model] = OrderedDict()
_cache_lock = threading.Lock()
_novelty_cache: dict[str, tuple[int, NoveltyReference]] = {}  # path -> (mtime_ns, reference)
_novelty_tried: set[str] = set()  # model runs whose novelty artifact this process already tried to download


def clear_model_cache() -> None:
    with _cache_lock:
        _cache.clear()
        _novelty_cache.clear()
        _novelty_tried.clear()


def load_keras_file(path: Path, *, what: str) -> keras.Model:
    """Load a `.keras` file in safe mode, turning every failure into a `ModelLoadError` naming `what`."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ModelLoadError(f"{what}: {path} is not a .keras file (only the Keras 3 format is loaded, "
                             "because only it is covered by safe mode)")
    if not path.is_file():
        raise ModelLoadError(f"{what}: model file {path} does not exist")
    import keras

    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # keras raises ValueError, OSError, zipfile errors, TypeError...
        text = str(error)
        if "Lambda" in text or "safe_mode" in text or "unsafe" in text.lower():
            reason = "it holds a Lambda layer (arbitrary code), refused in safe mode"
        else:
            reason = f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"
        raise ModelLoadError(f"{what}: cannot load {path}: {reason}") from error


def _cached_keras(key: str, path: Path, *, what: str) -> keras.Model:
    cache_key = (key, str(path))
    with _cache_lock:
        if cache_key in _cache:
            _cache.move_to_end(cache_key)
            return _cache[cache_key]
    model = load_keras_file(path, what=what)
    with _cache_lock:
        _cache[cache_key] = model
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return model


def fetch_model_file(config: HydraSettings, name: str, version: str, uri: str) -> Path:
    """The `.keras` file of a registered version, downloaded once into ``models_dir/<name>/<version>/``.

    The download lands in a temporary folder renamed into place, so a crash mid-way never leaves a
    half-written cache that later loads fail on.
    """
    target = Path(config.models_dir) / name / str(version)
    found = min(target.rglob("*.keras"), default=None) if target.is_dir() else None
    if found is not None:
        return found
    import mlflow

    service = TrackingService.from_settings(config)
    service.use()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=target.parent))
    try:
        mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(staging),
                                            tracking_uri=config.mlflow_tracking_uri)
        if not any(staging.rglob("*.keras")):
            raise ModelLoadError(f"model {name}/{version}: {uri} holds no .keras file")
        reference = target / novelty_scores.FILE_NAME  # written there at training: keep it
        if reference.is_file() and not (staging / reference.name).exists():
            reference.replace(staging / reference.name)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return min(target.rglob("*.keras"))


def model_file(config: HydraSettings, model: Model) -> Path:
    """The local `.keras` file of a model version, downloading it from MLflow once when needed."""
    uri = model.model_uri or ""
    if uri.startswith("file://"):
        return Path(uri.removeprefix("file://"))
    if not re.match(r"^[A-Za-z][A-Za-z0-9+.\-]+:/", uri):  # no scheme (models:/, runs:/, s3://…): a local path
        return Path(uri).expanduser()
    try:
        return fetch_model_file(config, model.mlflow_name, model.mlflow_version, uri)
    except ModelLoadError:
        raise
    except Exception as error:  # MLflow raises many kinds
        # the row may be detached (load_model_version closes its session): name it by loaded columns only
        raise ModelLoadError(f"model {model.key}: cannot fetch {uri} from MLflow: {error}") from error


def novelty_path(config: HydraSettings, model: Model) -> Path:
    """Where a model version's novelty reference lives (written at training, or downloaded from MLflow)."""
    return Path(config.models_dir) / model.mlflow_name / str(model.mlflow_version) / novelty_scores.FILE_NAME


def _download_novelty(config: HydraSettings, run_id: str, target: Path) -> None:
    """Fetch the run's novelty artifact into `target` (absent artifact: nothing happens)."""
    import mlflow

    TrackingService.from_settings(config).use()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".novelty-", dir=target.parent))
    try:
        mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=NOVELTY_ARTIFACT, dst_path=str(staging),
                                            tracking_uri=config.mlflow_tracking_uri)
        found = min(staging.rglob(novelty_scores.FILE_NAME), default=None)
        if found is not None:
            found.replace(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_novelty(config: HydraSettings, model: Model) -> NoveltyReference | None:
    """The version's novelty reference, or None when it has none (never raises: the guard is optional).

    A missing file is downloaded from the model's MLflow run once per process; a model registered locally
    (or trained before the guard) simply has none.
    """
    path = novelty_path(config, model)
    key = str(path)
    run_id = model.mlflow_run_id
    if (not path.is_file() and run_id and not model.mlflow_name.startswith(LOCAL_PREFIX)
            and run_id not in _novelty_tried):
        _novelty_tried.add(run_id)
        try:
            _download_novelty(config, run_id, path)
        except Exception as error:  # MLflow raises many kinds; no artifact is the common one
            log.info("model %s has no novelty reference in MLflow: %s", model.key, error)
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        return None
    cached = _novelty_cache.get(key)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    try:
        reference = novelty_scores.load(path)
    except Exception as error:  # a broken file must not stop classification
        log.warning("model %s: cannot read novelty reference %s: %s", model.key, path, error)
        return None
    _novelty_cache[key] = (stamp, reference)
    return reference


def active_model_row(session: Session, plot_type: str) -> Model | None:
    plot = catalog.get_plot_type(session, plot_type)
    return session.scalar(select(Model).where(Model.plot_type_id == plot.id, Model.active.is_(True))
                          .order_by(Model.activated_at.desc(), Model.id.desc()).limit(1))


def thresholds_of(session: Session, model_id: int) -> dict[str, float]:
    rows = session.execute(
        select(Label.name, Threshold.value).join(Label, Label.id == Threshold.label_id)
        .where(Threshold.model_id == model_id)
    )
    return {name: float(value) for name, value in rows}


def load_model_version(db: HydraDB, config: HydraSettings, model_id: int) -> ActiveModel:
    """Any registered model version (active or not) with its thresholds, e.g. to compare with the active one."""
    with db.read() as s:
        row = s.get(Model, model_id)
        if row is None:
            raise ModelLoadError(f"no model with id {model_id}")
        plot = s.get(PlotType, row.plot_type_id)
        thresholds = thresholds_of(s, row.id)
        bad = [lab.name for lab in catalog.labels_of(s, plot) if lab.is_bad]
        mask = mask_regions(s, row.mask_id)
        s.expunge(row)
    what = f"plot type {plot.name} model {row.key}"
    path = _model_file_for(config, row, plot.name)
    keras_model = _cached_keras(row.key, path, what=what)
    _check_shape(keras_model, row, what=what)
    return ActiveModel(
        model_id=row.id, key=row.key, plot_type=plot.name, label_names=list(row.label_names),
        input_size=(row.input_height, row.input_width), thresholds=thresholds, keras_model=keras_model,
        topology=row.topology, bad_labels=[n for n in row.label_names if n in bad],
        novelty=load_novelty(config, row), mask=mask, engine=config.inference_engine, keras_path=path,
        onnx_path=Path(config.models_dir) / row.mlflow_name / str(row.mlflow_version) / onnx_engine.FILE_NAME,
    )


def _model_file_for(config: HydraSettings, row: Model, plot_type: str) -> Path:
    try:
        return model_file(config, row)
    except ModelLoadError as error:
        raise ModelLoadError(f"plot type {plot_type}: {error}") from error


def _check_shape(keras_model: keras.Model, row: Model, *, what: str) -> None:
    expected_in = (row.input_height, row.input_width, row.input_channels)
    got_in = tuple(keras_model.input_shape[1:])
    got_out = keras_model.output_shape[-1]
    if got_in != expected_in or got_out != len(row.label_names):
        raise ModelLoadError(f"{what}: the file's input {got_in} / {got_out} outputs do not match the registered "
                             f"input {expected_in} / labels {row.label_names}")


def load_active_model(db: HydraDB, config: HydraSettings, plot_type: str) -> ActiveModel | None:
    """The active model of `plot_type`, or None when it has none (images are then recorded as `no_model`)."""
    with db.read() as s:
        row = active_model_row(s, plot_type)
        if row is None:
            return None
        model_id = row.id
    return load_model_version(db, config, model_id)


# ---- offline registration (tests, hand-built models) -------------------------------------------------


def register_local_model(
    db: HydraDB,
    plot_type: str,
    keras_path: str | Path,
    label_names: list[str],
    *,
    thresholds: dict[str, float] | None = None,
    activate: bool = True,
    topology: str = "compact",
    input_size: tuple[int, int] | None = None,
    created_by: str = "local",
    mask_id: int | None = None,
) -> Model:
    """Mirror a local `.keras` file into the `models` table without MLflow (tests and offline use).

    The version is numbered within ``local-<plot_type>``; `activate` makes it the plot type's only active
    model.  Missing thresholds default to 0.5.  The input size is read from the file unless given.
    """
    path = Path(keras_path).expanduser().resolve()
    if input_size is None:
        loaded = load_keras_file(path, what=f"plot type {plot_type} local model")
        input_size = (int(loaded.input_shape[1]), int(loaded.input_shape[2]))
    thresholds = dict(thresholds or {})

    def write(session: Session) -> Model:
        plot = catalog.get_plot_type(session, plot_type)
        labels = {lab.name: lab for lab in catalog.labels_of(session, plot)}
        unknown = [n for n in [*label_names, *thresholds] if n not in labels]
        if unknown:
            raise CatalogError(f"{', '.join(unknown)} are not labels of {plot_type}; labels: {', '.join(labels)}")
        if len(set(label_names)) != len(label_names) or len(label_names) < 2:
            raise CatalogError(f"label_names must be two or more distinct labels, got {label_names}")
        name = f"{LOCAL_PREFIX}{plot_type}"
        versions = session.scalars(select(Model.mlflow_version).where(Model.mlflow_name == name)).all()
        version = str(max((int(v) for v in versions if v.isdigit()), default=0) + 1)
        model = Model(
            plot_type_id=plot.id, mlflow_name=name, mlflow_version=version, model_uri=str(path), topology=topology,
            input_height=input_size[0], input_width=input_size[1], input_channels=3, label_names=list(label_names),
            training_set_size=0, sampling="", metrics={}, created_by=created_by, mask_id=mask_id,
        )
        session.add(model)
        session.flush()
        for label_name in label_names:
            session.add(Threshold(model_id=model.id, label_id=labels[label_name].id,
                                  value=float(thresholds.get(label_name, DEFAULT_THRESHOLD)), changed_by=created_by))
        if activate:
            mark_active(session, model, by=created_by)
        session.flush()
        return model

    return db.write(write, what="register local model")


def mark_active(session: Session, model: Model | None, *, plot_type_id: int | None = None, by: str) -> None:
    """Make `model` its plot type's only active model (None: no active model for `plot_type_id`)."""
    plot_type_id = model.plot_type_id if model is not None else plot_type_id
    for other in session.scalars(select(Model).where(Model.plot_type_id == plot_type_id, Model.active.is_(True))):
        if model is None or other.id != model.id:
            other.active = False
    if model is not None and not model.active:
        model.active, model.activated_at, model.activated_by = True, utcnow(), by
    session.flush()


def count_models(session: Session, plot_type_id: int) -> int:
    return int(session.scalar(select(func.count(Model.id)).where(Model.plot_type_id == plot_type_id)) or 0)


__all__ = [
    "ActiveModel",
    "ModelLoadError",
    "clear_model_cache",
    "fetch_model_file",
    "load_active_model",
    "load_keras_file",
    "load_model_version",
    "load_novelty",
    "mark_active",
    "model_file",
    "novelty_path",
    "register_local_model",
    "thresholds_of",
]
