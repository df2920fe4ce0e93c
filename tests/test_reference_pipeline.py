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
