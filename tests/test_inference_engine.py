"""ONNX Runtime for the plain forward pass: same weights and embedding as Keras, GradCAM still on Keras, and
every failure (no runtime, a failed conversion, a corrupt or stale file, an error at run time) answered by
Keras instead of a failed chunk."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from test_ingest_support import PLOT, SIZE, home  # noqa: F401 - fixtures

from hydra_assets.ingest.classifier import InProcessClassifier, predict_scored
from hydra_assets.ml import onnx_engine
from hydra_assets.ml.active import clear_model_cache, load_active_model, register_local_model
from hydra_assets.settings import SettingsError, load_settings

pytestmark = pytest.mark.usefixtures("home")


@pytest.fixture(autouse=True)
def fresh_caches():
    """Each test starts as a new process would: no loaded model, no runner."""
    clear_model_cache()
    onnx_engine._RUNNERS.clear()
    yield
    clear_model_cache()
    onnx_engine._RUNNERS.clear()


def tiny_model(path: Path, *, bad_bias: float = 0.0, seed: int = 1) -> Path:
    """The compact topology at 32 px with random weights; `bad_bias` pushes its answers towards Bad."""
    import keras

    from hydra_assets.ml.topologies import build_model

    keras.utils.set_random_seed(seed)
    model = build_model("compact", (*SIZE, 3), 2)
    logits = model.get_layer("logits")
    kernel, bias = logits.get_weights()
    logits.set_weights([kernel * 20, bias + np.array([0.0, bad_bias], np.float32)])  # spread answers out
    model.save(path)
    return path


def images(n: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (n, *SIZE, 3), dtype=np.uint8)


def settings(monkeypatch, engine: str):
    monkeypatch.setenv("HYDRA_INFERENCE_ENGINE", engine)
    return load_settings()


def classify(db, config, batch, paths=None):
    return InProcessClassifier(db, config).classify(PLOT, batch, paths or [None] * len(batch))


def onnx_file(config) -> Path:
    return config.models_dir / f"local-{PLOT}" / "1" / onnx_engine.FILE_NAME


def test_onnxruntime_and_keras_give_the_same_weights(sqlite_db, tmp_path, monkeypatch):
    register_local_model(sqlite_db, PLOT, tiny_model(tmp_path / "m.keras"), ["Good", "Bad"], input_size=SIZE)
    batch = images(70)  # more than one slice of 64
    keras_answer = classify(sqlite_db, settings(monkeypatch, "keras"), batch)
    assert keras_answer.engine == "keras"
    assert not onnx_file(load_settings()).exists()  # keras: nothing converted
    clear_model_cache()
    config = settings(monkeypatch, "auto")
    onnx_answer = classify(sqlite_db, config, batch)
    assert onnx_answer.engine == "onnxruntime" and onnx_file(config).is_file()
    assert np.ptp(keras_answer.weights[:, 1]) > 0.1  # answers that differ between images: a real comparison
    np.testing.assert_allclose(onnx_answer.weights, keras_answer.weights, atol=1e-5)


def test_embedding_comes_from_the_same_onnx_pass(sqlite_db, tmp_path, monkeypatch):
    from hydra_assets.ml.embedding import embed

    register_local_model(sqlite_db, PLOT, tiny_model(tmp_path / "m.keras"), ["Good", "Bad"], input_size=SIZE)
    active = load_active_model(sqlite_db, settings(monkeypatch, "onnxruntime"), PLOT)
    runner = onnx_engine.runner_for(active)
    assert runner is not None and runner.has_embedding
    floats = images(5).astype(np.float32) / 255
    features, weights = runner.embeddings_and_weights(floats, 4)
    keras_features, keras_weights = embed(active.keras_model, floats)
    assert features.shape == keras_features.shape == (5, 64)
    np.testing.assert_allclose(features, keras_features, atol=1e-4)
    np.testing.assert_allclose(weights, keras_weights, atol=1e-5)


def test_gradcam_still_works_with_onnxruntime(sqlite_db, tmp_path, monkeypatch):
    register_local_model(sqlite_db, PLOT, tiny_model(tmp_path / "bad.keras", bad_bias=8.0), ["Good", "Bad"],
                         input_size=SIZE)
    paths = [str(tmp_path / f"cam{i}.png") for i in range(3)]
    answer = classify(sqlite_db, settings(monkeypatch, "onnxruntime"), images(3), paths)
    assert answer.engine == "onnxruntime"
    assert (answer.weights.argmax(axis=1) == 1).all()
    assert sorted(answer.gradcams) == [0, 1, 2] and all(Path(p).stat().st_size > 0 for p in answer.gradcams.values())


def test_corrupt_onnx_file_is_converted_again(sqlite_db, tmp_path, monkeypatch):
    register_local_model(sqlite_db, PLOT, tiny_model(tmp_path / "m.keras"), ["Good", "Bad"], input_size=SIZE)
    config = settings(monkeypatch, "onnxruntime")
    target = onnx_file(config)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"\x08\x07 not an onnx model")
    answer = classify(sqlite_db, config, images())
    assert answer.engine == "onnxruntime" and target.stat().st_size > 10_000
    clear_model_cache()
    expected = classify(sqlite_db, settings(monkeypatch, "keras"), images())
    np.testing.assert_allclose(answer.weights, expected.weights, atol=1e-5)


def test_corrupt_onnx_file_that_cannot_be_converted_again_falls_back_to_keras(sqlite_db, tmp_path, monkeypatch):
    register_local_model(sqlite_db, PLOT, tiny_model(tmp_path / "m.keras"), ["Good", "Bad"], input_size=SIZE)
    expected = classify(sqlite_db, settings(monkeypatch, "keras"), images()).weights
    clear_model_cache()
    config = settings(monkeypatch, "onnxruntime")
    onnx_file(config).parent.mkdir(parents=True)
    onnx_file(config).write_bytes(b"truncated")

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(onnx_file(config)))

    monkeypatch.setattr(onnx_engine, "convert", read_only)
    answer = classify(sqlite_db, config, images())
    assert answer.engine == "keras"
    np.testing.assert_allclose(answer.weights, expected, atol=1e-6)


def test_onnx_file_of_a_replaced_keras_file_is_not_used(sqlite_db, tmp_path, monkeypatch):
    """The .onnx carries the digest of its .keras file: a file replaced in place is converted again."""
    path = tiny_model(tmp_path / "m.keras", bad_bias=-5.0)
    register_local_model(sqlite_db, PLOT, path, ["Good", "Bad"], input_size=SIZE)
    config = settings(monkeypatch, "onnxruntime")
    first = classify(sqlite_db, config, images())
    assert (first.weights.argmax(axis=1) == 0).all()
    tiny_model(path, bad_bias=8.0)  # same path, other model
    clear_model_cache()
    onnx_engine._RUNNERS.clear()
    second = classify(sqlite_db, config, images())
    assert second.engine == "onnxruntime" and (second.weights.argmax(axis=1) == 1).all()


def test_failed_conversion_falls_back_to_keras(sqlite_db, tmp_path, monkeypatch, caplog):
    register_local_model(sqlite_db, PLOT, tiny_model(tmp_path / "m.keras"), ["Good", "Bad"], input_size=SIZE)
    expected = classify(sqlite_db, settings(monkeypatch, "keras"), images()).weights
    clear_model_cache()

    def broken(*args, **kwargs):
        raise onnx_engine.ConversionError("tf2onnx cannot convert compact: unsupported op")

    monkeypatch.setattr(onnx_engine, "convert", broken)
    with caplog.at_level(logging.WARNING, logger="hydra_assets.ml.onnx_engine"):
        answer = classify(sqlite_db, settings(monkeypatch, "onnxruntime"), images())
        again = classify(sqlite_db, load_settings(), images())
    assert answer.engine == again.engine == "keras"
    np.testing.assert_allclose(answer.weights, expected, atol=1e-6)
    reasons = [r.getMessage() for r in caplog.records if "inference on Keras" in r.getMessage()]
    assert len(reasons) == 1 and "unsupported op" in reasons[0]  # logged once, not per chunk


def test_auto_keeps_keras_where_onnxruntime_did_not_win(sqlite_db, tmp_path, monkeypatch):
    """auto: ONNX Runtime for the topologies it was measured faster on (compact), Keras for InceptionV3;
    onnxruntime: every topology."""
    assert "compact" in onnx_engine.AUTO_TOPOLOGIES and "inceptionv3" not in onnx_engine.AUTO_TOPOLOGIES
    register_local_model(sqlite_db, PLOT, tiny_model(tmp_path / "m.keras"), ["Good", "Bad"], input_size=SIZE,
                         topology="inceptionv3")  # the label is what auto reads
    assert classify(sqlite_db, settings(monkeypatch, "auto"), images()).engine == "keras"
    clear_model_cache()
    assert classify(sqlite_db, settings(monkeypatch, "onnxruntime"), images()).engine == "onnxruntime"


def test_missing_onnxruntime_falls_back_to_keras(sqlite_db, tmp_path, monkeypatch):
    register_local_model(sqlite_db, PLOT, tiny_model(tmp_path / "m.keras"), ["Good", "Bad"], input_size=SIZE)
    monkeypatch.setattr(onnx_engine, "available", lambda: False)
    config = settings(monkeypatch, "auto")
    answer = classify(sqlite_db, config, images())
    assert answer.engine == "keras" and not onnx_file(config).exists()


def test_error_at_run_time_falls_back_to_keras(sqlite_db, tmp_path, monkeypatch):
    register_local_model(sqlite_db, PLOT, tiny_model(tmp_path / "m.keras"), ["Good", "Bad"], input_size=SIZE)
    config = settings(monkeypatch, "onnxruntime")
    active = load_active_model(sqlite_db, config, PLOT)
    floats = images().astype(np.float32) / 255
    on_onnx, _, _ = predict_scored(active, floats)
    assert onnx_engine.runner_for(active) is not None

    def fails(self, *args, **kwargs):
        raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION")

    monkeypatch.setattr(onnx_engine.Runner, "weights", fails)
    on_keras, _, _ = predict_scored(active, floats)
    assert onnx_engine.runner_for(active) is None  # this model stays on Keras in this process
    np.testing.assert_allclose(on_keras, on_onnx, atol=1e-5)


def test_the_setting_is_validated(monkeypatch):
    monkeypatch.delenv("HYDRA_INFERENCE_ENGINE", raising=False)
    assert load_settings().inference_engine == "auto"
    assert load_settings(inference_engine=" ONNXRuntime ").inference_engine == "onnxruntime"
    monkeypatch.setenv("HYDRA_INFERENCE_ENGINE", "tensorrt")
    with pytest.raises(SettingsError, match="HYDRA_INFERENCE_ENGINE"):
        load_settings()
