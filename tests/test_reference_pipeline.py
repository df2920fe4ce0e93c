"""The reference score through Dagster: sensor → image → inference → reference_score → keep, one partition."""

from __future__ import annotations

import io

import dagster as dg
import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import select
from test_ingest_support import (  # noqa: F401 - fixtures
    PLOT,
    activate,
    count,
    drop,
    home,
    instance,
    metadata,
    model_files,
    resources,
    tick,
)
from test_reference_scores import curve

from hydra_assets.assets.ingest import INGEST_ASSETS
from hydra_assets.assets.reference import REFERENCE_ASSETS
from hydra_assets.db.models import Alarm, Image, KeepDecision, PlotType, ReferenceScore
from hydra_assets.partitions import run_number
from hydra_assets.references import choose_reference

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("home")]
CHUNK_ASSETS = [*INGEST_ASSETS, *REFERENCE_ASSETS]


def png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    PILImage.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def ingest(instance: dg.DagsterInstance) -> list[dg.ExecuteInProcessResult]:
    """One sensor tick and its runs, with the reference score in the chunk (as the chunk job runs it)."""
    runs = []
    for request in tick(instance).run_requests or []:
        instance.add_dynamic_partitions(run_number.name, [request.partition_key])
        runs.append(dg.materialize(CHUNK_ASSETS, partition_key=request.partition_key, instance=instance,
                                   resources=resources(), run_config=request.run_config, tags=request.tags))
    return runs


def drop_run(home, run: int, pictures: list[np.ndarray]) -> None:
    for chunk, pixels in enumerate(pictures):
        drop(home.input_dir, f"{PLOT}-{run}-{chunk:04d}.png", png(pixels))


def set_reference(db, home, runs: list[int], *, alarm: bool) -> None:
    def work(s) -> None:
        choose_reference(s, home.images_dir, PLOT, runs, by="alice", comment="test")
        s.scalar(select(PlotType).where(PlotType.name == PLOT)).reference_alarm = alarm

    db.write(work)


def test_a_plot_type_without_a_model_gets_scores_and_a_reference_alarm(home, instance, sqlite_db):
    rng = np.random.default_rng(10)
    drop_run(home, 121000, [curve(rng) for _ in range(8)])
    (first,) = ingest(instance)
    assert first.success
    assert metadata(first, "reference_score")["missing"] == 8
    with sqlite_db.read() as s:
        reasons = set(s.scalars(select(ReferenceScore.reason)))
        assert reasons == {f"no reference yet; hydra reference set {PLOT} --runs N (or hydra reference auto {PLOT})"}
    assert count(sqlite_db, Alarm) == 0

    set_reference(sqlite_db, home, [121000], alarm=True)
    drop_run(home, 121001, [curve(rng) for _ in range(3)] + [curve(rng, shift=0.25)])
    (second,) = ingest(instance)
    assert second.success
    scored = metadata(second, "reference_score")
    assert (scored["scored"], scored["unlike_reference"], scored["missing"]) == (4, 1, 0)
    with sqlite_db.read() as s:
        shifted = s.scalar(select(Image).where(Image.run_number == 121001, Image.chunk == 3))
        decision = s.scalar(select(KeepDecision).where(KeepDecision.image_id == shifted.id))
        assert decision.keep and decision.reason == "reference"
        (alarm,) = s.scalars(select(Alarm))
        assert alarm.kind == "reference" and alarm.image_id == shifted.id
        assert f"{PLOT} run 121001 chunk 3: unlike its reference (reference score " in alarm.message
        score = s.scalar(select(ReferenceScore).where(ReferenceScore.image_id == shifted.id))
        assert score.reference_version == 1 and score.flagged and score.score > score.score_limit

    rows = count(sqlite_db, ReferenceScore)
    rerun = dg.materialize(CHUNK_ASSETS, partition_key="121001", instance=instance, resources=resources())
    assert rerun.success and count(sqlite_db, ReferenceScore) == rows
    assert metadata(rerun, "reference_score")["already_scored"] == 4
    assert count(sqlite_db, Alarm) == 1


def test_reference_alarm_off_keeps_the_image_without_waking_anyone(home, instance, sqlite_db):
    rng = np.random.default_rng(11)
    drop_run(home, 121000, [curve(rng) for _ in range(8)])
    ingest(instance)
    set_reference(sqlite_db, home, [121000], alarm=False)
    drop_run(home, 121001, [curve(rng, shift=0.25)])
    ingest(instance)
    with sqlite_db.read() as s:
        image = s.scalar(select(Image).where(Image.run_number == 121001))
        assert s.scalar(select(KeepDecision.reason).where(KeepDecision.image_id == image.id)) == "reference"
    assert count(sqlite_db, Alarm) == 0


def test_a_confirmed_bad_unlike_its_reference_gets_one_alarm_saying_both(home, instance, sqlite_db, model_files):
    rng = np.random.default_rng(12)
    drop_run(home, 121000, [curve(rng) for _ in range(8)])
    ingest(instance)
    set_reference(sqlite_db, home, [121000], alarm=True)
    activate(sqlite_db, model_files["bad"])
    drop_run(home, 121001, [curve(rng, shift=0.25)])
    ingest(instance)
    with sqlite_db.read() as s:
        (alarm,) = s.scalars(select(Alarm))
        assert alarm.kind == "bad"
        assert "Bad, weight 0.95 ≥ threshold" in alarm.message and "; also unlike its reference" in alarm.message


def test_the_hourly_refresh_follows_the_latest_runs_the_classifier_confirmed_good(home, instance, sqlite_db,
                                                                                  model_files):
    from datetime import timedelta

    from hydra_assets.db.models import ReferenceSet, Run, utcnow
    from hydra_assets.jobs.reference import reference_refresh

    rng = np.random.default_rng(13)
    activate(sqlite_db, model_files["good"])  # confirms every image Good
    drop_run(home, 121000, [curve(rng) for _ in range(6)])
    ingest(instance)
    refresh = reference_refresh.execute_in_process(resources=resources(), instance=instance)
    assert refresh.success
    assert count(sqlite_db, ReferenceSet) == 0  # the run got images just now: it may still be running

    def finished(s) -> None:
        s.get(Run, 121000).last_seen = utcnow() - timedelta(hours=1)

    sqlite_db.write(finished)
    assert reference_refresh.execute_in_process(resources=resources(), instance=instance).success
    assert reference_refresh.execute_in_process(resources=resources(), instance=instance).success  # no change
    with sqlite_db.read() as s:
        (row,) = s.scalars(select(ReferenceSet))
        assert (row.version, row.runs, row.rule, row.chosen_by, row.n_images, row.active) == (
            1, [121000], "auto", "auto", 6, True)


def test_rows_a_concurrent_run_wrote_first_are_not_written_again(home, instance, sqlite_db):
    from hydra_assets.references import compute_scores, write_scores

    rng = np.random.default_rng(14)
    drop_run(home, 121000, [curve(rng) for _ in range(3)])
    ingest(instance)  # no reference: three rows "missing", version 0 — written by "the other run"
    with sqlite_db.read() as s:  # this run read before the other run's first row was there (never committed)
        images = list(s.scalars(select(Image)))
        s.execute(ReferenceScore.__table__.delete().where(ReferenceScore.image_id == images[0].id))
        rows = compute_scores(s, images)
    assert [r["image_id"] for r in rows] == [images[0].id]
    assert sqlite_db.write(lambda s: write_scores(s, rows)) == []
    assert count(sqlite_db, ReferenceScore) == 3
