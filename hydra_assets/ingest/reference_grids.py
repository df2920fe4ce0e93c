"""The reference grids of stored images, and how the Feeder hands them to the reference step on any executor.

The reference step needs each image's grey grid (`scores.reference.grey_grid` of `grey_levels`); decoding
the stored PNG again for it was ~1.6-2.2 ms of its ~2.0 ms per image (bench/reference.py), while the Feeder
has already decoded every image completely to verify it.  So the Feeder computes the grid from those
pixels, with the score's own functions (`grey_levels`, `GRID`), and keeps it as a small file of raw
float32 cells next to the stored images, like the model inputs it keeps for Predict (`model_inputs`):
`<images_dir>/.reference-grids/<digest>-<H>x<W>-<gh>x<gw>.f32`, named by the image digest, the image's
height and width (the reference step checks them against its reference) and the grid's shape.  Shared
storage works with every executor — in-process, multiprocess, Celery or Kubernetes workers.

It is only a cache: a missing, damaged or stale entry means decoding the stored image again, with the same
bits (tests/test_reference_handoff.py).  The reference step removes the entries of its images when it
takes them; one whose step never came is removed by a later Feeder after `model_inputs.STALE_SECONDS`.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hydra_assets.ingest.model_inputs import ready_folder
from hydra_assets.scores import reference as scoring
from hydra_assets.settings import HydraSettings

FOLDER = ".reference-grids"  # under the images folder; hidden, never an image


def image_grid(image: Any) -> np.ndarray:
    """The reference grid of an open, decoded Pillow image: exactly what the reference step computes from
    the stored file (`references.score_one`)."""
    return scoring.grey_grid(scoring.grey_levels(image))


def grids_dir(config: HydraSettings) -> Path:
    return config.images_dir / FOLDER


def _entry(folder: Path, digest: str, image_size: tuple[int, int]) -> Path:
    """Raw float32 cells, `scoring.GRID` rows x columns: no header; the name says both shapes."""
    gh, gw = scoring.GRID
    return folder / f"{digest}-{int(image_size[0])}x{int(image_size[1])}-{gh}x{gw}.f32"


def grids_folder(config: HydraSettings) -> Path | None:
    """The folder the Feeder keeps grids in, created and pruned; None when it cannot be (nothing is kept)."""
    return ready_folder(grids_dir(config))


def keep_grid(folder: Path, digest: str, image_size: tuple[int, int], grid: np.ndarray) -> bool:
    """Keep one image's grid for the reference step.  Never fails the Feeder: a full disk or a read-only
    folder only means the reference step decodes the image again."""
    if tuple(grid.shape) != tuple(scoring.GRID):
        return False
    target = _entry(folder, digest, image_size)
    partial = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.partial")
    try:
        partial.write_bytes(np.ascontiguousarray(grid, np.float32).tobytes())
        os.replace(partial, target)  # complete or absent: a reader never sees half a grid
    except OSError:
        with contextlib.suppress(OSError):
            partial.unlink()
        return False
    return True


def take_grids(config: HydraSettings, images: Mapping[str, tuple[int, int]]) -> dict[str, np.ndarray]:
    """The kept grids of these digests, each of an image of the given (height, width), removed on the way;
    absent, damaged or other-shaped ones are left out (their images are decoded)."""
    folder = grids_dir(config)
    found: dict[str, np.ndarray] = {}
    if not images or not folder.is_dir():
        return found
    length = scoring.GRID[0] * scoring.GRID[1]
    for digest, size in images.items():
        path = _entry(folder, digest, size)
        try:
            with path.open("rb") as handle:
                complete = os.fstat(handle.fileno()).st_size == length * 4
                grid = np.fromfile(handle, np.float32, count=length) if complete else None
        except (OSError, ValueError):
            continue  # not kept (a backfill, no reference when fed, taken by a concurrent run) or unreadable
        with contextlib.suppress(OSError):
            path.unlink()
        if grid is not None and grid.size == length and bool(np.all(np.isfinite(grid))):
            found[digest] = grid.reshape(scoring.GRID)
    return found


__all__ = ["FOLDER", "grids_dir", "grids_folder", "image_grid", "keep_grid", "take_grids"]
