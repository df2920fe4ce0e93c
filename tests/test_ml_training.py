"""Training steps: the training set plan and its refusals, then the whole pipeline on tiny toy images,
checked in the Hydra database and through `MlflowClient` (runs, metrics per epoch, artifacts, registry alias)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select
from test_ml_split import spread_over_runs

from hydra_assets import catalog
from hydra_assets.db.engine import HydraDB
from hydra_assets.db.models import (
    AuditLog,
    Model,
    Threshold,
    ThresholdChange,
    TrainingReport,
    TrainingReportItem,
    TrainingSet,
    TrainingSetItem,
)
from hydra_assets.ml import registry
from hydra_assets.ml.active import clear_model_cache, load_active_model
from hydra_assets.ml.model_step import TrainOptions, train_model_step
from hydra_assets.ml.predictions import load_predictions
from hydra_assets.ml.steps import TrainingRefused
from hydra_assets.ml.thresholds_step import thresholds_step
from hydra_assets.ml.toy import write_toy_labeled
from hydra_assets.ml.training_report import training_report_step
from hydra_assets.ml.training_set import TrainingSetOptions, create_training_set, plan_training_set
from hydra_assets.settings import HydraSettings
from hydra_assets.tracking import ACTIVE_ALIAS, TrackingService

LABELS = [("Good", False), ("Bad", True), ("NoData", False)]


# ---- the plan (pure) -----------------------------------------------------------------------------


def _labeled(counts: dict[str, int], runs: int = 20) -> list[tuple[int, str, int]]:
    """(image id, label, run): each label's images dealt over `runs` runs in turn."""
    out, next_id = [], 1
    for label, n in counts.items():
        for k in range(n):
            out.append((next_id, label, 1000 + k % runs))
            next_id += 1
    return out


def test_balanced_sampling_caps_every_label_at_the_bad_count_and_splits_stratified():
    plan = plan_training_set(_labeled({"Good": 100, "Bad": 20, "NoData": 12}), LABELS,
                             TrainingSetOptions(min_per_label=10, validation_fraction=0.25))
    assert plan.label_names == ["Good", "Bad", "NoData"]
    total = {k: plan.counts("train")[k] + plan.counts("validation")[k] for k in plan.label_names}
    assert total == {"Good": 20, "Bad": 20, "NoData": 12}
    assert all(plan.counts("validation")[k] > 0 and plan.counts("train")[k] > 0 for k in plan.label_names)
    assert not set(plan.runs("validation")) & set(plan.runs("train"))  # split by run
    assert len({i for i, *_ in plan.items}) == len(plan.items)  # no image twice
    again = plan_training_set(_labeled({"Good": 100, "Bad": 20, "NoData": 12}), LABELS,
                              TrainingSetOptions(min_per_label=10, validation_fraction=0.25))
    assert again.items == plan.items  # deterministic for a seed


def test_all_sampling_keeps_every_image_and_excludes_rare_labels():
    plan = plan_training_set(_labeled({"Good": 100, "Bad": 20, "NoData": 3}), LABELS,
                             TrainingSetOptions(sampling="all", min_per_label=10))
    assert plan.label_names == ["Good", "Bad"]
    assert sum(plan.counts().values()) == 120
    assert "NoData" in plan.excluded and "fewer than the minimum 10" in plan.excluded["NoData"]


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        ({}, "has no labeled images"),
        ({"Good": 50}, "at least two labels"),
        ({"Good": 50, "NoData": 30, "Bad": 4}, "of a bad label (Bad)"),
        ({"Good": 50, "Bad": 3}, "Bad needs 7 more"),
    ],
)
def test_refusals_name_what_is_missing(counts, message):
    with pytest.raises(TrainingRefused, match=message.replace("(", r"\(").replace(")", r"\)")) as refused:
        plan_training_set(_labeled(counts), LABELS, TrainingSetOptions(min_per_label=10), plot_type="T1")
    assert "T1" in str(refused.value)


def test_unknown_sampling_refused():
    with pytest.raises(TrainingRefused, match="unknown sampling"):
        plan_training_set(_labeled({"Good": 20, "Bad": 20}), LABELS, TrainingSetOptions(sampling="oversample"))


# ---- the whole pipeline on toy images ------------------------------------------------------------


