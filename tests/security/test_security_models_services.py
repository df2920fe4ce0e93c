"""Security — models load only as `.keras` in safe mode (a Lambda layer or another format is refused, even
when a registered model's file is swapped); the MLflow UI `hydra up` starts listens on localhost only by
default, and the production docs cover MLflow's basic-auth app and allowed hosts.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from test_ingest_support import PLOT, SIZE, home, model_files  # noqa: F401

from hydra_assets.ml.active import ModelLoadError, load_active_model, load_keras_file, register_local_model

REPO = Path(__file__).resolve().parents[2]


def lambda_model(path: Path, marker: Path) -> Path:
    """A valid .keras whose Lambda layer would create `marker` if its code ever ran."""
    import keras

    inputs = keras.Input((*SIZE, 3))

    def payload(t):  # type: ignore[no-untyped-def]
        import pathlib

        pathlib.Path(str(marker)).write_text("code ran")
        return t

    x = keras.layers.Lambda(payload)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(2, activation="softmax", name="logits")(x)
    keras.Model(inputs, outputs).save(path)
    marker.unlink(missing_ok=True)  # building the model ran it once; loading must not run it again
    return path


@pytest.mark.slow
def test_crafted_and_foreign_model_files_are_refused(home, sqlite_db, model_files, tmp_path):
    marker = tmp_path / "pwned"
    crafted = lambda_model(tmp_path / "crafted.keras", marker)
    with pytest.raises(ModelLoadError, match="Lambda"):
        load_keras_file(crafted, what="test")
    for name, data in {"model.h5": b"\x89HDF\r\n\x1a\n", "model.pkl": b"\x80\x04K\x01.", "model": b"PK\x03\x04"}.items():
        foreign = tmp_path / name
        foreign.write_bytes(data)
        with pytest.raises(ModelLoadError, match="not a .keras file"):
            load_keras_file(foreign, what="test")
    with pytest.raises(ModelLoadError):
        register_local_model(sqlite_db, PLOT, crafted, ["Good", "Bad"])  # reads the input size: refused

    # A registered model whose file is later swapped for the crafted one: Predict's loader refuses it.
    model = register_local_model(sqlite_db, PLOT, model_files["good"], ["Good", "Bad"], input_size=SIZE)
    assert load_active_model(sqlite_db, home, PLOT) is not None
    from hydra_assets.ml import active

    with sqlite_db.read() as s:
        from hydra_assets.db.models import Model
        row = s.get(Model, model.id)
        path = active.model_file(home, row)
    active.clear_model_cache()
    shutil.copyfile(crafted, path)
    with pytest.raises(ModelLoadError, match="Lambda"):
        loaded = load_active_model(sqlite_db, home, PLOT)
        loaded.predict(np.zeros((1, *SIZE, 3), dtype=np.float32))
    assert not marker.exists(), "the Lambda layer's code ran"


def test_mlflow_ui_of_hydra_up_listens_on_localhost_by_default(hydra_home):
    from hydra_assets.cli.up import build_services, up

    default_host = next(p.default for p in up.params if p.name == "host")
    assert default_host == "127.0.0.1"
    services = build_services(hydra_home, host=default_host, panel_port=5006, dagster_port=3000, mlflow_port=5000,
                              demo=False, feed_interval=20.0, auth=True)
    (mlflow,) = [s for s in services if s.name.startswith("MLflow")]
    command = mlflow.command if hasattr(mlflow, "command") else mlflow.args
    assert command[command.index("--host") + 1] == "127.0.0.1"
    for service in services:  # nothing else listens on every interface either
        args = getattr(service, "command", None) or getattr(service, "args", [])
        assert "0.0.0.0" not in args and "::" not in args, (service.name, args)


def test_production_docs_cover_mlflow_basic_auth_and_allowed_hosts():
    text = (REPO / "deploy" / "README.md").read_text()
    assert "--app-name basic-auth" in text and "--allowed-hosts" in text
    assert "127.0.0.1" in (REPO / "README.md").read_text()
