"""The novelty guard at inference: an image unlike the model's training data is scored, stored, not
confirmed, kept as `novel` and raises no alarm unless its plot type asks for one; the keep asset warns when a
run is far off the model's validation; `hydra classify`/`inferences`/`log` carry novelty; GradCAM paths.

The model is hand-built and tiny: its embedding (the input of `logits`) is the image averaged over 4x4
pixel blocks, and its output leans Good whatever the image.  Training conditions are a bright vertical band
on the left; the shifted condition has it on the right.  The reference is calibrated on the training
conditions' embeddings with `scores.novelty.calibrate` and saved where the model's reference lives.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image as PILImage
from sqlalchemy import select
from test_ingest_support import (  # noqa: F401 - fixtures
    PLOT,
    SIZE,
    activate,
    drop,
    home,
    ingest_all,
    instance,
    metadata,
    model_files,
)

from hydra_assets import catalog
from hydra_assets.cli import cli
from hydra_assets.db.models import Alarm, Inference, KeepDecision, Model
from hydra_assets.ingest.records import FIELDS, log_records, run_records
from hydra_assets.ml import active as active_models
from hydra_assets.scores import novelty

pytestmark = pytest.mark.usefixtures("home")


def band_pixels(seed: int, column: int) -> np.ndarray:
    """A 32x32 plot: noise with a bright vertical band 6 pixels wide starting at `column`."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 40, (*SIZE, 3)).astype(np.uint8)
    pixels[:, column : column + 6] = 230
    return pixels


def band_png(seed: int, column: int) -> bytes:
    out = io.BytesIO()
    PILImage.fromarray(band_pixels(seed, column)).save(out, format="PNG")
    return out.getvalue()


TRAINING, SHIFTED = 4, 22  # band columns


