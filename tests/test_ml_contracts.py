"""The model contracts other packages rely on: topologies, GradCAM, the active model and its loading."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

from hydra_assets import catalog
from hydra_assets.db.engine import HydraDB
from hydra_assets.ml import topologies
from hydra_assets.ml.active import (
    ModelLoadError,
    clear_model_cache,
    load_active_model,
    register_local_model,
)
from hydra_assets.ml.gradcam import gradcam, gradcam_batch, save_overlay
from hydra_assets.settings import HydraSettings


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_model_cache()
    yield
    clear_model_cache()


def _plot_type(db: HydraDB, name: str = "T1") -> None:
    db.write(lambda s: catalog.add_plot_type(s, name, "Good,Bad,NoData", "Bad", input_size=(32, 32)))


def test_compact_is_flat_softmax_with_stable_last_conv():
    model = topologies.build_model("compact", (32, 32, 3), 3)
    assert model.output_shape == (None, 3)
    assert topologies.last_conv_layer_name(model) == "last_conv"
    assert not any(isinstance(layer, keras.Model) for layer in model.layers), "nested models break GradCAM"
    out = model(np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)).numpy()
    assert np.allclose(out.sum(axis=1), 1.0, atol=1e-5)


def test_unknown_topology_and_small_input_refused():
    with pytest.raises(topologies.TopologyError, match="unknown topology 'nope'"):
        topologies.build_model("nope", (32, 32, 3), 2)
    with pytest.raises(topologies.TopologyError, match="at least 75x75"):
        topologies.build_model("inceptionv3", (64, 64, 3), 2)
    with pytest.raises(topologies.TopologyError, match="at least two labels"):
        topologies.build_model("compact", (32, 32, 3), 1)


def tiny_builder(input_shape, n_labels, *, weights_path=None):
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="my_conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(n_labels, activation="softmax")(x))


def test_custom_builder_by_registration_and_by_module_path():
    topologies.register_topology("tiny", tiny_builder)
    model = topologies.build_model("tiny", (24, 24, 3), 2)
    assert topologies.last_conv_layer_name(model) == "my_conv"
    by_path = topologies.build_model(f"{__name__}:tiny_builder", (24, 24, 3), 4)
    assert by_path.output_shape == (None, 4)
    heat = gradcam(by_path, np.random.default_rng(1).random((24, 24, 3), dtype=np.float32), 2)
    assert heat.shape == (24, 24) and heat.min() >= 0.0 and heat.max() <= 1.0


def test_gradcam_shape_range_batch_and_overlay(tmp_path: Path):
    model = topologies.build_model("compact", (32, 32, 3), 2)
    images = np.random.default_rng(2).random((3, 32, 32, 3), dtype=np.float32)
    heat = gradcam(model, images[0], 1)
    assert heat.shape == (32, 32) and heat.dtype == np.float32
    assert heat.min() >= 0.0 and heat.max() <= 1.0
    batch = gradcam_batch(model, images, np.array([1, 0, 1]))
    assert batch.shape == (3, 32, 32)
    assert np.allclose(batch[0], heat, atol=1e-4)
    out = save_overlay(images[0], heat, tmp_path / "sub" / "cam.png")
    from PIL import Image

    with Image.open(out) as png:
        assert png.size == (32, 32) and png.mode == "RGB"
    with pytest.raises(ValueError, match="outside"):
        gradcam(model, images[0], 5)


def test_no_active_model_is_none(sqlite_db: HydraDB, hydra_home: HydraSettings):
    _plot_type(sqlite_db)
    assert load_active_model(sqlite_db, hydra_home, "T1") is None


def test_register_local_model_and_load_it(sqlite_db: HydraDB, hydra_home: HydraSettings, tmp_path: Path):
    _plot_type(sqlite_db)
    model = topologies.build_model("compact", (32, 32, 3), 2)
    path = tmp_path / "m.keras"
    model.save(path)
    row = register_local_model(sqlite_db, "T1", path, ["Good", "Bad"], thresholds={"Bad": 0.3})
    assert row.key == "local-T1/1" and row.active
    active = load_active_model(sqlite_db, hydra_home, "T1")
    assert active is not None
    assert active.key == "local-T1/1" and active.label_names == ["Good", "Bad"]
    assert active.input_size == (32, 32)
    assert active.thresholds == {"Good": 0.5, "Bad": 0.3}
    assert active.bad_labels == ["Bad"]
    weights = active.predict(np.zeros((4, 32, 32, 3), np.float32))
    assert weights.shape == (4, 2)
    assert active.confirmed(np.array([[0.6, 0.4]])).tolist() == [[True, True]]
    # A second activated version replaces the first: exactly one active per plot type.
    second = register_local_model(sqlite_db, "T1", path, ["Good", "Bad"])
    assert second.key == "local-T1/2"
    assert load_active_model(sqlite_db, hydra_home, "T1").key == "local-T1/2"
    from sqlalchemy import func, select

    from hydra_assets.db.models import Model

    with sqlite_db.read() as s:
        assert s.scalar(select(func.count(Model.id)).where(Model.active.is_(True))) == 1


def test_register_local_model_refuses_unknown_label(sqlite_db: HydraDB, tmp_path: Path):
    _plot_type(sqlite_db)
    path = tmp_path / "m.keras"
    topologies.build_model("compact", (32, 32, 3), 2).save(path)
    with pytest.raises(catalog.CatalogError, match="Ugly"):
        register_local_model(sqlite_db, "T1", path, ["Good", "Ugly"])


@pytest.mark.parametrize("kind", ["missing", "garbage", "h5", "lambda", "truncated"])
def test_bad_model_files_refused_with_clear_message(sqlite_db: HydraDB, hydra_home: HydraSettings, tmp_path: Path,
                                                     kind: str):
    _plot_type(sqlite_db)
    good = tmp_path / "good.keras"
    topologies.build_model("compact", (32, 32, 3), 2).save(good)
    row = register_local_model(sqlite_db, "T1", good, ["Good", "Bad"], input_size=(32, 32))
    path = tmp_path / f"bad-{kind}.keras"
    if kind == "missing":
        pass
    elif kind == "garbage":
        path.write_bytes(b"this is not a zip file")
    elif kind == "h5":
        path = tmp_path / "model.h5"
        path.write_bytes(b"\x89HDF\r\n")
    elif kind == "truncated":
        data = good.read_bytes()
        path.write_bytes(data[: len(data) // 3])
    elif kind == "lambda":
        inputs = keras.Input(shape=(32, 32, 3))
        x = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
        x = keras.layers.Conv2D(2, 3)(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        keras.Model(inputs, keras.layers.Activation("softmax")(x)).save(path)
        with zipfile.ZipFile(path) as archive:
            assert "Lambda" in json.dumps(json.loads(archive.read("config.json")))

    def repoint(session):
        from hydra_assets.db.models import Model

        session.get(Model, row.id).model_uri = str(path)

    sqlite_db.write(repoint)
    with pytest.raises(ModelLoadError) as refused:
        load_active_model(sqlite_db, hydra_home, "T1")
    message = str(refused.value)
    assert "T1" in message and "local-T1/1" in message and path.name in message
    if kind == "lambda":
        assert "Lambda" in message and "safe mode" in message
    if kind == "h5":
        assert "not a .keras file" in message


def test_local_weights_file_seeds_the_model(tmp_path: Path):
    first = topologies.build_model("compact", (32, 32, 3), 2)
    weights = tmp_path / "start.weights.h5"
    first.save_weights(weights)
    seeded = topologies.build_model("compact", (32, 32, 3), 2, weights_path=str(weights))
    for a, b in zip(first.get_weights(), seeded.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # a head with another number of labels is skipped, the convolutional base still loads
    three = topologies.build_model("compact", (32, 32, 3), 3, weights_path=str(weights))
    np.testing.assert_array_equal(three.get_layer("conv1").get_weights()[0], first.get_layer("conv1").get_weights()[0])
    with pytest.raises(topologies.TopologyError, match="does not exist"):
        topologies.build_model("compact", (32, 32, 3), 2, weights_path=str(tmp_path / "none.weights.h5"))


def test_activation_and_threshold_edits_on_both_backends(db: HydraDB, tmp_path: Path):
    """The Library page's writes (activate, deactivate, set_threshold) on SQLite and MariaDB."""
    from sqlalchemy import select

    from hydra_assets.db.models import AuditLog, Model, ThresholdChange
    from hydra_assets.ml.registry import activate_model, deactivate_model, list_models, set_threshold

    _plot_type(db)
    db.write(lambda s: catalog.add_user(s, "erin", role="expert"))
    db.write(lambda s: catalog.add_user(s, "lee", role="labeler"))
    path = tmp_path / "absent.keras"  # never loaded here: the input size is given
    one = register_local_model(db, "T1", path, ["Good", "Bad"], input_size=(32, 32), activate=False)
    two = register_local_model(db, "T1", path, ["Good", "Bad"], input_size=(32, 32), activate=False)
    assert activate_model(db, None, "T1", "1", "erin").id == one.id
    assert activate_model(db, None, "T1", "local-T1/2", "erin").id == two.id
    with db.read() as s:
        assert [m.id for m in s.scalars(select(Model).where(Model.active.is_(True)))] == [two.id]
    with pytest.raises(catalog.PermissionDenied):
        deactivate_model(db, None, "T1", "lee")
    set_threshold(db, two.id, "Bad", 0.7, "erin")
    set_threshold(db, two.id, "Bad", 0.65, "erin")
    listed = list_models(db, "T1")
    assert [m["active"] for m in listed] == [False, True]
    assert listed[1]["thresholds"]["Bad"] == {"threshold": 0.65, "f1": None}
    with db.read() as s:
        changes = s.scalars(select(ThresholdChange).where(ThresholdChange.model_id == two.id)
                            .order_by(ThresholdChange.id)).all()
        assert [(c.old_value, c.new_value) for c in changes] == [(0.5, 0.7), (0.7, 0.65)]
        refused = s.scalars(select(AuditLog).where(AuditLog.allowed.is_(False))).all()
        assert [r.user_name for r in refused] == ["lee"]
    assert deactivate_model(db, None, "T1", "erin").id == two.id
    assert load_active_model(db, load_settings_for_test(tmp_path), "T1") is None


def load_settings_for_test(tmp_path: Path) -> HydraSettings:
    from hydra_assets.settings import load_settings

    return load_settings(home=tmp_path / "home")
