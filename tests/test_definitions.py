"""The code location as Dagster loads it: one Definitions, every asset, job, sensor and check present."""

from __future__ import annotations

import dagster as dg
from dagster._core.workspace.autodiscovery import loadable_targets_from_python_module


def test_dagster_autodiscovery_finds_exactly_one_definitions():
    targets = loadable_targets_from_python_module("hydra_assets.definitions", working_directory=None)
    assert [t.attribute for t in targets] == ["defs"]


def test_snapshot_of_asset_keys_jobs_sensors_and_checks():
    from hydra_assets.definitions import defs

    repo = defs.get_repository_def()
    assets = {key.to_user_string() for key in repo.asset_graph.get_all_asset_keys()}
    assert {"image", "inference", "keep", "training_set", "model", "thresholds", "training_report"} <= assets
    jobs = {job.name for job in repo.get_all_jobs() if not job.name.startswith("__")}
    assert {"ingest_chunk", "train_plot_type"} <= jobs
    sensors = {s.name: s for s in repo.sensor_defs}
    assert "incoming_images" in sensors
    assert sensors["incoming_images"].default_status == dg.DefaultSensorStatus.RUNNING
    checks = {key.name for key in repo.asset_graph.asset_check_keys}
    assert checks, "asset checks gate the ingestion"
    assert dg.AssetCheckKey(dg.AssetKey("keep"), "model_in_its_depth") in repo.asset_graph.asset_check_keys
    assert set(defs.resources) >= {"hydra"}