@pytest.fixture(scope="module")
def pooled_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Embedding = 4x4 block means (192 numbers); output Good 0.9 / Bad 0.1 for any image."""
    import keras

    inputs = keras.Input((*SIZE, 3))
    features = keras.layers.Flatten(name="embedding")(keras.layers.AveragePooling2D(4)(inputs))
    logits = keras.layers.Dense(2, name="logits")(features)
    model = keras.Model(inputs, keras.layers.Softmax(name="predictions")(logits))
    kernel, _ = model.get_layer("logits").get_weights()
    model.get_layer("logits").set_weights([np.zeros_like(kernel), np.log(np.array([0.9, 0.1], np.float32))])
    path = tmp_path_factory.mktemp("novelty-model") / "pooled.keras"
    model.save(path)
    return path


def with_reference(db, config, keras_path: Path, *, metrics: dict | None = None) -> Model:  # type: ignore[no-untyped-def]
    """Register and activate the model, and save its reference calibrated on training-condition images."""
    from hydra_assets.ml.embedding import embed

    model = activate(db, keras_path)
    floats = np.stack([band_pixels(seed, TRAINING) for seed in range(40)]).astype(np.float32) / 255.0
    features, _ = embed(active_models.load_keras_file(keras_path, what="test"), floats)
    reference = novelty.calibrate(features, quantile=0.99, neighbours=3)
    novelty.save(reference, active_models.novelty_path(config, model))
    if metrics is not None:
        def write(s):  # type: ignore[no-untyped-def]
            s.get(Model, model.id).metrics = metrics
        db.write(write)
    return model


def test_the_guard_unconfirms_a_shifted_image_and_confirms_one_from_training_conditions(
        home, instance, sqlite_db, pooled_model):
    model = with_reference(sqlite_db, home, pooled_model)
    drop(home.input_dir, f"{PLOT}-7-0001.png", band_png(101, TRAINING))
    drop(home.input_dir, f"{PLOT}-7-0002.png", band_png(102, SHIFTED))
    _, (run,) = ingest_all(instance)
    assert run.success and metadata(run, "inference")["novel"] == 1
    with sqlite_db.read() as s:
        usual, shifted = s.scalars(select(Inference).order_by(Inference.chunk)).all()
        limit = active_models.load_novelty(home, s.get(Model, model.id)).limit
        assert usual.novelty_limit == shifted.novelty_limit == pytest.approx(limit)
        assert usual.novelty <= limit < shifted.novelty
        assert usual.confirmed and not usual.flagged  # Good 0.9 from the training conditions
        assert not shifted.confirmed and shifted.flagged  # Good 0.9 too, but unlike the training data
        reasons = {d.inference_id: d.reason for d in s.scalars(select(KeepDecision))}
        assert reasons == {usual.id: None, shifted.id: "novel"}  # collect 0 %
        assert s.scalar(select(Alarm)) is None  # no novel alarm by default
        records = {r["chunk"]: r for r in run_records(s, 7)}
        logged = log_records(s, usual.classified_at.replace(year=2000))
    assert list(records[2])[: len(FIELDS)] == list(FIELDS)
    assert records[2]["novelty"] == pytest.approx(shifted.novelty) and records[2]["keep_reason"] == "novel"
    assert records[1]["novelty_limit"] == pytest.approx(limit, abs=1e-6) and records[1]["keep_reason"] is None
    assert [r["chunk"] for r in logged] == [2]


def test_a_model_without_reference_scores_nothing(home, instance, sqlite_db, pooled_model):
    activate(sqlite_db, pooled_model)
    drop(home.input_dir, f"{PLOT}-8-0001.png", band_png(103, SHIFTED))
    ingest_all(instance)
    with sqlite_db.read() as s:
        inference = s.scalar(select(Inference))
        assert (inference.novelty, inference.novelty_limit, inference.confirmed) == (None, None, True)
        assert run_records(s, 8)[0]["novelty"] is None


def test_novel_alarm_only_where_the_plot_type_enables_it(home, instance, sqlite_db, pooled_model):
    with_reference(sqlite_db, home, pooled_model)
    sqlite_db.write(lambda s: catalog.edit_plot_type(s, PLOT, novel_alarm=True))
    drop(home.input_dir, f"{PLOT}-9-0003.png", band_png(104, SHIFTED))
    drop(home.input_dir, f"{PLOT}-9-0004.png", band_png(105, TRAINING))
    ingest_all(instance)
    with sqlite_db.read() as s:
        (alarm,) = s.scalars(select(Alarm)).all()
        inference = s.get(Inference, alarm.inference_id)
    assert alarm.kind == "novel" and inference.chunk == 3 and alarm.label_id == inference.top_label_id
    assert alarm.message.startswith(f"{PLOT} run 9 chunk 3: unlike the training data (novelty ")
    assert alarm.message.count("run 9") == 1 and "the model said Good" in alarm.message


def test_keep_check_warns_when_a_run_is_out_of_the_models_depth(home, instance, sqlite_db, pooled_model):
    with_reference(sqlite_db, home, pooled_model, metrics={"novelty": {"validation_rate": 0.01},
                                                          "validation": {"unconfirmed_rate": 0.02}})
    for chunk in range(10):
        drop(home.input_dir, f"{PLOT}-11-{chunk:04d}.png", band_png(200 + chunk, SHIFTED))
    _, (run,) = ingest_all(instance)
    (evaluation,) = [e.asset_check_evaluation_data for e in run.all_events
                     if e.event_type_value == "ASSET_CHECK_EVALUATION"
                     and e.asset_check_evaluation_data.check_name == "model_in_its_depth"]
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert evaluation.description.startswith(f"model out of its depth on {PLOT} run 11: 100% of 10 images "
                                             "unlike the training data")
    (suggestion,) = evaluation.metadata["suggestions"].value
    assert suggestion["labeler"] == f"/labeler?plot_type={PLOT}&run=11&reason=novel"
    table = CliRunner().invoke(cli, ["log"], catch_exceptions=False).output
    assert "unlike the training data" in table and "retraining suggestions:" in table
    assert f"model out of its depth on {PLOT} run 11" in table


def test_the_reference_comes_from_mlflow_once_and_its_absence_is_no_error(home, sqlite_db, pooled_model,
                                                                          monkeypatch, tmp_path):
    model = activate(sqlite_db, pooled_model)

    def as_if_trained(s):  # type: ignore[no-untyped-def]
        row = s.get(Model, model.id)
        row.mlflow_name, row.mlflow_run_id = f"hydra-{PLOT}", "run-with-a-reference"
    sqlite_db.write(as_if_trained)
    source = novelty.save(novelty.calibrate(np.eye(4, 8), neighbours=2), tmp_path / "logged" / novelty.FILE_NAME)
    calls = []

    def download(config, run_id, target):  # type: ignore[no-untyped-def]
        calls.append(run_id)
        if run_id == "run-with-a-reference":
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
        else:
            raise OSError("no artifact novelty/novelty.npz")

    monkeypatch.setattr(active_models, "_download_novelty", download)
    active_models.clear_model_cache()
    with sqlite_db.read() as s:
        row = s.get(Model, model.id)
        first = active_models.load_novelty(home, row)
        again = active_models.load_novelty(home, row)
        assert first is not None and first is again and calls == ["run-with-a-reference"]
        assert active_models.novelty_path(home, row).is_file()
        row.mlflow_version, row.mlflow_run_id = "2", "trained-before-the-guard"
        assert active_models.load_novelty(home, row) is None
        assert active_models.load_novelty(home, row) is None
    assert calls == ["run-with-a-reference", "trained-before-the-guard"]  # tried once per process


def test_classify_json_and_table_carry_novelty(home, sqlite_db, pooled_model, tmp_path):
    with_reference(sqlite_db, home, pooled_model)
    usual, shifted = tmp_path / f"{PLOT}-5-0001.png", tmp_path / f"{PLOT}-5-0002.png"
    usual.write_bytes(band_png(1, TRAINING))
    shifted.write_bytes(band_png(2, SHIFTED))
    result = CliRunner().invoke(cli, ["classify", str(usual), str(shifted), "--plot-type", PLOT],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    first, second = json.loads(result.output)
    assert first["novelty"] <= first["novelty_limit"] < second["novelty"]
    assert (first["confirmed"], first["keep_reason"]) == (True, None)
    assert (second["confirmed"], second["keep_reason"], second["label"]) == (False, "novel", "Good")
    table = CliRunner().invoke(cli, ["classify", str(shifted), "--plot-type", PLOT, "--format", "table"],
                               catch_exceptions=False).output
    assert f"{second['novelty']:.2f} > {second['novelty_limit']:.2f}" in table and "unlike the training data" in table


def test_classify_gradcam_names_the_written_file(home, sqlite_db, model_files, tmp_path, monkeypatch):
    """Item 7: the field names the overlay written for each Bad image — an absolute path, one file per
    image even when two files share a name (from two folders), null when no folder was asked for."""
    activate(sqlite_db, model_files["bad"])
    files = []
    for folder in ("a", "b"):
        path = tmp_path / folder / f"{PLOT}-5-0001.png"
        path.parent.mkdir()
        path.write_bytes(band_png(len(files), TRAINING))
        files.append(str(path))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["classify", *files, "--plot-type", PLOT, "--gradcam-dir", "cams"],
                                catch_exceptions=False)
    records = json.loads(result.output)
    assert [r["label"] for r in records] == ["Bad", "Bad"]
    cams = [Path(r["gradcam"]) for r in records]
    assert all(cam.is_absolute() and cam.is_file() and cam.parent == tmp_path / "cams" for cam in cams)
    assert len(set(cams)) == 2 and cams[0].read_bytes() != cams[1].read_bytes()
    plain = json.loads(CliRunner().invoke(cli, ["classify", files[0], "--plot-type", PLOT],
                                          catch_exceptions=False).output)
    assert plain[0]["label"] == "Bad" and plain[0]["gradcam"] is None


def test_fetching_the_model_file_keeps_the_reference_beside_it(home, monkeypatch, tmp_path):
    """Training writes novelty.npz into the version's folder before any model file is fetched there."""
    import mlflow

    target = Path(home.models_dir) / f"hydra-{PLOT}" / "3"
    reference = novelty.save(novelty.calibrate(np.eye(4, 8), neighbours=2), target / novelty.FILE_NAME)

    def download(*, artifact_uri, dst_path, tracking_uri):  # type: ignore[no-untyped-def]
        (Path(dst_path) / "model").mkdir()
        (Path(dst_path) / "model" / "model.keras").write_bytes(b"a model")
        return dst_path

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", download)
    path = active_models.fetch_model_file(home, f"hydra-{PLOT}", "3", "models:/m-123")
    assert path == target / "model" / "model.keras" and reference.is_file()
    assert novelty.load(reference).features.shape == (4, 8)


def test_the_reference_downloads_from_a_real_mlflow_run(home, sqlite_db, pooled_model, tmp_path):
    """The artifact path of the contract (`novelty/novelty.npz` of the model's run), through MLflow itself."""
    import mlflow

    from hydra_assets.tracking import TrackingService

    logged = novelty.save(novelty.calibrate(np.eye(4, 8), neighbours=2), tmp_path / novelty.FILE_NAME)
    with TrackingService.from_settings(home).start_run(run_name="with a reference") as run:
        mlflow.log_artifact(str(logged), "novelty")
    model = activate(sqlite_db, pooled_model)

    def as_if_trained(s):  # type: ignore[no-untyped-def]
        row = s.get(Model, model.id)
        row.mlflow_name, row.mlflow_run_id = f"hydra-{PLOT}", run.info.run_id
    sqlite_db.write(as_if_trained)
    active_models.clear_model_cache()
    loaded = active_models.load_active_model(sqlite_db, home, PLOT)
    assert loaded.novelty is not None and loaded.novelty.limit == pytest.approx(novelty.load(logged).limit)
    with sqlite_db.read() as s:
        assert active_models.novelty_path(home, s.get(Model, model.id)).is_file()
