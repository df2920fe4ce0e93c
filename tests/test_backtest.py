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
