"""Reference sets and reference scores (issue 14): the pure score, versions, idempotent scoring, bad input."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import func, select

from hydra_assets import catalog
from hydra_assets.db.models import Image, Inference, Label, PlotType, ReferenceScore, ReferenceSet, utcnow
from hydra_assets.references import (
    ReferenceError,
    auto_reference,
    choose_reference,
    compare_pictures,
    score_run,
)
from hydra_assets.scores import reference as scoring

PLOT = "Ref_plot"
SIZE = (48, 64)  # height, width of the test images


def curve(rng: np.random.Generator, *, shift: float = 0.0, size: tuple[int, int] = SIZE) -> np.ndarray:
    """A white image with a dark bump (a 1-D histogram, roughly), its peak at `shift` of the width."""
    h, w = size
    x = np.linspace(0, 1, w)
    height = (0.6 * np.exp(-((x - 0.4 - shift) ** 2) / 0.01) * rng.uniform(0.9, 1.1) * h).astype(int)
    pixels = np.full((h, w, 3), 255, dtype=np.uint8)
    for col, top in enumerate(height):
        pixels[h - top:, col] = (40, 40, 160)
    return pixels


def write_png(folder: Path, name: str, pixels: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    PILImage.fromarray(pixels).save(path)
    return path


def add_images(db, folder: Path, run: int, pixels: list[np.ndarray], *, plot: str = PLOT) -> list[int]:
    def work(s) -> list[int]:
        plot_type = s.scalar(select(PlotType).where(PlotType.name == plot))
        ids = []
        for chunk, array in enumerate(pixels):
            path = write_png(folder / str(run), f"{plot}-{run}-{chunk:04d}.png", array)
            image = Image(plot_type_id=plot_type.id, run_number=run, chunk=chunk, digest=f"{run}-{chunk}-{plot}",
                          file_name=path.name, stored_path=str(path), width=array.shape[1], height=array.shape[0])
            s.add(image)
            s.flush()
            ids.append(image.id)
        return ids

    return db.write(work)


@pytest.fixture
def plot(db):
    db.write(lambda s: catalog.add_plot_type(s, PLOT, ["Good", "Bad"], ["Bad"]))
    return PLOT


# ---- the pure score ------------------------------------------------------------------------------------------


def test_limit_is_the_references_own_quantile_and_a_shifted_peak_is_far_above_it():
    rng = np.random.default_rng(1)
    grids = np.stack([scoring.grey_grid(curve(rng)) for _ in range(60)])
    profile = scoring.build(grids, quantile=0.9, image_size=SIZE)
    own = profile.scores(grids)
    assert 0.0 < profile.limit < own.max() * 1.5
    good = profile.scores(np.stack([scoring.grey_grid(curve(rng)) for _ in range(20)]))
    shifted = profile.scores(np.stack([scoring.grey_grid(curve(rng, shift=0.2)) for _ in range(5)]))
    assert shifted.min() > 3 * profile.limit
    assert np.mean(good > profile.limit) < 0.35


def test_a_masked_region_does_not_count(tmp_path: Path):
    rng = np.random.default_rng(2)
    grids = np.stack([scoring.grey_grid(curve(rng)) for _ in range(20)])
    mask = np.zeros(scoring.GRID, dtype=bool)
    mask[:, : scoring.GRID[1] * 3 // 4] = True  # the left three quarters, where the peak sits
    profile = scoring.build(grids, image_size=SIZE, mask=mask)
    moved = scoring.grey_grid(curve(rng, shift=-0.3))  # the peak moves within the masked part
    assert profile.scores(moved[None])[0] <= profile.limit * 1.5
    assert scoring.difference_map(profile, moved)[mask].max() == 0.0
    loaded = scoring.load(scoring.save(profile, tmp_path / "p.npz"))
    assert np.array_equal(loaded.mask, mask) and loaded.limit == pytest.approx(profile.limit)
    with pytest.raises(scoring.ReferenceError, match="whole image"):
        scoring.build(grids, image_size=SIZE, mask=np.ones(scoring.GRID, dtype=bool))


def test_one_image_is_not_a_reference():
    with pytest.raises(scoring.ReferenceError, match="at least 2 images"):
        scoring.build(np.zeros((1, *scoring.GRID)), image_size=SIZE)


# ---- versions and scores in the database -----------------------------------------------------------------


def test_scores_are_stored_once_per_image_and_reference_version(db, plot, tmp_path: Path):
    rng = np.random.default_rng(3)
    add_images(db, tmp_path / "images", 5, [curve(rng) for _ in range(12)])
    add_images(db, tmp_path / "images", 6, [curve(rng) for _ in range(12)])
    test_ids = add_images(db, tmp_path / "images", 7, [curve(rng) for _ in range(4)] + [curve(rng, shift=0.25)])

    first = db.write(lambda s: score_run(s, 7))
    assert first.missing == 5 and first.scored == 0
    assert set(first.reasons) == {f"no reference yet; hydra reference set {PLOT} --runs N "
                                  f"(or hydra reference auto {PLOT})"}

    change = db.write(lambda s: choose_reference(s, tmp_path / "images", PLOT, "5", by="alice", comment="clean"))
    assert change.version == 1 and change.n_images == 12 and change.limit > 0
    scored = db.write(lambda s: score_run(s, 7))
    assert scored.scored == 5 and scored.flagged >= 1 and scored.already == 0
    again = db.write(lambda s: score_run(s, 7))
    assert (again.scored, again.missing, again.already) == (0, 0, 5)

    db.write(lambda s: choose_reference(s, tmp_path / "images", PLOT, [5, 6], by="bob"))
    db.write(lambda s: score_run(s, 7))
    with db.read() as s:
        sets = list(s.scalars(select(ReferenceSet).order_by(ReferenceSet.version)))
        assert [(r.version, r.runs, r.chosen_by, r.active, r.rule) for r in sets] == [
            (1, [5], "alice", False, "expert"), (2, [5, 6], "bob", True, "expert")]
        assert sets[0].comment == "clean" and sets[1].n_images == 24 and Path(sets[1].artifact_path).is_file()
        versions = s.execute(select(ReferenceScore.reference_version, func.count()).group_by(
            ReferenceScore.reference_version).order_by(ReferenceScore.reference_version)).all()
        assert versions == [(0, 5), (1, 5), (2, 5)]
        shifted = s.scalar(select(ReferenceScore).where(ReferenceScore.image_id == test_ids[-1],
                                                        ReferenceScore.reference_version == 2))
        assert shifted.flagged and shifted.score > shifted.score_limit and shifted.reference_id == sets[1].id

    view = db.write(lambda s: compare_pictures(s, test_ids[-1]))
    assert view.flagged and view.reference_version == 2 and view.reference_runs == [5, 6]
    assert view.image.shape == (*SIZE, 3) and view.reference.shape == (*SIZE, 3)
    assert view.difference.shape == SIZE and np.abs(view.difference).max() > 3


def test_a_run_with_no_images_is_refused_and_nothing_is_written(db, plot, tmp_path: Path):
    with pytest.raises(ReferenceError, match="run 99 holds no usable image"):
        db.write(lambda s: choose_reference(s, tmp_path, PLOT, [99], by="alice"))
    with db.read() as s:
        assert s.scalar(select(func.count(ReferenceSet.id))) == 0
        assert s.scalar(select(PlotType.reference_rule).where(PlotType.name == PLOT)) == "auto"
    assert not (tmp_path / ".references").exists()


def test_images_of_another_size_are_excluded_from_the_reference_and_missing_when_scored(db, plot, tmp_path: Path):
    rng = np.random.default_rng(4)
    add_images(db, tmp_path, 5, [curve(rng) for _ in range(6)] + [curve(rng, size=(40, 64))])
    odd = add_images(db, tmp_path, 7, [curve(rng, size=(40, 64))])
    change = db.write(lambda s: choose_reference(s, tmp_path, PLOT, [5], by="alice"))
    assert change.n_images == 6 and len(change.excluded) == 1 and "64x40 pixels, not 64x48" in change.excluded[0]
    result = db.write(lambda s: score_run(s, 7))
    assert result.missing == 1
    with db.read() as s:
        row = s.scalar(select(ReferenceScore).where(ReferenceScore.image_id == odd[0]))
        assert row.status == "missing" and row.reason == "image of 64x40 pixels, the reference's are 64x48"
        assert row.reference_version == 1 and row.score is None and not row.flagged


def test_an_unreadable_image_is_missing_with_its_reason(db, plot, tmp_path: Path):
    rng = np.random.default_rng(5)
    add_images(db, tmp_path, 5, [curve(rng) for _ in range(4)])
    (broken,) = add_images(db, tmp_path, 7, [curve(rng)])
    db.write(lambda s: choose_reference(s, tmp_path, PLOT, [5], by="alice"))
    with db.read() as s:
        Path(s.get(Image, broken).stored_path).write_bytes(b"not a png")
    db.write(lambda s: score_run(s, 7))
    with db.read() as s:
        row = s.scalar(select(ReferenceScore).where(ReferenceScore.image_id == broken))
        assert row.status == "missing" and row.reason.startswith("unreadable image")


def test_auto_reference_follows_the_latest_runs_confirmed_good(db, plot, tmp_path: Path):
    rng = np.random.default_rng(6)
    runs = {run: add_images(db, tmp_path, run, [curve(rng) for _ in range(6)]) for run in (1, 2, 3, 4, 5)}

    def confirm(s, run: int, ids: list[int], bad_ids=()) -> None:
        for image_id in ids:
            s.add(Inference(image_id=image_id, plot_type_id=s.get(Image, image_id).plot_type_id, run_number=run,
                            chunk=0, model_key="m/1", status="classified", confirmed=True,
                            is_bad=image_id in bad_ids))

    def label(s) -> None:
        for run in (1, 2, 3):
            confirm(s, run, runs[run])
        confirm(s, 4, runs[4], bad_ids=runs[4][:3])  # half confirmed Bad: not good
        bad = s.scalar(select(Label).where(Label.name == "Bad"))
        confirm(s, 5, runs[5])
        s.get(Image, runs[5][0]).label_id = bad.id  # a person said Bad: never a reference

    db.write(label)
    change = db.write(lambda s: auto_reference(s, tmp_path, PLOT, quiet=timedelta(0)))
    assert change.runs == [1, 2, 3] and change.version == 1
    same = db.write(lambda s: auto_reference(s, tmp_path, PLOT, quiet=timedelta(0)))
    assert same.version is None and "already" in same.message
    with db.read() as s:
        (row,) = s.scalars(select(ReferenceSet))
        assert row.rule == "auto" and row.chosen_by == "auto" and row.chosen_at <= utcnow()


def test_the_plot_types_mask_is_applied_to_the_reference_and_to_every_score(db, plot, tmp_path: Path):
    from hydra_assets.mask_versions import set_mask

    rng = np.random.default_rng(7)
    add_images(db, tmp_path, 5, [curve(rng) for _ in range(10)])
    (moved,) = add_images(db, tmp_path, 7, [curve(rng, shift=0.25)])  # the peak moves from 0.4 to 0.65

    def masked(s) -> int:
        plot_type = s.scalar(select(PlotType).where(PlotType.name == PLOT))
        mask = set_mask(s, plot_type, [[0.2, 0.0, 0.9, 1.0]], "erin", "the peak region")
        choose_reference(s, tmp_path, PLOT, [5], by="erin")
        return mask.id

    mask_id = db.write(masked)
    db.write(lambda s: score_run(s, 7))
    with db.read() as s:
        reference = s.scalar(select(ReferenceSet).where(ReferenceSet.active.is_(True)))
        assert reference.mask_id == mask_id and scoring.load(Path(reference.artifact_path)).mask.any()
        row = s.scalar(select(ReferenceScore).where(ReferenceScore.image_id == moved))
        assert row.status == "scored" and not row.flagged  # the change is all inside the mask
    view = db.write(lambda s: compare_pictures(s, moved))
    assert view.difference[:, 20:50].max() == 0.0 == view.difference[:, 20:50].min()  # masked columns

    def cleared(s) -> int:
        plot_type = s.scalar(select(PlotType).where(PlotType.name == PLOT))
        mask = set_mask(s, plot_type, [], "erin", "cleared")
        choose_reference(s, tmp_path, PLOT, [5], by="erin")
        return mask.id

    cleared_id = db.write(cleared)
    db.write(lambda s: score_run(s, 7))
    with db.read() as s:
        reference = s.scalar(select(ReferenceSet).where(ReferenceSet.active.is_(True)))
        assert (reference.version, reference.mask_id) == (2, cleared_id)
        row = s.scalar(select(ReferenceScore).where(ReferenceScore.image_id == moved,
                                                    ReferenceScore.reference_version == 2))
        assert row.flagged


def test_a_reference_takes_at_most_max_images_spread_over_the_runs(db, plot, tmp_path: Path, monkeypatch):
    import hydra_assets.references as references

    monkeypatch.setattr(references, "MAX_IMAGES", 5)
    rng = np.random.default_rng(8)
    first = add_images(db, tmp_path, 5, [curve(rng) for _ in range(6)])
    last = add_images(db, tmp_path, 6, [curve(rng) for _ in range(6)])
    with db.read() as s:
        chosen = [i.id for i in references.reference_images(s, s.get(Image, first[0]).plot_type_id, [5, 6])]
    assert len(chosen) == 5 and chosen[0] == first[0] and chosen[-1] == last[-1]
    change = db.write(lambda s: choose_reference(s, tmp_path, PLOT, [5, 6], by="erin"))
    assert change.n_images == 5


def test_a_chunks_scores_are_written_once_with_the_missing_ones_reasons(db, plot):
    """`write_scores` writes a 200-image chunk in one go; a rerun (or a rerun after a concurrent run wrote some
    first) adds no row, and a new reference version adds one row per image.  Prints the write's time."""
    import time

    from sqlalchemy import insert

    from hydra_assets.references import write_scores

    def images(s) -> tuple[int, list[int]]:
        plot_type = s.scalar(select(PlotType).where(PlotType.name == PLOT))
        s.execute(insert(Image), [dict(plot_type_id=plot_type.id, run_number=9, chunk=k, digest=f"9-{k}",
                                       file_name=f"{k}.png", stored_path=f"/nowhere/{k}.png", width=64, height=48)
                                  for k in range(200)])
        return plot_type.id, list(s.scalars(select(Image.id).where(Image.run_number == 9).order_by(Image.id)))

    plot_type_id, ids = db.write(images)
    now = utcnow().replace(microsecond=0)

    def row(k: int, image_id: int, version: int) -> dict:
        missing = k % 4 == 0
        return dict(image_id=image_id, plot_type_id=plot_type_id, run_number=9, chunk=k, reference_id=None,
                    reference_version=0 if missing else version, status="missing" if missing else "scored",
                    reason=f"image {k}: unreadable image" if missing else None,
                    score=None if missing else k / 10, score_limit=None if missing else 10.0,
                    flagged=not missing and k / 10 > 10.0, score_ms=0.5, computed_at=now)

    rows = [row(k, image_id, 1) for k, image_id in enumerate(ids)]
    started = time.perf_counter()
    written = db.write(lambda s: write_scores(s, rows))
    print(f"\nwrite_scores, 200 images, {db.engine.dialect.name}: {(time.perf_counter() - started) * 1000:.1f} ms")
    assert sorted(r.image_id for r in written) == ids
    assert sum(r.status == "missing" for r in written) == 50 and sum(bool(r.flagged) for r in written) == 75
    fields = list(rows[0])
    with db.read() as s:
        stored = {r.image_id: {f: getattr(r, f) for f in fields} for r in s.scalars(select(ReferenceScore))}
    assert stored == {r["image_id"]: r for r in rows}  # the same values, the missing ones with their reason

    assert db.write(lambda s: write_scores(s, rows)) == []  # a rerun adds no row
    db.write(lambda s: s.execute(ReferenceScore.__table__.delete().where(ReferenceScore.image_id.in_(ids[:3]))))
    again = db.write(lambda s: write_scores(s, rows))  # a concurrent run wrote the other 197 first
    assert sorted(r.image_id for r in again) == ids[:3]
    newer = db.write(lambda s: write_scores(s, [row(k, image_id, 2) for k, image_id in enumerate(ids)]))
    assert len(newer) == 150  # one more per scored image and version; the missing ones (version 0) stay once
    with db.read() as s:
        assert s.scalar(select(func.count(ReferenceScore.id))) == 350