@pytest.fixture
def toy_plot_type(sqlite_db: HydraDB, hydra_home: HydraSettings, tmp_path: Path) -> str:
    """Plot type T1 (Good, Bad, NoData; 32 px, compact) with 36 toy images, each of its own run, labeled through
    the importer (30 runs after balanced sampling: a held-out split by run)."""
    from hydra_assets.label_import import import_labeled_folder

    hydra_home.ensure_folders()
    sqlite_db.write(lambda s: catalog.add_plot_type(s, "T1", "Good,Bad,NoData", "Bad", input_size=(32, 32)))
    folder = spread_over_runs(write_toy_labeled(tmp_path / "toy", per_label={"Good": 18, "Bad": 12, "NoData": 6},
                                                size=32), "T1", list(range(11, 47)))
    import_labeled_folder(sqlite_db, hydra_home, folder, "T1")
    clear_model_cache()
    return "T1"


def _train(db, config, tracking, *, activate="if_better", epochs=2, run_id="dagster-run-1"):
    ts = create_training_set(db, config, tracking, "T1", TrainingSetOptions(min_per_label=5),
                                      dagster_run_id=run_id)
    model = train_model_step(db, config, tracking, "T1", TrainOptions(epochs=epochs, batch_size=8),
                                      dagster_run_id=run_id, created_by="tester")
    thresholds = thresholds_step(db, config, tracking, "T1", activate=activate,
                                          user=registry.ensure_cli_user(db), dagster_run_id=run_id)
    report = training_report_step(db, config, tracking, "T1", dagster_run_id=run_id, thumbnails=4)
    return ts, model, thresholds, report


