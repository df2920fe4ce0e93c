"""Run-aware validation: the split never puts a run on both sides, cross-validation over few runs, one run
trains with a loud warning; the model step records out-of-fold predictions and the novelty reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hydra_assets import catalog
from hydra_assets.db.engine import HydraDB
from hydra_assets.db.models import Model, TrainingSet
from hydra_assets.ml import registry
from hydra_assets.ml.active import clear_model_cache
from hydra_assets.ml.model_step import TrainOptions, train_model_step
from hydra_assets.ml.predictions import load_predictions
from hydra_assets.ml.thresholds_step import per_run_figures, thresholds_step, validation_warnings
from hydra_assets.ml.toy import write_toy_labeled
from hydra_assets.ml.training_report import training_report_step
from hydra_assets.ml.training_set import (
    FOLD_PREFIX,
    MAX_FOLDS,
    MIN_RUNS_FOR_HOLDOUT,
    SPLIT_CROSS_VALIDATION,
    SPLIT_RUNS,
    SPLIT_SINGLE_RUN,
    TrainingSetOptions,
    create_training_set,
    plan_training_set,
)
from hydra_assets.scores import novelty
from hydra_assets.settings import HydraSettings
from hydra_assets.tracking import TrackingService

LABELS = [("Good", False), ("Bad", True), ("NoData", False)]


def spread_over_runs(folder: Path, plot_type: str, runs: list[int]) -> Path:
    """Rename toy images to `<plot_type>-<run>-<chunk>.png`, dealing the images (label folder by folder) over
    `runs` in turn: as many runs as images gives every image its own run."""
    chunk = 0
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        for path in sorted(sub.glob("*.png")):
            path.with_suffix(".json").unlink(missing_ok=True)
            path.rename(sub / f"{plot_type}-{runs[chunk % len(runs)]}-{chunk + 1:04d}.png")
            chunk += 1
    return folder


# ---- the split (pure) ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(40))
def test_no_run_is_ever_on_both_sides(seed):
    rng = np.random.default_rng(seed)
    n_runs = int(rng.integers(1, 25))
    run_numbers = rng.choice(np.arange(100, 1000), size=n_runs, replace=False)
    bad_share = rng.uniform(0.05, 0.6)
    labeled = []
    for image_id in range(int(rng.integers(40, 300))):
        label = "Bad" if rng.random() < bad_share else ("NoData" if rng.random() < 0.1 else "Good")
        labeled.append((image_id, label, int(rng.choice(run_numbers))))
    try:
        plan = plan_training_set(labeled, LABELS, TrainingSetOptions(min_per_label=5, seed=seed,
                                                                     validation_fraction=rng.uniform(0.1, 0.4)))
    except Exception as refused:  # too few of a label in this layout: a refusal, never a leaky split
        assert "needs at least" in str(refused)
        return
    by_split: dict[str, set[int]] = {}
    for image_id, _, split in plan.items:
        by_split.setdefault(split, set()).add(plan.run_of[image_id])
    splits = list(by_split)
    for a in splits:
        for b in splits:
            if a != b:
                assert not by_split[a] & by_split[b], f"run on both sides: {a} {b}"
    used_runs = len(set(plan.run_of.values()))
    if used_runs == 1:
        assert plan.split_method == SPLIT_SINGLE_RUN and set(splits) == {"train"} and plan.warnings
    elif used_runs < MIN_RUNS_FOR_HOLDOUT:
        assert plan.split_method == SPLIT_CROSS_VALIDATION
        assert all(s.startswith(FOLD_PREFIX) for s in splits) and len(splits) == min(used_runs, MAX_FOLDS)
        assert sum(len(runs) for runs in plan.folds().values()) == used_runs  # every run held out once
        if used_runs <= MAX_FOLDS:
            assert all(len(runs) == 1 for runs in plan.folds().values())  # leave one run out
    else:
        assert plan.split_method == SPLIT_RUNS and set(splits) == {"train", "validation"}
        summary = plan.summary()
        assert not set(summary["train_runs"]) & set(summary["validation_runs"])


def test_holdout_is_stratified_as_far_as_runs_allow():
    # 20 runs, Bad only in runs 0-7: validation should still get a run with Bad images, and every label trains.
    labeled = [(i, "Bad" if (i % 20) < 8 and i % 3 == 0 else "Good", i % 20) for i in range(800)]
    plan = plan_training_set(labeled, LABELS, TrainingSetOptions(min_per_label=5))
    assert plan.split_method == SPLIT_RUNS
    assert plan.counts("validation")["Bad"] > 0 and plan.counts("train")["Bad"] > 0
    assert not plan.warnings


def test_balanced_sampling_and_minimums_hold_with_runs():
    labeled = [(i, "Bad" if i < 30 else "Good", i % 7) for i in range(200)]
    plan = plan_training_set(labeled, LABELS, TrainingSetOptions(min_per_label=10))
    assert plan.counts() == {"Good": 30, "Bad": 30}


def test_validation_warnings_are_honest():
    summary = {"images": 24, "accuracy": 1.0}
    warnings = validation_warnings(summary, split=SPLIT_CROSS_VALIDATION, n_runs=2, bad_images=4,
                                   precision_target=0.95, never_confirms=["NoData"])
    text = " ".join(warnings)
    assert "only 2 run(s)" in text and "only 4 Bad image(s)" in text
    assert "validation accuracy 1.000 on 24 images of 2 run(s) is not evidence" in text
    assert "label NoData" in text
    assert validation_warnings({"images": 500, "accuracy": 0.97}, split=SPLIT_RUNS, n_runs=6, bad_images=80,
                               precision_target=0.95, never_confirms=[]) == []


def test_per_run_figures():
    names = ["Good", "Bad"]
    weights = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]])
    true = np.array([0, 1, 0, 1])
    runs = np.array([5, 5, 6, 6])
    out = per_run_figures(weights, true, runs, names, {"Good": 0.7, "Bad": 0.6}, ["Bad"])
    assert out["5"] == {"images": 2, "bad": 1, "accuracy": 1.0, "bad_recall": 1.0, "false_alarms": 0.0,
                        "unconfirmed": 0.0}
    assert out["6"] == {"images": 2, "bad": 1, "accuracy": 0.0, "bad_recall": 0.0, "false_alarms": 1.0,
                        "unconfirmed": 0.5}


# ---- the steps on toy images ---------------------------------------------------------------------


def _home(db: HydraDB, config: HydraSettings, tmp_path: Path, runs: list[int]) -> None:
    from hydra_assets.label_import import import_labeled_folder

    config.ensure_folders()
    db.write(lambda s: catalog.add_plot_type(s, "T1", "Good,Bad", "Bad", input_size=(32, 32)))
    folder = write_toy_labeled(tmp_path / "toy", per_label={"Good": 12, "Bad": 12}, size=32)
    import_labeled_folder(db, config, spread_over_runs(folder, "T1", runs), "T1")
    clear_model_cache()


@pytest.mark.slow
def test_cross_validation_over_three_runs(sqlite_db: HydraDB, hydra_home: HydraSettings, tmp_path: Path):
    _home(sqlite_db, hydra_home, tmp_path, [101, 102, 103])
    tracking = TrackingService.from_settings(hydra_home)
    ts = create_training_set(sqlite_db, hydra_home, tracking, "T1", TrainingSetOptions(min_per_label=5))
    assert ts.label_counts["split"] == SPLIT_CROSS_VALIDATION
    assert ts.label_counts["folds"] == {"fold-1": [101], "fold-2": [102], "fold-3": [103]}
    assert ts.n_train == ts.n_validation == 24
    model = train_model_step(sqlite_db, hydra_home, tracking, "T1", TrainOptions(epochs=1, batch_size=8))
    with sqlite_db.read() as s:
        row = s.get(Model, model.model_id)
        predictions = load_predictions(hydra_home, tracking, row)
    validation = predictions.of("validation")
    assert len(validation.image_id) == 24 and sorted(set(validation.run.tolist())) == [101, 102, 103]
    assert len(predictions.of("train").image_id) == 24  # the registered model, fit on every image
    # novelty: reference of the registered model saved, logged to its run, described in the metrics
    path = hydra_home.models_dir / model.name / model.version / novelty.FILE_NAME
    reference = novelty.load(path)
    assert reference.features.shape[0] == 24
    assert novelty.FILE_NAME in {a.path.split("/")[-1] for a in
                                 tracking.client.list_artifacts(model.mlflow_run_id, "novelty")}
    facts = model.metrics["novelty"]
    assert facts["limit"] == pytest.approx(reference.limit) and facts["train_images"] == 24
    assert facts["quantile"] == 0.99 and 0.0 <= facts["validation_rate"] <= 1.0
    result = thresholds_step(sqlite_db, hydra_home, tracking, "T1", activate="if_better",
                             user=registry.ensure_cli_user(sqlite_db))
    validation_facts = result.validation
    assert validation_facts["split"] == SPLIT_CROSS_VALIDATION and validation_facts["runs"] == [101, 102, 103]
    assert validation_facts["n_runs"] == 3 and set(validation_facts["per_run"]) == {"101", "102", "103"}
    assert validation_facts["precision_target"] == 0.95 and set(validation_facts["threshold_rules"]) == {"Good", "Bad"}
    assert not any("run(s):" in w or "Bad image(s)" in w for w in validation_facts["warnings"])  # 3 runs, 12 Bad
    report = training_report_step(sqlite_db, hydra_home, tracking, "T1", thumbnails=0)
    assert report.n_images == 24


@pytest.mark.slow
def test_single_run_trains_with_a_loud_warning(sqlite_db: HydraDB, hydra_home: HydraSettings, tmp_path: Path):
    _home(sqlite_db, hydra_home, tmp_path, [7])
    tracking = TrackingService.from_settings(hydra_home)
    ts = create_training_set(sqlite_db, hydra_home, tracking, "T1", TrainingSetOptions(min_per_label=5))
    assert ts.label_counts["split"] == SPLIT_SINGLE_RUN and ts.n_validation == 0
    assert "no run-held-out validation" in ts.label_counts["warnings"][0]
    model = train_model_step(sqlite_db, hydra_home, tracking, "T1", TrainOptions(epochs=1, batch_size=8))
    assert model.metrics["novelty"]["validation_rate"] is None
    result = thresholds_step(sqlite_db, hydra_home, tracking, "T1")
    assert result.validation["split"] == SPLIT_SINGLE_RUN
    assert all(v >= 0.9 for v in result.thresholds.values())
    assert any("in-sample" in w for w in result.validation["warnings"])
    with sqlite_db.read() as s:
        assert s.get(TrainingSet, ts.training_set_id).label_counts["runs"] == [7]
