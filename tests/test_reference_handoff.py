"""The Feeder -> reference step hand-off of reference grids (hydra_assets.ingest.reference_grids), on any executor.

The reference step decodes nothing in the normal path: the Feeder computes each grid from the pixels it
decoded to verify the file, with the score's own decode, and the reference step takes it from shared storage.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import select
from test_ingest_support import PLOT, drop, home, instance, metadata  # noqa: F401 - fixtures
from test_reference_scores import curve

from hydra_assets.db.models import Image, ReferenceScore
from hydra_assets.images import check_image
from hydra_assets.ingest.feeder import feed_files
from hydra_assets.ingest.reference_grids import grids_dir, image_grid, keep_grid, take_grids
from hydra_assets.ingest.scan import FileRef
from hydra_assets.references import choose_reference, compute_scores, read_image, score_run_in
from hydra_assets.scores import reference as scoring

RUN_REFERENCE, RUN = 7100, 7101


def encoded(pixels: np.ndarray, mode: str = "RGB", fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    PILImage.fromarray(pixels).convert(mode).save(out, format=fmt)
    return out.getvalue()


@pytest.mark.parametrize(("mode", "fmt"), [("RGB", "PNG"), ("RGBA", "PNG"), ("P", "PNG"), ("L", "PNG"),
                                           ("LA", "PNG"), ("RGB", "JPEG")])
def test_the_grid_from_the_feeders_decode_is_the_grid_the_reference_step_decodes(tmp_path, mode, fmt):
    """Bit for bit, whatever the file's colour mode: the same decoder, the same luma, the same block means."""
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (61, 83, 3), dtype=np.uint8)  # a size the grid does not divide evenly
    path = tmp_path / f"picture.{fmt.lower()}"
    path.write_bytes(encoded(pixels, mode, fmt))
    checked = check_image(path, max_pixels=10**6, pixels_at=(32, 32), grid_of=image_grid)
    grey, _ = read_image(path)  # what the reference step decodes without a hand-off
    decoded = scoring.grey_grid(grey)
    assert checked.grid is not None and checked.grid.dtype == decoded.dtype == np.float32
    assert checked.grid.shape == scoring.GRID
    assert np.array_equal(checked.grid, decoded)
    keep_grid(tmp_path, "d" * 64, grey.shape, checked.grid)  # and the file gives back the same bits
    assert (tmp_path / f"{'d' * 64}-61x83-{scoring.GRID[0]}x{scoring.GRID[1]}.f32").is_file()


def _feed(db, home, run: int, pictures: list[np.ndarray], *, pipeline: bool) -> list:
    refs = []
    for chunk, pixels in enumerate(pictures):
        data = encoded(pixels)
        refs.append(FileRef(hashlib.sha256(data).hexdigest(), f"{PLOT}-{run}-{chunk:04d}.png"))
        drop(home.input_dir, refs[-1].name, data)
    return feed_files(db, home, run, refs, dagster_run_id="run-a" if pipeline else "").registered


def _with_reference(db, home) -> np.random.Generator:
    rng = np.random.default_rng(11)
    _feed(db, home, RUN_REFERENCE, [curve(rng) for _ in range(6)], pipeline=True)
    assert not grids_dir(home).exists() or not list(grids_dir(home).iterdir())  # no reference yet: no grid
    db.write(lambda s: choose_reference(s, home.images_dir, PLOT, [RUN_REFERENCE], by="alice", comment="test"))
    return rng


def _decoded_scores(db, digests: list[str]) -> dict[str, float]:
    with db.read() as s:
        images = list(s.scalars(select(Image).where(Image.run_number == RUN, Image.digest.in_(digests))))
        by_id = {i.id: i.digest for i in images}
        return {by_id[r["image_id"]]: r["score"] for r in compute_scores(s, images)}


def _stored_scores(db) -> dict[str, tuple[str, float | None]]:
    with db.read() as s:
        rows = s.execute(select(Image.digest, ReferenceScore.status, ReferenceScore.score)
                         .join(Image, Image.id == ReferenceScore.image_id).where(Image.run_number == RUN))
        return {digest: (status, score) for digest, status, score in rows}


