"""The challenger in shadow: refusals that write nothing, shadow rows per live chunk with their own timing
(never alarming, never changing inferences or keep decisions, never failing the chunk), promotion through
the registry's activation with the MLflow aliases, and the running comparison's numbers on a crafted set.

Models are the ingestion tests' constant 32x32 compact models, registered as versions of
``hydra-RF_FDC`` in a throw-away MLflow store (the file stays local, so nothing is downloaded).
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy import event, func, select
from test_ingest_support import (  # noqa: F401 - fixtures
    PLOT,
    SIZE,
    drop,
    home,
    instance,
    metadata,
    model_files,
    png_bytes,
    resources,
    tick,
)

from hydra_assets import catalog
from hydra_assets.assets.challenger import CHALLENGER_ASSETS
from hydra_assets.assets.flags import FLAG_ASSETS
from hydra_assets.assets.ingest import INGEST_ASSETS
from hydra_assets.assets.reference import REFERENCE_ASSETS
from hydra_assets.catalog import CatalogError, PermissionDenied
from hydra_assets.challenger import (
    CHALLENGER_ALIAS,
    Judgement,
    Pair,
    challenger_chunk,
    clear_challenger,
    promote,
    running_comparison,
    set_challenger,
    summarize,
)
from hydra_assets.cli import cli
from hydra_assets.db.engine import HydraDB
from hydra_assets.db.models import (
    Alarm,
    AuditLog,
    Image,
    Inference,
    KeepDecision,
    Label,
    Model,
    ShadowInference,
    utcnow,
)
from hydra_assets.jobs.ingest import INGEST_CHUNK, ingest_chunk_job
from hydra_assets.ml.registry import activate_model, ensure_cli_user
from hydra_assets.partitions import run_number
from hydra_assets.settings import HydraSettings
from hydra_assets.tracking import ACTIVE_ALIAS, TrackingService

NAME = f"hydra-{PLOT}"


def count(db: HydraDB, model: type, *where: object) -> int:
    with db.read() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)))


def register(db: HydraDB, config: HydraSettings, files: dict[str, Path], versions: list[str]) -> dict[str, int]:
    """Versions 1, 2, … of hydra-RF_FDC in MLflow and the Hydra DB, one per named model file; v1 active."""
    client = TrackingService.from_settings(config).client
    client.create_registered_model(NAME)
    ids: dict[str, int] = {}
    for number, which in enumerate(versions, start=1):
        client.create_model_version(NAME, source=str(files[which].parent), run_id=None)

        def write(s, number=number, which=which):  # type: ignore[no-untyped-def]
            row = Model(plot_type_id=catalog.get_plot_type(s, PLOT).id, mlflow_name=NAME, mlflow_version=str(number),
                        model_uri=str(files[which]), topology="compact", input_height=SIZE[0], input_width=SIZE[1],
                        label_names=["Good", "Bad"], created_by="test")
            s.add(row)
            s.flush()
            return row.id

        ids[str(number)] = db.write(write)
    ensure_cli_user(db)
    activate_model(db, config, PLOT, "1", "cli")
    return ids


def aliases(config: HydraSettings) -> dict[str, str]:
    return {k: str(v) for k, v in TrackingService.from_settings(config).client.get_registered_model(NAME).aliases.items()}


def challenger_flags(db: HydraDB) -> dict[str, bool]:
    with db.read() as s:
        return {m.mlflow_version: m.challenger for m in s.scalars(select(Model).where(Model.mlflow_name == NAME))}


# ---- refusals ---------------------------------------------------------------------------------------


def test_refusals_say_why_and_write_nothing(home, sqlite_db, model_files):
    register(sqlite_db, home, model_files, ["good", "bad", "unsure"])
    sqlite_db.write(lambda s: catalog.add_plot_type(s, "OTHER", "Good,Bad", "Bad", input_size=SIZE))
    sqlite_db.write(lambda s: s.add(Model(plot_type_id=catalog.get_plot_type(s, "OTHER").id, mlflow_name="hydra-OTHER",
                                          mlflow_version="1", model_uri=str(model_files["good"]), topology="compact",
                                          input_height=32, input_width=32, label_names=["Good", "Bad"])))
    sqlite_db.write(lambda s: catalog.add_user(s, "viewer1", role="viewer"))
    TrackingService.from_settings(home).client.delete_model_version(NAME, "3")

    def write(s):  # v3 lives only in MLflow (deleted there, never cached)
        s.scalar(select(Model).where(Model.mlflow_name == NAME, Model.mlflow_version == "3")).model_uri = \
            f"models:/{NAME}/3"
    sqlite_db.write(write)
    before = count(sqlite_db, AuditLog)

    refusals = {
        "other plot type": ("hydra-OTHER/1", "is a version of plot type OTHER"),
        "unknown": ("9", "has no model version '9'"),
        "deleted": ("3", "not in the MLflow registry (deleted?)"),
        "active": ("1", "is the active version of RF_FDC"),
    }
    for version, words in refusals.values():
        with pytest.raises(CatalogError, match=words.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
            set_challenger(sqlite_db, home, PLOT, version, "cli")
    with pytest.raises(PermissionDenied, match="activate_models"):
        set_challenger(sqlite_db, home, PLOT, "2", "viewer1")
    with pytest.raises(CatalogError, match="has no challenger to promote"):
        promote(sqlite_db, home, PLOT, "cli")
    assert challenger_flags(sqlite_db) == {"1": False, "2": False, "3": False}
    assert CHALLENGER_ALIAS not in aliases(home) and aliases(home)[ACTIVE_ALIAS] == "1"
    with sqlite_db.read() as s:  # only the viewer's refused attempt is audited (the others never got that far)
        audit = s.scalars(select(AuditLog).where(AuditLog.id > before)).all()
    assert [(a.user_name, a.action, a.allowed) for a in audit] == [("viewer1", "set challenger RF_FDC", False)]

    # the CLI says the same on stderr with a usage exit code
    result = CliRunner().invoke(cli, ["model", "challenger", PLOT, "1"])
    assert result.exit_code != 0 and "is the active version" in result.output
    assert challenger_flags(sqlite_db)["1"] is False


def test_one_challenger_per_plot_type_with_its_alias_and_clear(home, sqlite_db, model_files):
    register(sqlite_db, home, model_files, ["good", "bad", "unsure"])
    set_challenger(sqlite_db, home, PLOT, "2", "cli")
    assert challenger_flags(sqlite_db) == {"1": False, "2": True, "3": False}
    assert aliases(home) == {ACTIVE_ALIAS: "1", CHALLENGER_ALIAS: "2"}
    listed = CliRunner().invoke(cli, ["model", "list", PLOT]).output.splitlines()
    assert [line[:1] for line in listed] == ["*", "c", " "]  # active, challenger, neither
    row = set_challenger(sqlite_db, home, PLOT, f"{NAME}/3", "cli")  # the previous one steps down
    assert row.key == f"{NAME}/3" and challenger_flags(sqlite_db) == {"1": False, "2": False, "3": True}
    assert aliases(home)[CHALLENGER_ALIAS] == "3"
    result = CliRunner().invoke(cli, ["model", "challenger", PLOT, "--clear"])
    assert result.exit_code == 0, result.output
    assert f"was {NAME}/3" in result.output and not any(challenger_flags(sqlite_db).values())
    assert CHALLENGER_ALIAS not in aliases(home)
    assert clear_challenger(sqlite_db, home, PLOT, "cli") is None  # nothing to clear: fine, nothing changes


# ---- the live step ------------------------------------------------------------------------------------


def chunk_job_defs(mode: str = "inprocess") -> dg.Definitions:
    return dg.Definitions(assets=[*INGEST_ASSETS, *REFERENCE_ASSETS, *FLAG_ASSETS, *CHALLENGER_ASSETS],
                          jobs=[ingest_chunk_job()], resources=resources(mode))


def run_chunks(instance: dg.DagsterInstance, cursor: str | None = None, *, mode: str = "inprocess"
               ) -> tuple[list, str | None]:
    """One sensor tick, each run request executed as the chunk job (the job the sensor names)."""
    result = tick(instance, cursor, mode=mode)
    job = chunk_job_defs(mode).resolve_job_def(INGEST_CHUNK)
    runs = []
    for request in result.run_requests or []:
        instance.add_dynamic_partitions(run_number.name, [request.partition_key])
        runs.append(job.execute_in_process(partition_key=request.partition_key, run_config=request.run_config,
                                           tags=request.tags, instance=instance))
    return runs, result.cursor


def step_order(result: dg.ExecuteInProcessResult) -> list[str]:
    return [e.step_key for e in result.all_events if e.event_type_value == "STEP_SUCCESS"]


def test_the_challenger_classifies_every_chunk_in_shadow_after_the_keeper_and_never_alarms(
        home, sqlite_db, instance, model_files):
    register(sqlite_db, home, model_files, ["good", "bad"])
    drop(home.input_dir, f"{PLOT}-50-0001.png", png_bytes(1, size=SIZE))
    (first,), cursor = run_chunks(instance)  # no challenger yet
    assert first.success and metadata(first, "challenger_inference")["classified"] == 0
    assert count(sqlite_db, ShadowInference) == 0

    set_challenger(sqlite_db, home, PLOT, "2", "cli")  # says Bad 0.95 to everything
    for chunk in (2, 3):
        drop(home.input_dir, f"{PLOT}-50-{chunk:04d}.png", png_bytes(chunk, size=SIZE))
    runs, cursor = run_chunks(instance, cursor)
    drop(home.input_dir, f"{PLOT}-51-0001.png", png_bytes(9, size=SIZE))
    more, _ = run_chunks(instance, cursor)
    runs += more
    assert all(r.success for r in runs)
    for run in runs:  # the Keeper and the run's flags never wait for the challenger
        order = step_order(run)
        assert order.index("keep") < order.index("challenger_inference")
        assert order.index("run_flags") < order.index("challenger_inference")
        assert metadata(run, "challenger_inference")["challengers"] == {PLOT: f"{NAME}/2"}
    assert sum(metadata(r, "challenger_inference")["classified"] for r in runs) == 3
    assert all(metadata(r, "keep")["alarms"] == 0 for r in runs)

    with sqlite_db.read() as s:
        shadow = s.scalars(select(ShadowInference).order_by(ShadowInference.run_number, ShadowInference.chunk)).all()
        inferences = s.scalars(select(Inference)).all()
        decisions = s.scalars(select(KeepDecision)).all()
        alarms = s.scalar(select(func.count(Alarm.id)))
    assert [(r.run_number, r.chunk) for r in shadow] == [(50, 2), (50, 3), (51, 1)]  # each chunk, once
    assert all(r.purpose == "challenger" and r.model_key == f"{NAME}/2" and r.status == "classified" for r in shadow)
    assert all(r.would_alarm and r.is_bad and r.confirmed for r in shadow)
    assert all(r.predict_ms is not None and r.predict_ms > 0 for r in shadow)  # its own timing
    by_run_id = {r.dagster_run_id for r in shadow}
    assert by_run_id == {r.run_id for r in runs}  # the same Dagster run as the live chunk
    # live results untouched: the active version's, confirmed Good, no alarm, nothing kept for Bad
    assert len(inferences) == 4 and {i.model_key for i in inferences} == {f"{NAME}/1"}
    assert all(i.confirmed and not i.is_bad and not i.flagged for i in inferences)
    assert len(decisions) == 4 and all(d.reason is None for d in decisions) and alarms == 0

    # a backfill of the run classifies only what the challenger has not seen (chunk 1, from before it was named)
    job = chunk_job_defs().resolve_job_def(INGEST_CHUNK)
    backfill = job.execute_in_process(partition_key="50", instance=instance)
    assert backfill.success and metadata(backfill, "challenger_inference")["classified"] == 1
    assert metadata(backfill, "challenger_inference")["already_classified"] == 2
    again = job.execute_in_process(partition_key="50", instance=instance)
    assert metadata(again, "challenger_inference")["classified"] == 0
    assert count(sqlite_db, ShadowInference) == 4 and count(sqlite_db, Inference) == 4


def test_a_broken_challenger_leaves_error_rows_and_the_chunk_goes_on(home, sqlite_db, instance, model_files,
                                                                      tmp_path):
    missing = tmp_path / "gone.keras"
    missing.write_bytes(model_files["bad"].read_bytes())
    register(sqlite_db, home, {**model_files, "gone": missing}, ["good", "gone"])
    set_challenger(sqlite_db, home, PLOT, "2", "cli")
    missing.unlink()  # the file disappears after it was named
    drop(home.input_dir, f"{PLOT}-60-0001.png", png_bytes(1, size=SIZE))
    (run,), _ = run_chunks(instance)
    assert run.success
    assert metadata(run, "inference")["classified"] == 1 and metadata(run, "keep")["decided"] == 1
    assert metadata(run, "challenger_inference")["errors"] == 1
    with sqlite_db.read() as s:
        row = s.scalar(select(ShadowInference))
    assert row.status == "error" and "gone.keras" in row.error and not row.would_alarm
    assert count(sqlite_db, Inference, Inference.status == "classified") == 1 and count(sqlite_db, Alarm) == 0


@pytest.mark.slow
def test_with_the_warm_predictor_service_the_run_loads_no_challenger_model(home, sqlite_db, instance, model_files,
                                                                           monkeypatch):
    """The service scores any version like this process would, says a version it cannot load, and the chunk
    job's challenger step uses it (loading a model in the run would fail here)."""
    from hydra_assets.ingest.predictor import ensure_service
    from hydra_assets.ml import active
    from hydra_assets.ml.active import ModelLoadError
    from hydra_assets.shadow import local_scorer

    ids = register(sqlite_db, home, model_files, ["good", "bad"])
    set_challenger(sqlite_db, home, PLOT, "2", "cli")
    service = ensure_service(home, wait_s=180)
    assert service is not None, (home.home / "run" / "predictor.log").read_text()
    batch = np.random.default_rng(0).integers(0, 255, (3, *SIZE, 3), dtype=np.uint8)
    remote = service.shadow_scorer(sqlite_db, home, ids["2"])(batch)
    here = local_scorer(sqlite_db, home, ids["2"])(batch)
    assert remote.label_names == here.label_names == ["Good", "Bad"] and remote.thresholds == here.thresholds
    assert np.allclose(remote.weights, here.weights, atol=1e-5) and np.allclose(remote.weights[:, 1], 0.95, atol=1e-4)
    with pytest.raises(ModelLoadError, match="no model with id 999"):
        service.shadow_scorer(sqlite_db, home, 999)(batch)

    def no_loading_here(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("the run loaded a model itself")

    monkeypatch.setattr(active, "load_model_version", no_loading_here)
    drop(home.input_dir, f"{PLOT}-80-0001.png", png_bytes(1, size=SIZE))
    (run,), _ = run_chunks(instance, mode="service")
    assert run.success and metadata(run, "challenger_inference")["classified"] == 1
    with sqlite_db.read() as s:
        row = s.scalar(select(ShadowInference))
    assert row.status == "classified" and row.would_alarm and row.predict_ms > 0


def test_without_a_challenger_the_step_costs_one_query(home, sqlite_db, model_files):
    register(sqlite_db, home, model_files, ["good"])
    statements: list[str] = []

    def seen(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        statements.append(statement)

    event.listen(sqlite_db.engine, "before_cursor_execute", seen)
    try:
        result = challenger_chunk(sqlite_db, home, 50, None)
    finally:
        event.remove(sqlite_db.engine, "before_cursor_execute", seen)
    assert result.counts == {} and result.challengers == {}
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 1


# ---- promotion ----------------------------------------------------------------------------------------


def test_promote_makes_the_challenger_active_and_moves_the_alias_in_one_audited_action(home, sqlite_db,
                                                                                      model_files):
    register(sqlite_db, home, model_files, ["good", "bad"])
    sqlite_db.write(lambda s: catalog.add_user(s, "viewer1", role="viewer"))
    set_challenger(sqlite_db, home, PLOT, "2", "cli")
    with pytest.raises(PermissionDenied):
        promote(sqlite_db, home, PLOT, "viewer1")
    assert aliases(home) == {ACTIVE_ALIAS: "1", CHALLENGER_ALIAS: "2"}
    before = count(sqlite_db, AuditLog)
    result = CliRunner().invoke(cli, ["model", "promote", PLOT])
    assert result.exit_code == 0, result.output
    assert f"{NAME}/2 (the challenger) is now the active model" in result.output
    assert aliases(home) == {ACTIVE_ALIAS: "2"}
    with sqlite_db.read() as s:
        rows = {m.mlflow_version: (m.active, m.challenger) for m in s.scalars(select(Model))}
        audit = s.scalars(select(AuditLog).where(AuditLog.id > before)).all()
    assert rows == {"1": (False, False), "2": (True, False)}
    assert [(a.action, a.allowed, a.detail) for a in audit] == [
        ("promote challenger RF_FDC", True, f"challenger {NAME}/2 promoted")]
    with pytest.raises(CatalogError, match="no challenger"):
        promote(sqlite_db, home, PLOT, "cli")


# ---- the running comparison -----------------------------------------------------------------------------


def J(decided: int | None, *, bad: bool = False, alarm: bool = False, ms: float | None = 1.0) -> Judgement:
    return Judgement(decided, bad, alarm, ms)


def test_summarize_counts_alarms_agreement_recall_and_false_alarms():
    GOOD, BAD = 1, 2
    pairs = [
        Pair(7, J(BAD, bad=True, alarm=True, ms=3.0), J(BAD, bad=True, alarm=True, ms=1.0), True),  # both catch it
        Pair(7, J(BAD, bad=True, alarm=True, ms=3.0), J(None, ms=1.0), True),  # only the challenger catches it
        Pair(7, J(BAD, bad=True, alarm=True, ms=3.0), J(GOOD, ms=2.0), False),  # challenger's false alarm
        Pair(7, J(GOOD, ms=3.0), J(GOOD, ms=2.0), None),  # agree, unlabeled
        Pair(7, None, J(GOOD, ms=2.0), False),  # challenger failed on it
        Pair(7, J(GOOD, ms=None), None, None),  # no live classification yet
    ]
    got = summarize(pairs, 7)
    assert (got.images, got.errors, got.compared) == (6, 1, 4)
    assert (got.alarms_active, got.alarms_challenger, got.bad_active, got.bad_challenger) == (1, 3, 1, 3)
    assert got.agreement == 0.5  # images 1 and 4 of the 4 compared
    assert (got.labeled, got.labeled_bad) == (4, 2)
    assert (got.bad_recall_active, got.bad_recall_challenger) == (0.5, 1.0)
    assert (got.false_alarms_active, got.false_alarms_challenger) == (0, 1)
    assert (got.ms_active, got.ms_challenger) == (1.5, 3.0)  # over the compared images


def craft_comparison(db: HydraDB, ids: dict[str, int]) -> None:
    """Six images with live (v1) and challenger (v2) rows, some labeled; the last one's row three days old."""
    old = utcnow() - timedelta(days=3)

    def craft(s):  # type: ignore[no-untyped-def]
        plot = catalog.get_plot_type(s, PLOT)
        label = {lab.name: lab.id for lab in s.scalars(select(Label).where(Label.plot_type_id == plot.id))}
        # (run, human label, live top / confirmed, challenger top / confirmed, challenger classified_at)
        crafted = [(70, "Bad", "Good", True, "Bad", True, None), (70, "Good", "Good", True, "Bad", True, None),
                   (70, None, "Good", True, "Good", True, None), (71, "Bad", "Bad", True, "Bad", True, None),
                   (71, None, "Good", True, "Bad", False, None), (72, "Bad", "Good", True, "Bad", True, old)]
        for n, (run, human, live, live_ok, mine, mine_ok, at) in enumerate(crafted):
            data = f"image {n}".encode()
            image = Image(plot_type_id=plot.id, run_number=run, chunk=n + 1, digest=hashlib.sha256(data).hexdigest(),
                          file_name=f"{n}.png", stored_path=f"/nowhere/{n}.png", size_bytes=1, width=32, height=32,
                          label_id=label[human] if human else None)
            s.add(image)
            s.flush()
            s.add(Inference(image_id=image.id, plot_type_id=plot.id, run_number=run, chunk=n + 1, model_id=ids["1"],
                            model_key=f"{NAME}/1", status="classified", top_label_id=label[live], top_weight=0.9,
                            confirmed=live_ok, is_bad=live == "Bad", predict_ms=2.0))
            s.add(ShadowInference(image_id=image.id, plot_type_id=plot.id, run_number=run, chunk=n + 1,
                                  model_id=ids["2"], model_key=f"{NAME}/2", purpose="challenger", status="classified",
                                  top_label_id=label[mine], top_weight=0.9, confirmed=mine_ok, is_bad=mine == "Bad",
                                  would_alarm=mine_ok and mine == "Bad", predict_ms=5.0,
                                  classified_at=at or utcnow()))

    db.write(craft)


def check_comparison(db: HydraDB) -> None:
    with db.read() as s:
        report = running_comparison(s, PLOT, since=utcnow() - timedelta(days=1))
        everything = running_comparison(s, PLOT)
    assert report.challenger == f"{NAME}/2" and report.current and report.active == f"{NAME}/1"
    assert [r.run for r in report.runs] == [70, 71] and [r.run for r in everything.runs] == [70, 71, 72]
    r70, r71 = report.runs
    assert (r70.images, r70.alarms_active, r70.alarms_challenger, r70.agreement) == (3, 0, 2, pytest.approx(1 / 3, abs=1e-4))
    assert (r70.bad_recall_active, r70.bad_recall_challenger) == (0.0, 1.0)
    assert (r70.false_alarms_active, r70.false_alarms_challenger) == (0, 1)
    assert (r71.alarms_active, r71.alarms_challenger, r71.agreement) == (1, 1, 0.5)
    assert (r71.ms_active, r71.ms_challenger) == (2.0, 5.0)
    assert report.totals.images == 5 and report.totals.labeled_bad == 2 and report.totals.bad_recall_active == 0.5


def test_comparison_and_promotion_on_each_backend(db, hydra_home, model_files):
    """The comparison's queries and the promotion's transaction on SQLite and on MariaDB."""
    hydra_home.ensure_folders()
    db.write(lambda s: catalog.add_plot_type(s, PLOT, "Good,Bad", "Bad", collect_percent=0.0, input_size=SIZE))
    ids = register(db, hydra_home, model_files, ["good", "bad"])
    set_challenger(db, hydra_home, PLOT, "2", "cli")
    craft_comparison(db, ids)
    check_comparison(db)
    promote(db, hydra_home, PLOT, "cli")
    assert challenger_flags(db) == {"1": False, "2": False} and aliases(hydra_home) == {ACTIVE_ALIAS: "2"}
    with db.read() as s:  # after promotion the report of version 2 is still there, by name
        report = running_comparison(s, PLOT, version="2")
    assert report.challenger == f"{NAME}/2" and not report.current and report.active == f"{NAME}/2"
    assert report.totals.images == 6


def test_running_comparison_reads_shadow_and_live_rows_per_run(home, sqlite_db, model_files):
    ids = register(sqlite_db, home, model_files, ["good", "bad"])
    set_challenger(sqlite_db, home, PLOT, "2", "cli")
    craft_comparison(sqlite_db, ids)
    check_comparison(sqlite_db)

    result = CliRunner().invoke(cli, ["model", "challenger-report", PLOT, "--since", "24h"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"challenger {NAME}/2 vs active {NAME}/1 since ")
    assert [line.split()[0] for line in lines[2:]] == ["70", "71", "all"]


# ---- the Library's Challenger tab (logic; the browser test is tests/ui/test_challenger_ui.py) -------------


def test_library_tab_names_promotes_and_says_refusals_next_to_the_buttons(home, sqlite_db, model_files):
    from panel_app.config import PagesConfig
    from panel_app.pages.library import LibraryPage
    from panel_app.store import HydraStore

    ids = register(sqlite_db, home, model_files, ["good", "bad"])
    sqlite_db.write(lambda s: catalog.add_user(s, "viewer1", role="viewer"))
    viewer = LibraryPage(HydraStore(sqlite_db, PagesConfig(settings=home), user="viewer1"))
    viewer.model_id = ids["2"]
    assert viewer.challenger.set_button.visible and "activate_models" in viewer.challenger.permission_note.object
    assert not viewer.challenger.set_challenger()
    assert "Refused" in viewer.challenger.action_note.object and not any(challenger_flags(sqlite_db).values())

    page = LibraryPage(HydraStore(sqlite_db, PagesConfig(settings=home), user="cli"))
    page.model_id = ids["2"]
    assert page.challenger.set_challenger()
    assert page.challenger.report.challenger == f"{NAME}/2" and page.challenger.promote_button.visible
    assert page.model_id == ids["2"] and "challenger" in page.models_pane.object  # still v2, marked
    assert any(label.endswith("· challenger") for label in page.param.model_id.names)
    assert "is now the challenger" in page.challenger.feedback.object
    assert "No images classified by the challenger yet" in page.challenger.table_pane.object
    assert aliases(home) == {ACTIVE_ALIAS: "1", CHALLENGER_ALIAS: "2"}
    page.model_id = ids["1"]  # the active version's row offers no "make it the challenger"
    assert not page.challenger.set_button.visible
    assert page.challenger.promote()
    assert aliases(home) == {ACTIVE_ALIAS: "2"} and page.selected().id == ids["2"] and page.selected().active
    assert "is now the active version" in page.challenger.feedback.object
    assert not page.challenger.promote_button.visible
    assert not page.challenger.promote() and "no challenger" in page.challenger.action_note.object


def test_activating_the_challenger_directly_ends_its_challenge(home, sqlite_db, model_files):
    register(sqlite_db, home, model_files, ["good", "bad"])
    set_challenger(sqlite_db, home, PLOT, "2", "cli")
    result = CliRunner().invoke(cli, ["model", "activate", PLOT, "2"])
    assert result.exit_code == 0, result.output
    assert challenger_flags(sqlite_db) == {"1": False, "2": False}  # the active version is never the challenger
    assert aliases(home) == {ACTIVE_ALIAS: "2"}