@pytest.mark.slow
def test_pipeline_records_everything_in_hydra_db_and_mlflow(sqlite_db: HydraDB, hydra_home: HydraSettings,
                                                            toy_plot_type: str):
    tracking = TrackingService.from_settings(hydra_home)
    ts, model, thresholds, report = _train(sqlite_db, hydra_home, tracking)

    # training set: sampling and every image with its split
    assert ts.sampling == "balanced" and ts.label_names == ["Good", "Bad", "NoData"]
    assert ts.n_train + ts.n_validation == 12 + 12 + 6
    with sqlite_db.read() as s:
        row = s.get(TrainingSet, ts.training_set_id)
        assert row.mlflow_run_id == ts.mlflow_run_id and row.dagster_run_id == "dagster-run-1"
        splits = dict(s.execute(select(TrainingSetItem.split, func.count()).where(
            TrainingSetItem.training_set_id == ts.training_set_id).group_by(TrainingSetItem.split)).all())
        assert splits == {"train": ts.n_train, "validation": ts.n_validation}
        # model mirrored, thresholds per label, activated (no model was active), report rows
        version = s.get(Model, model.model_id)
        assert version.key == "hydra-T1/1" and version.model_uri == "models:/hydra-T1/1"
        assert version.active and version.activated_by == "cli" and version.created_by == "tester"
        assert version.label_names == ["Good", "Bad", "NoData"] and version.training_set_id == ts.training_set_id
        assert version.metrics["validation"]["images"] == ts.n_validation
        assert version.metrics["validation"]["split"] == "runs"
        assert version.metrics["validation"]["runs"] == ts.label_counts["validation_runs"]
        assert not set(ts.label_counts["validation_runs"]) & set(ts.label_counts["train_runs"])
        assert s.scalar(select(func.count(Threshold.id)).where(Threshold.model_id == model.model_id)) == 3
        assert s.scalar(select(func.count(ThresholdChange.id)).where(ThresholdChange.model_id == model.model_id)) == 3
        rep = s.get(TrainingReport, report.report_id)
        assert rep.n_images == 30 and rep.mlflow_run_id == report.mlflow_run_id
        assert s.scalar(select(func.count(TrainingReportItem.id)).where(
            TrainingReportItem.report_id == report.report_id)) == report.n_disagreements
    assert thresholds.activated and thresholds.activation_reason == "no model was active"
    assert set(thresholds.thresholds) == {"Good", "Bad", "NoData"}
    assert all(0.0 <= v <= 1.0 for v in thresholds.thresholds.values())

    # MLflow: runs tagged, metrics per epoch, artifacts, registered model with the `active` alias
    client = tracking.client
    run = client.get_run(model.mlflow_run_id)
    assert run.data.tags["plot_type"] == "T1" and run.data.tags["dagster_run_id"] == "dagster-run-1"
    assert run.data.tags["mlflow.parentRunId"] == ts.mlflow_run_id
    assert run.data.params["topology"] == "compact" and run.data.params["input_shape"] == "32x32x3"
    assert run.data.params["sampling"] == "balanced" and run.data.params["epochs"] == "2"
    assert [m.step for m in client.get_metric_history(model.mlflow_run_id, "val_loss")] == [1, 2]
    artifacts = {a.path for a in client.list_artifacts(model.mlflow_run_id, "plots")}
    assert {"plots/loss_accuracy.png", "plots/confusion_matrix_top_label.png"} <= artifacts
    assert "thresholds.csv" in {a.path for a in client.list_artifacts(model.mlflow_run_id)}
    threshold_run = client.get_run(thresholds.mlflow_run_id)
    assert threshold_run.data.tags["mlflow.parentRunId"] == model.mlflow_run_id
    assert {"plots/confusion_matrix.png", "plots/enhanced_confusion_matrix.png"} <= {
        a.path for a in client.list_artifacts(thresholds.mlflow_run_id, "plots")}
    assert "val_bad_recall" in threshold_run.data.metrics
    assert str(client.get_model_version_by_alias("hydra-T1", ACTIVE_ALIAS).version) == "1"
    assert client.get_model_version("hydra-T1", "1").run_id == model.mlflow_run_id

    # the active model loads from the registry (download into models_dir, once) and predicts
    shutil.rmtree(hydra_home.models_dir / "hydra-T1")
    clear_model_cache()
    active = load_active_model(sqlite_db, hydra_home, "T1")
    assert active is not None and active.key == "hydra-T1/1" and active.input_size == (32, 32)
    assert active.thresholds == pytest.approx(thresholds.thresholds)
    assert active.predict(np.zeros((2, 32, 32, 3), np.float32)).shape == (2, 3)
    assert list((hydra_home.models_dir / "hydra-T1" / "1").rglob("*.keras"))
    with sqlite_db.read() as s:  # the recorded predictions come back from the model's MLflow run too
        predictions = load_predictions(hydra_home, tracking, s.get(Model, model.model_id))
    assert predictions.weights.shape == (30, 3) and sorted(set(predictions.split)) == ["train", "validation"]

    # a second training: `never` leaves version 1 active; explicit activation moves the alias
    _, second, again, _ = _train(sqlite_db, hydra_home, tracking, activate="never", epochs=1, run_id="r2")
    assert second.version == "2" and not again.activated
    assert str(client.get_model_version_by_alias("hydra-T1", ACTIVE_ALIAS).version) == "1"
    registry.activate_model(sqlite_db, hydra_home, "T1", "2", "cli")
    assert str(client.get_model_version_by_alias("hydra-T1", ACTIVE_ALIAS).version) == "2"
    assert load_active_model(sqlite_db, hydra_home, "T1").key == "hydra-T1/2"
    with sqlite_db.read() as s:
        assert s.scalar(select(func.count(Model.id)).where(Model.active.is_(True))) == 1

    # a viewer may not activate; the refusal is audited and nothing changes
    sqlite_db.write(lambda s: catalog.add_user(s, "vera", role="viewer"))
    with pytest.raises(catalog.PermissionDenied):
        registry.activate_model(sqlite_db, hydra_home, "T1", "1", "vera")
    with sqlite_db.read() as s:
        assert s.scalar(select(AuditLog).where(AuditLog.user_name == "vera")).allowed is False
    assert load_active_model(sqlite_db, hydra_home, "T1").key == "hydra-T1/2"

    # deactivating falls back to no model, and removes the alias
    previous = registry.deactivate_model(sqlite_db, hydra_home, "T1", "cli")
    assert previous.key == "hydra-T1/2"
    assert load_active_model(sqlite_db, hydra_home, "T1") is None
    assert "active" not in client.get_registered_model("hydra-T1").aliases

    # if_better with nothing active activates; the threshold edit keeps history
    _, third, decided, _ = _train(sqlite_db, hydra_home, tracking, activate="if_better", epochs=1, run_id="r3")
    assert decided.activated
    registry.set_threshold(sqlite_db, third.model_id, "Bad", 0.25, "cli")
    assert load_active_model(sqlite_db, hydra_home, "T1").thresholds["Bad"] == 0.25
    with sqlite_db.read() as s:
        history = s.scalars(select(ThresholdChange).where(ThresholdChange.model_id == third.model_id)
                            .order_by(ThresholdChange.id)).all()
        assert history[-1].new_value == 0.25 and history[-1].changed_by == "cli"


