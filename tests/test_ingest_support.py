"""Helpers and fixtures shared by the ingestion tests (imported by them; holds no tests itself).

Models are tiny compact CNNs at 32x32 whose last layer is fixed, so a test chooses what they say: the
logits' kernel is zero and the bias sets the softmax, whatever the image.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import func, select

from hydra_assets import catalog
from hydra_assets.assets.ingest import INGEST_ASSETS
from hydra_assets.db.engine import HydraDB
from hydra_assets.partitions import run_number
from hydra_assets.resources.hydra import HydraResource
from hydra_assets.resources.predictor import PredictorResource
from hydra_assets.sensors.incoming import incoming_images
from hydra_assets.settings import HydraSettings

PLOT = "RF_FDC"
SIZE = (32, 32)


def png_bytes(seed: int = 0, size: tuple[int, int] = (48, 40), mode: str = "RGB") -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    image = PILImage.fromarray(pixels).convert(mode)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def drop(folder: Path, name: str, data: bytes, *, age: float = 30.0) -> Path:
    """Write a file as a writer would (temp name, then rename), `age` seconds old."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    partial = folder / f".{name}.tmp"
    partial.write_bytes(data)
    stamp = time.time() - age
    os.utime(partial, (stamp, stamp))
    os.replace(partial, path)
    return path


def constant_model(path: Path, probabilities: list[float], *, size: tuple[int, int] = SIZE) -> Path:
    """A compact model that outputs `probabilities` for any image."""
    from hydra_assets.ml.topologies import build_model

    model = build_model("compact", (*size, 3), len(probabilities))
    logits = model.get_layer("logits")
    kernel, _bias = logits.get_weights()
    logits.set_weights([np.zeros_like(kernel), np.log(np.asarray(probabilities, dtype=np.float32))])
    model.save(path)
    return path


@pytest.fixture(scope="session")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """.keras files: 'good' (Good 0.9), 'bad' (Bad 0.95), 'unsure' (Good 0.55), and a corrupt one."""
    folder = tmp_path_factory.mktemp("models")
    files = {
        "good": constant_model(folder / "good.keras", [0.9, 0.1]),
        "bad": constant_model(folder / "bad.keras", [0.05, 0.95]),
        "unsure": constant_model(folder / "unsure.keras", [0.55, 0.45]),
    }
    corrupt = folder / "corrupt.keras"
    corrupt.write_bytes(b"PK\x03\x04 this is not a keras archive")
    files["corrupt"] = corrupt
    return files


@pytest.fixture
def home(hydra_home: HydraSettings, sqlite_db: HydraDB, monkeypatch: pytest.MonkeyPatch) -> Iterator[HydraSettings]:
    """A Hydra home with its folders, one plot type RF_FDC (Good, Bad; collect 0 %) and no model."""
    hydra_home.ensure_folders()
    sqlite_db.write(lambda s: catalog.add_plot_type(s, PLOT, "Good,Bad", "Bad", collect_percent=0.0,
                                                     input_size=SIZE))
    yield hydra_home


@pytest.fixture
def instance() -> dg.DagsterInstance:
    return dg.DagsterInstance.ephemeral()


def count(db: HydraDB, model: type, *where: object) -> int:
    """Rows of `model` matching `where`."""
    with db.read() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)))


def activate(db: HydraDB, path: Path, *, thresholds: dict[str, float] | None = None, plot_type: str = PLOT):
    from hydra_assets.ml.active import register_local_model

    return register_local_model(db, plot_type, path, ["Good", "Bad"], thresholds=thresholds, input_size=SIZE)


def resources(mode: str = "inprocess") -> dict[str, object]:
    return {"hydra": HydraResource(), "predictor": PredictorResource(mode=mode)}


def tick(instance: dg.DagsterInstance, cursor: str | None = None, *, mode: str = "inprocess") -> dg.SensorResult:
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources(mode)) as context:
        return incoming_images(context)


def run_request(instance: dg.DagsterInstance, request: dg.RunRequest, *, mode: str = "inprocess",
                raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    """Execute a sensor's run request as the daemon would (partition added, same config and tags)."""
    instance.add_dynamic_partitions(run_number.name, [request.partition_key])
    return dg.materialize(INGEST_ASSETS, partition_key=request.partition_key, instance=instance,
                          resources=resources(mode), run_config=request.run_config, tags=request.tags,
                          raise_on_error=raise_on_error)


def backfill(instance: dg.DagsterInstance, run: int, *, mode: str = "inprocess") -> dg.ExecuteInProcessResult:
    """What selecting the run's partition in the UI does: the three assets without files."""
    instance.add_dynamic_partitions(run_number.name, [str(run)])
    return dg.materialize(INGEST_ASSETS, partition_key=str(run), instance=instance, resources=resources(mode))


def ingest_all(instance: dg.DagsterInstance, cursor: str | None = None) -> tuple[dg.SensorResult, list]:
    """One sensor tick and all its runs."""
    result = tick(instance, cursor)
    runs = [run_request(instance, request) for request in result.run_requests or []]
    return result, runs


def metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, object]:
    for event in result.get_asset_materialization_events():
        if event.asset_key == dg.AssetKey(asset):
            return {k: getattr(v, "value", v) for k, v in event.materialization.metadata.items()}
    raise KeyError(asset)


def checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
            for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