def test_the_reference_step_scores_from_the_handed_grids_without_the_images(home, sqlite_db):
    """The stored files are gone and every image is still scored, with the scores decoding gives."""
    rng = _with_reference(sqlite_db, home)
    fed = _feed(sqlite_db, home, RUN, [curve(rng) for _ in range(3)] + [curve(rng, shift=0.25)], pipeline=True)
    digests = [i.digest for i in fed]
    assert len(list(grids_dir(home).iterdir())) == 4
    expected = _decoded_scores(sqlite_db, digests)
    for image in fed:
        Path(image.stored).unlink()  # nothing left to decode: the scores can only come from the grids
    result = score_run_in(sqlite_db, RUN, digests, config=home)
    assert (result.scored, result.missing, result.handed_over) == (4, 0, 4)
    assert _stored_scores(sqlite_db) == {d: ("scored", expected[d]) for d in digests}
    assert result.flagged >= 1  # the shifted curve is unlike its reference
    assert not list(grids_dir(home).iterdir())  # taken: removed once scored


def test_without_a_grid_the_reference_step_decodes_as_before(home, sqlite_db):
    """A chunk fed outside a pipeline run (no grid), or a damaged grid: the image is decoded, same score."""
    rng = _with_reference(sqlite_db, home)
    fed = _feed(sqlite_db, home, RUN, [curve(rng) for _ in range(2)], pipeline=False)
    assert not grids_dir(home).exists()  # outside a pipeline run the Feeder keeps no grid
    grids_dir(home).mkdir()
    damaged = grids_dir(home) / f"{fed[0].digest}-48x64-{scoring.GRID[0]}x{scoring.GRID[1]}.f32"
    damaged.write_bytes(b"\0" * 100)  # not the size a grid has
    digests = [i.digest for i in fed]
    expected = _decoded_scores(sqlite_db, digests)
    result = score_run_in(sqlite_db, RUN, digests, config=home)
    assert (result.scored, result.handed_over) == (2, 0)
    assert _stored_scores(sqlite_db) == {d: ("scored", expected[d]) for d in digests}
    assert not damaged.exists()


def test_a_grid_of_another_image_size_is_not_used(home, sqlite_db):
    """The name says the image's size: a grid kept for other pixels never stands in for this image's."""
    folder = grids_dir(home)
    folder.mkdir(parents=True)
    keep_grid(folder, "a" * 64, (40, 30), np.zeros(scoring.GRID, np.float32))
    assert take_grids(home, {"a" * 64: (32, 32)}) == {}
    (grid,) = take_grids(home, {"a" * 64: (40, 30)}).values()
    assert grid.shape == scoring.GRID and not grid.any()
    assert not keep_grid(folder, "b" * 64, (40, 30), np.zeros((4, 4), np.float32))  # not the score's grid


def test_the_kept_grids_reach_the_reference_step_in_another_process(home, sqlite_db):
    """Not process memory: a step run by the multiprocess or Celery executor finds them too."""
    rng = _with_reference(sqlite_db, home)
    fed = _feed(sqlite_db, home, RUN, [curve(rng) for _ in range(2)], pipeline=True)
    with sqlite_db.read() as s:
        sizes = {i.digest: [i.height, i.width] for i in s.scalars(select(Image).where(Image.run_number == RUN))}
    code = ("import json, sys; from hydra_assets.settings import load_settings; "
            "from hydra_assets.ingest.reference_grids import take_grids; "
            "found = take_grids(load_settings(), {d: tuple(s) for d, s in json.loads(sys.argv[1]).items()}); "
            "print(json.dumps({d: [float(g.sum()), list(g.shape)] for d, g in found.items()}))")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(sizes)], capture_output=True, text=True,
                         check=True, timeout=120)
    found = json.loads(out.stdout)
    assert sorted(found) == sorted(i.digest for i in fed)
    for image in fed:
        grid = scoring.grey_grid(read_image(image.stored)[0])
        assert found[image.digest] == [float(grid.sum()), list(scoring.GRID)]


@pytest.mark.slow
def test_the_chunk_job_hands_every_grid_over_and_leaves_none_behind(home, instance, sqlite_db):
    """Through Dagster (sensor, image, inference, reference_score, keep): no image decoded by the step."""
    from test_reference_pipeline import drop_run, ingest, set_reference

    rng = np.random.default_rng(5)
    drop_run(home, 121000, [curve(rng) for _ in range(4)])
    (first,) = ingest(instance)
    assert first.success and metadata(first, "reference_score")["grids_from_feeder"] == 0  # no reference yet
    set_reference(sqlite_db, home, [121000], alarm=False)
    drop_run(home, 121001, [curve(rng) for _ in range(3)])
    (second,) = ingest(instance)
    assert second.success
    scored = metadata(second, "reference_score")
    assert (scored["scored"], scored["grids_from_feeder"]) == (3, 3)
    assert not list(grids_dir(home).iterdir())
