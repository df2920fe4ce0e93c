"""`hydra train` through Dagster (run in the instance, partition added, JSON summary) and `hydra model`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_ml_split import spread_over_runs

from hydra_assets import catalog
from hydra_assets.cli import cli
from hydra_assets.db.engine import HydraDB
from hydra_assets.ml.active import clear_model_cache
from hydra_assets.ml.toy import write_toy_labeled
from hydra_assets.settings import HydraSettings


def test_definitions_hold_the_training_assets_and_job():
    from hydra_assets.definitions import defs

    keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    assert {"training_set", "model", "thresholds", "training_report"} <= keys
    job = defs.resolve_job_def("train_plot_type")
    assert job.partitions_def.name == "plot_type"


@pytest.fixture
def labeled_home(sqlite_db: HydraDB, hydra_home: HydraSettings, tmp_path: Path) -> HydraSettings:
    from hydra_assets.label_import import import_labeled_folder

    hydra_home.ensure_folders()
    sqlite_db.write(lambda s: catalog.add_plot_type(s, "T1", "Good,Bad", "Bad", input_size=(32, 32)))
    sqlite_db.write(lambda s: catalog.add_plot_type(s, "Empty", "Good,Bad", "Bad", input_size=(32, 32)))
    folder = write_toy_labeled(tmp_path / "toy", per_label={"Good": 14, "Bad": 10}, size=32)
    import_labeled_folder(sqlite_db, hydra_home, spread_over_runs(folder, "T1", list(range(21, 45))), "T1")
    clear_model_cache()
    return hydra_home


@pytest.mark.slow
def test_hydra_train_runs_in_dagster_and_prints_summary(labeled_home: HydraSettings):
    import dagster as dg

    runner = CliRunner()
    result = runner.invoke(cli, ["train", "T1", "--epochs", "1", "--min-per-label", "5", "--batch-size", "8",
                                 "--activate"], catch_exceptions=False)
    assert result.exit_code == 0, result.output + (result.stderr if hasattr(result, "stderr") else "")
    summary = json.loads(result.stdout)
    assert summary["model"] == "hydra-T1/1" and summary["activated"] and summary["active_model"] == "hydra-T1/1"
    assert summary["mlflow_run_id"] and summary["topology"] == "compact" and summary["input_size"] == [32, 32]
    assert set(summary["thresholds"]) == {"Good", "Bad"}
    assert summary["training_set"]["sampling"] == "balanced"
    assert summary["training_set"]["n_train"] + summary["training_set"]["n_validation"] == 20
    assert summary["validation"]["images"] == summary["training_set"]["n_validation"]
    # split by run: validation runs named, none of them in training, printed with per-run figures and warnings
    validation = summary["validation"]
    assert validation["split"] == "runs" and validation["runs"] == summary["training_set"]["validation_runs"]
    assert not set(validation["runs"]) & set(summary["training_set"]["train_runs"])
    assert set(validation["per_run"]) == {str(r) for r in validation["runs"]} and validation["precision_target"] == 0.95
    assert any("validation holds only" in w for w in validation["warnings"])  # one validation run, few Bad
    assert summary["novelty"]["train_images"] == summary["training_set"]["n_train"]
    assert f"validation: runs, {validation['n_runs']} run(s)" in result.stderr and "WARNING:" in result.stderr
    assert summary["training_report"]["id"] is not None

    # the run is in the Hydra Dagster instance, with the partition and all four materialisations
    instance = dg.DagsterInstance.from_config(str(labeled_home.dagster_home))
    run = instance.get_run_by_id(summary["dagster_run_id"])
    assert run is not None and run.is_success and run.job_name == "train_plot_type"
    assert instance.has_dynamic_partition("plot_type", "T1")
    for key in ("training_set", "model", "thresholds", "training_report"):
        event = instance.get_latest_materialization_event(dg.AssetKey(key))
        assert event is not None and event.run_id == run.run_id
        assert event.asset_materialization.partition == "T1"
    from mlflow.tracking import MlflowClient

    tags = MlflowClient(labeled_home.mlflow_tracking_uri).get_run(summary["mlflow_run_id"]).data.tags
    assert tags["dagster_run_id"] == run.run_id

    listed = runner.invoke(cli, ["model", "list", "T1", "--format", "json"])
    assert listed.exit_code == 0 and json.loads(listed.stdout)[0]["active"] is True
    off = runner.invoke(cli, ["model", "deactivate", "T1"])
    assert off.exit_code == 0 and "no active model (was hydra-T1/1)" in off.stdout
    on = runner.invoke(cli, ["model", "activate", "T1", "1"])
    assert on.exit_code == 0 and "hydra-T1/1 is now the active model" in on.stdout
    threshold = runner.invoke(cli, ["model", "set-threshold", "T1", "1", "Bad", "0.3"])
    assert threshold.exit_code == 0, threshold.output
    shown = json.loads(runner.invoke(cli, ["model", "show", "T1"]).stdout)
    assert shown["thresholds"]["Bad"]["threshold"] == 0.3


def test_hydra_train_refuses_plot_type_without_labels(labeled_home: HydraSettings):
    result = CliRunner().invoke(cli, ["train", "Empty", "--epochs", "1", "--no-progress"])
    assert result.exit_code == 2
    assert "Empty has no labeled images" in result.output


def test_hydra_train_refuses_unknown_plot_type_and_unauthorised_activation(labeled_home: HydraSettings,
                                                                            sqlite_db: HydraDB):
    runner = CliRunner()
    unknown = runner.invoke(cli, ["train", "Nope"])
    assert unknown.exit_code == 2 and "unknown plot type 'Nope'" in unknown.output
    sqlite_db.write(lambda s: catalog.add_user(s, "vera", role="viewer"))
    refused = runner.invoke(cli, ["train", "T1", "--activate", "--user", "vera"])
    assert refused.exit_code == 3 and "activate_models" in refused.output
    missing = runner.invoke(cli, ["model", "activate", "T1", "4"])
    assert missing.exit_code == 2 and "no model version '4'" in missing.output