def test_model_step_without_training_set_is_refused(sqlite_db, hydra_home, toy_plot_type):
    tracking = TrackingService.from_settings(hydra_home)
    with pytest.raises(TrainingRefused, match="no training set yet"):
        train_model_step(sqlite_db, hydra_home, tracking, "T1")
    with pytest.raises(TrainingRefused, match="no trained model yet"):
        thresholds_step(sqlite_db, hydra_home, tracking, "T1")


def test_set_threshold_validation(sqlite_db, hydra_home, toy_plot_type, tmp_path):
    from hydra_assets.ml.active import register_local_model
    from hydra_assets.ml.topologies import build_model

    path = tmp_path / "m.keras"
    build_model("compact", (32, 32, 3), 2).save(path)
    model = register_local_model(sqlite_db, "T1", path, ["Good", "Bad"])
    registry.ensure_cli_user(sqlite_db)
    with pytest.raises(catalog.CatalogError, match="between 0 and 1"):
        registry.set_threshold(sqlite_db, model.id, "Bad", 1.5, "cli")
    with pytest.raises(catalog.CatalogError, match="not an output"):
        registry.set_threshold(sqlite_db, model.id, "NoData", 0.5, "cli")
    sqlite_db.write(lambda s: catalog.add_user(s, "lab", role="labeler"))
    with pytest.raises(catalog.PermissionDenied, match="edit_thresholds"):
        registry.set_threshold(sqlite_db, model.id, "Bad", 0.4, "lab")
    # local models activate/deactivate without MLflow
    assert registry.deactivate_model(sqlite_db, hydra_home, "T1", "cli").key == "local-T1/1"
    assert registry.activate_model(sqlite_db, hydra_home, "T1", "1", "cli").key == "local-T1/1"
    with pytest.raises(catalog.CatalogError, match="no model version '7'"):
        registry.activate_model(sqlite_db, hydra_home, "T1", "7", "cli")


def test_impossible_topology_refused_before_training(sqlite_db, hydra_home, toy_plot_type):
    from hydra_assets.ml.topologies import TopologyError

    tracking = TrackingService.from_settings(hydra_home)
    create_training_set(sqlite_db, hydra_home, None, "T1", TrainingSetOptions(min_per_label=5))
    with pytest.raises(TopologyError, match="at least 75x75"):
        train_model_step(sqlite_db, hydra_home, tracking, "T1", TrainOptions(topology="inceptionv3"))
    with pytest.raises(TopologyError, match="unknown topology 'resnet'"):
        train_model_step(sqlite_db, hydra_home, tracking, "T1", TrainOptions(topology="resnet"))
    with sqlite_db.read() as s:
        assert s.scalar(select(func.count(Model.id))) == 0


def test_class_weights_even_out_labels():
    from hydra_assets.ml.fit import class_weights

    assert class_weights(np.array([0, 0, 1, 1]), 2) == {0: 1.0, 1: 1.0}
    weights = class_weights(np.array([0, 0, 0, 1]), 3)
    assert weights[0] * 3 == pytest.approx(weights[1] * 1) and weights[2] == 1.0  # label 2 absent


def test_augmenter_keeps_shape_and_range_and_changes_images():
    from hydra_assets.ml.fit import augmenter
    from hydra_assets.ml.toy import toy_image

    rng = np.random.default_rng(0)
    images = np.stack([toy_image("Bad", 32, rng)[0] for _ in range(4)]).astype(np.float32) / 255
    changed = np.clip(np.asarray(augmenter(3)(images, training=True)), 0, 1)
    assert changed.shape == images.shape and 0.0 < np.abs(changed - images).mean() < 0.2
    assert np.array_equal(np.asarray(augmenter(3)(images, training=False)), images)  # inference: untouched
