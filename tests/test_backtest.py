"""Shadow inferences and backtests: a candidate version classifies stored runs beside the active one,
idempotently, without touching inferences, keep decisions or alarms; bad requests write nothing."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlalchemy import func, select
from test_ingest_support import PLOT, SIZE, constant_model, png_bytes

from hydra_assets import catalog
from hydra_assets.db.engine import HydraDB
from hydra_assets.db.models import Alarm, Image, Inference, KeepDecision, Label, ShadowInference
from hydra_assets.ml.active import register_local_model
from hydra_assets.settings import HydraSettings
from hydra_assets.shadow import classify_shadow, shadow_images

USER = "cli"


@pytest.fixture(scope="module")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("backtest-models")
    return {"good": constant_model(folder / "good.keras", [0.9, 0.1]),
            "bad": constant_model(folder / "bad.keras", [0.05, 0.95])}


@pytest.fixture
def home(hydra_home: HydraSettings, sqlite_db: HydraDB) -> HydraSettings:
    hydra_home.ensure_folders()
    sqlite_db.write(lambda s: catalog.add_plot_type(s, PLOT, "Good,Bad", "Bad", collect_percent=0.0, input_size=SIZE))
    return hydra_home


def store_images(db: HydraDB, config: HydraSettings, runs: dict[int, int], *, plot_type: str = PLOT,
                 labels: dict[tuple[int, int], str] | None = None) -> None:
    """`runs[run]` stored images per run (one per chunk), some with a human label (run, chunk) -> name."""
    labels = labels or {}

    def write(s):
        plot = catalog.get_plot_type(s, plot_type)
        label_ids = {lab.name: lab.id for lab in catalog.labels_of(s, plot)}
        for run, n in runs.items():
            for chunk in range(1, n + 1):
                data = png_bytes(run * 1000 + chunk, size=SIZE)
                path = config.images_dir / plot_type / str(run) / f"{chunk:04d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                label = labels.get((run, chunk))
                s.add(Image(plot_type_id=plot.id, run_number=run, chunk=chunk,
                            digest=hashlib.sha256(data).hexdigest(), file_name=path.name, stored_path=str(path),
                            size_bytes=len(data), width=SIZE[1], height=SIZE[0],
                            label_id=label_ids[label] if label else None))

    db.write(write)


def count(db: HydraDB, model: type, *where: object) -> int:
    with db.read() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)))


def test_shadow_rows_are_computed_like_predict_and_written_once(home, sqlite_db, model_files):
    store_images(sqlite_db, home, {100: 3, 101: 2})
    candidate = register_local_model(sqlite_db, PLOT, model_files["bad"], ["Good", "Bad"], activate=False,
                                     input_size=SIZE)
    with sqlite_db.read() as s:
        images = shadow_images(s, candidate.plot_type_id, [100, 101])
    first = classify_shadow(sqlite_db, home, candidate, images, "backtest", dagster_run_id="r1")
    assert (first.images, first.classified, first.skipped, first.errors, first.would_alarm) == (5, 5, 0, 0, 5)
    with sqlite_db.read() as s:
        rows = list(s.scalars(select(ShadowInference)))
        bad_id = s.scalar(select(Label.id).where(Label.name == "Bad"))
    assert len(rows) == 5
    assert all(r.weights == pytest.approx({"Good": 0.05, "Bad": 0.95}, abs=1e-4) for r in rows)
    assert all(r.confirmed and r.is_bad and r.would_alarm and r.top_label_id == bad_id for r in rows)
    assert {r.run_number for r in rows} == {100, 101} and {r.dagster_run_id for r in rows} == {"r1"}
    again = classify_shadow(sqlite_db, home, candidate, images, "backtest")
    assert (again.classified, again.skipped) == (0, 5)
    assert count(sqlite_db, ShadowInference) == 5
    # never a live inference, keep decision or alarm
    assert count(sqlite_db, Inference) == count(sqlite_db, KeepDecision) == count(sqlite_db, Alarm) == 0


def test_shadow_of_a_model_that_cannot_load_stores_errors_then_retries(home, sqlite_db, model_files, tmp_path):
    store_images(sqlite_db, home, {100: 2})
    broken = tmp_path / "gone.keras"
    broken.write_bytes(Path(model_files["good"]).read_bytes())
    candidate = register_local_model(sqlite_db, PLOT, broken, ["Good", "Bad"], activate=False, input_size=SIZE)
    broken.unlink()
    with sqlite_db.read() as s:
        images = shadow_images(s, candidate.plot_type_id, [100])
    failed = classify_shadow(sqlite_db, home, candidate, images, "challenger")
    assert failed.errors == 2 and "does not exist" in failed.error
    broken.write_bytes(Path(model_files["good"]).read_bytes())
    retried = classify_shadow(sqlite_db, home, candidate, images, "challenger")
    assert (retried.classified, retried.errors, retried.would_alarm) == (2, 0, 0)
    assert count(sqlite_db, ShadowInference) == 2
    assert count(sqlite_db, ShadowInference, ShadowInference.status == "classified") == 2


# ---- backtests ------------------------------------------------------------------------------------


def labeled_setup(db: HydraDB, config: HydraSettings, model_files) -> tuple:
    """Runs 100 (3 images) and 101 (2), images 1-2 of run 100 labeled Good, 1 of run 101 labeled Bad; the
    active version says Good everywhere, the candidate Bad everywhere."""
    store_images(db, config, {100: 3, 101: 2, 102: 1},
                 labels={(100, 1): "Good", (100, 2): "Good", (101, 1): "Bad"})
    from hydra_assets.ml.registry import ensure_cli_user

    ensure_cli_user(db, USER)
    active = register_local_model(db, PLOT, model_files["good"], ["Good", "Bad"], input_size=SIZE)
    candidate = register_local_model(db, PLOT, model_files["bad"], ["Good", "Bad"], activate=False, input_size=SIZE)
    return active, candidate


def test_a_backtest_runs_each_run_through_dagster_and_reports_against_labels(home, sqlite_db, model_files):
    import dagster as dg

    from hydra_assets.backtest import describe_backtest, disagreeing_images, request_backtest
    from hydra_assets.db.models import Backtest
    from hydra_assets.jobs.backtest import run_in_process

    active, candidate = labeled_setup(sqlite_db, home, model_files)
    request = request_backtest(sqlite_db, home, PLOT, candidate.mlflow_version, "100-101", USER)
    assert (request.runs, request.n_images, request.active) == ([100, 101], 5, active.key)
    instance = dg.DagsterInstance.ephemeral()
    result = run_in_process(instance, home, request.id, request.runs)
    assert len(result.run_ids) == 2 and not result.failed
    runs = instance.get_runs()
    assert {r.tags["hydra/backtest"] for r in runs} == {str(request.id)} and all(r.is_success for r in runs)
    assert {r.tags["dagster/partition"] for r in runs} == {"100", "101"}
    with sqlite_db.read() as s:
        backtest = s.get(Backtest, request.id)
        shown = describe_backtest(s, backtest)
        queue = disagreeing_images(s, request.id)
    assert shown["status"] == "done" and shown["progress"] == [5, 5]
    report = shown["report"]
    totals = report["totals"]
    assert (totals["images"], totals["alarms_active"], totals["alarms_candidate"]) == (5, 0, 5)
    assert (totals["agreement"], totals["disagreements"]) == (0.0, 5)
    assert (totals["labeled"], totals["labeled_bad"]) == (3, 1)
    assert (totals["bad_recall_active"], totals["bad_recall_candidate"]) == (0.0, 1.0)
    assert (totals["false_alarms_active"], totals["false_alarms_candidate"]) == (0, 2)
    assert [(r["run"], r["images"], r["alarms_candidate"]) for r in report["per_run"]] == [(100, 3, 3), (101, 2, 2)]
    assert len(queue) == 5 and len(report["disagreements"]) == 5
    # run 102 is outside: no shadow row; live tables untouched
    assert count(sqlite_db, ShadowInference, ShadowInference.run_number == 102) == 0
    assert count(sqlite_db, Inference) == count(sqlite_db, KeepDecision) == count(sqlite_db, Alarm) == 0
    assert shown["mlflow_run_id"]  # logged to the (local) MLflow store

    # the same backtest again: nothing classified twice, the same report
    before = count(sqlite_db, ShadowInference)
    again = request_backtest(sqlite_db, home, PLOT, candidate.mlflow_version, "100-101", USER)
    assert not run_in_process(instance, home, again.id, again.runs).failed
    with sqlite_db.read() as s:
        second = s.get(Backtest, again.id).report
    assert count(sqlite_db, ShadowInference) == before
    assert {**second, "backtest_id": 0} == {**report, "backtest_id": 0}


def test_activation_notes_warn_without_a_backtest_and_on_more_false_alarms(home, sqlite_db, model_files):
    import dagster as dg

    from hydra_assets.backtest import activation_notes, request_backtest
    from hydra_assets.db.models import Model
    from hydra_assets.jobs.backtest import run_in_process

    _active, candidate = labeled_setup(sqlite_db, home, model_files)
    with sqlite_db.read() as s:
        (note,) = activation_notes(s, s.get(Model, candidate.id))
    assert note.startswith("warning:") and "no backtest" in note
    request = request_backtest(sqlite_db, home, PLOT, candidate.mlflow_version, "100-101", USER)
    run_in_process(dg.DagsterInstance.ephemeral(), home, request.id, request.runs)
    with sqlite_db.read() as s:
        notes = activation_notes(s, s.get(Model, candidate.id))
    assert "alarms 0 (active) vs 5 (candidate)" in notes[0]
    assert any("more false alarms" in n and "(2 vs 0)" in n for n in notes)


@pytest.mark.parametrize("case", ["no images", "other plot type", "missing file", "active", "backwards"])
def test_a_bad_backtest_request_says_why_and_writes_nothing(home, sqlite_db, model_files, tmp_path, case):
    from hydra_assets.backtest import request_backtest
    from hydra_assets.catalog import CatalogError
    from hydra_assets.db.models import AuditLog, Backtest

    active, candidate = labeled_setup(sqlite_db, home, model_files)
    sqlite_db.write(lambda s: catalog.add_plot_type(s, "OTHER", "Good,Bad", "Bad", input_size=SIZE))
    other = register_local_model(sqlite_db, "OTHER", model_files["good"], ["Good", "Bad"], activate=False,
                                 input_size=SIZE)
    gone = tmp_path / "gone.keras"
    gone.write_bytes(Path(model_files["bad"]).read_bytes())
    missing = register_local_model(sqlite_db, PLOT, gone, ["Good", "Bad"], activate=False, input_size=SIZE)
    gone.unlink()
    version, runs, expected = {
        "no images": (candidate.mlflow_version, "500-600", "no stored images in runs 500-600"),
        "other plot type": (other.key, "100-101", "is a version of plot type OTHER, not of RF_FDC"),
        "missing file": (missing.mlflow_version, "100-101", "is missing"),
        "active": (active.mlflow_version, "100-101", "is the active model of RF_FDC"),
        "backwards": (candidate.mlflow_version, "101-100", "must not be after the last"),
    }[case]
    audits = count(sqlite_db, AuditLog)
    with pytest.raises(CatalogError, match=expected):
        request_backtest(sqlite_db, home, PLOT, version, runs, USER)
    assert count(sqlite_db, Backtest) == 0 and count(sqlite_db, ShadowInference) == 0
    assert count(sqlite_db, AuditLog) == audits


def test_the_sensor_launches_a_requested_backtest_once_as_an_asset_backfill(home, sqlite_db, model_files, tmp_path):
    import dagster as dg

    from hydra_assets.backtest import claim, request_backtest
    from hydra_assets.db.models import Backtest
    from hydra_assets.jobs.backtest import backtest_requests, daemon_running
    from hydra_assets.resources.hydra import HydraResource

    _active, candidate = labeled_setup(sqlite_db, home, model_files)
    request = request_backtest(sqlite_db, home, PLOT, candidate.mlflow_version, "100-102", USER)
    hydra = HydraResource(home=str(home.home), db_url=home.db_url)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        assert not daemon_running(instance)
        with dg.build_sensor_context(instance=instance, resources={"hydra": hydra}) as context:
            tick = backtest_requests(context)
        assert f"launched backtests {request.id}" in str(tick.skip_message)
        with sqlite_db.read() as s:
            row = s.get(Backtest, request.id)
            status, backfill_id = row.status, row.dagster_backfill_id
        assert status == "running" and backfill_id
        backfill = instance.get_backfill(backfill_id)
        assert backfill.tags["hydra/backtest"] == str(request.id)
        assert backfill.run_config == {"ops": {"backtest_inference": {"config": {"backtest_id": request.id}}}}
        subset = backfill.asset_backfill_data.target_subset
        assert sorted(subset.get_partitions_subset(dg.AssetKey("backtest_inference")).get_partition_keys()) == [
            "100", "101", "102"]
        with dg.build_sensor_context(instance=instance, resources={"hydra": hydra}) as context:
            again = backtest_requests(context)
        assert "no backtest requested" in str(again.skip_message)
        assert len(instance.get_backfills()) == 1
    assert not claim(sqlite_db, request.id, backfill_id="", how="twice")  # launched once



def test_cli_backtest_waits_reports_and_activation_warns(home, sqlite_db, model_files, monkeypatch):
    from click.testing import CliRunner

    from hydra_assets.cli import cli

    monkeypatch.delenv("DAGSTER_HOME", raising=False)  # the command sets it for its process: restored after
    _active, candidate = labeled_setup(sqlite_db, home, model_files)
    runner = CliRunner()
    bad = runner.invoke(cli, ["model", "backtest", PLOT, candidate.mlflow_version, "--runs", "700-800", "--wait"])
    assert bad.exit_code == 2 and "no stored images in runs 700-800" in bad.output
    done = runner.invoke(cli, ["model", "backtest", PLOT, candidate.mlflow_version, "--runs", "100-101", "--wait"],
                         catch_exceptions=False)
    assert done.exit_code == 0, done.output
    assert "2 Dagster runs in" in done.output and "done: 5 images" in done.output
    assert f"/labeler?plot_type={PLOT}&backtest=1" in done.output
    report = runner.invoke(cli, ["model", "backtest-report", PLOT, candidate.mlflow_version], catch_exceptions=False)
    assert "backtest 1 (done, 5/5 images)" in report.output
    assert any(line.split()[:2] == ["all", "5"] for line in report.output.splitlines())
    activated = runner.invoke(cli, ["model", "activate", PLOT, candidate.mlflow_version], catch_exceptions=False)
    assert "more false alarms on labeled images than the active version (2 vs 0)" in activated.output
    assert f"{candidate.key} is now the active model" in activated.output


def test_one_dagster_run_over_a_range_of_run_numbers_classifies_only_the_backtest_runs(home, sqlite_db, model_files):
    """What the daemon launches for a backfill (at most ten run numbers per Dagster run): a range that holds a
    run outside the backtest (102) classifies the others and reports."""
    import dagster as dg

    from hydra_assets.backtest import request_backtest
    from hydra_assets.db.models import Backtest
    from hydra_assets.jobs.backtest import BACKTEST_JOB, _definitions, add_partitions, run_config
    from hydra_assets.resources.hydra import HydraResource

    _active, candidate = labeled_setup(sqlite_db, home, model_files)
    request = request_backtest(sqlite_db, home, PLOT, candidate.mlflow_version, "100-101", USER)
    instance = dg.DagsterInstance.ephemeral()
    add_partitions(instance, [100, 101, 102])
    job = _definitions(HydraResource(home=str(home.home), db_url=home.db_url)).resolve_job_def(BACKTEST_JOB)
    result = job.execute_in_process(run_config=run_config(request.id), instance=instance, tags={
        "dagster/asset_partition_range_start": "100", "dagster/asset_partition_range_end": "102"})
    assert result.success
    (materialization, *_rest) = result.asset_materializations_for_node("backtest_inference")
    assert materialization.metadata["runs"].value == [100, 101]
    assert materialization.metadata["classified"].value == 5
    assert count(sqlite_db, ShadowInference, ShadowInference.run_number == 102) == 0
    with sqlite_db.read() as s:
        assert s.get(Backtest, request.id).status == "done"


def test_a_backtest_on_both_database_backends(db, hydra_home, model_files):
    """The shadow rows (unique per image, version and purpose), the report and the disagreement queue on
    SQLite and on MariaDB, the second pass writing nothing."""
    import dagster as dg

    from hydra_assets.backtest import disagreeing_images, request_backtest
    from hydra_assets.db.models import Backtest
    from hydra_assets.jobs.backtest import run_in_process

    config = hydra_home.model_copy(update={"db_url": db.url})
    config.ensure_folders()
    db.write(lambda s: catalog.add_plot_type(s, PLOT, "Good,Bad", "Bad", collect_percent=0.0, input_size=SIZE))
    _active, candidate = labeled_setup(db, config, model_files)
    request = request_backtest(db, config, PLOT, candidate.mlflow_version, "100-101", USER)
    instance = dg.DagsterInstance.ephemeral()
    assert not run_in_process(instance, config, request.id, request.runs).failed
    assert not run_in_process(instance, config, request.id, request.runs).failed  # again: nothing new
    assert count(db, ShadowInference) == 10  # 5 images x (candidate + active)
    with db.read() as s:
        report = s.get(Backtest, request.id).report
        queue = disagreeing_images(s, request.id)
    assert (report["totals"]["false_alarms_candidate"], report["totals"]["bad_recall_candidate"]) == (2, 1.0)
    assert len(queue) == 5
