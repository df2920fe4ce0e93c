"""The model inputs of stored images, and how the Feeder hands them to Predict on any executor.

The Feeder decodes every file completely to verify it; resizing those pixels to the active model's input
then costs ~0.8 ms per image, while Predict decoding the stored 480x360 PNG again costs 2-3 ms per image
on 2 busy cores (bench/ingest.py --parts handoff; an 81-image chunk job takes 0.54 s instead of 0.47 s).
So the Feeder keeps each input as a small file of raw RGB bytes named by the image digest and input size,
next to the stored images (shared storage in production, like the images Predict would otherwise read),
and Predict takes it from there.  That works with every executor — in-process, multiprocess, Celery or
Kubernetes workers — unlike an in-memory hand-off.

It is only a cache: a missing, stale or unreadable entry means decoding the stored image again, with the
same result (`prepare`).  Predict removes the entries of its images when done; one whose Predict never
came (the run died between the steps) is removed by a later Feeder after `STALE_SECONDS`.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from hydra_assets.images import load_rgb
from hydra_assets.settings import HydraSettings

FOLDER = ".model-inputs"  # under the images folder; hidden, never an image
STALE_SECONDS = 3600.0


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """`load_rgb`'s floats back to the bytes they came from (exact): a quarter of the memory, disk and IPC."""
    return np.rint(pixels * 255.0).astype(np.uint8)


def prepare(path: Path, size: tuple[int, int]) -> np.ndarray:
    """The model input of one stored image, through the same `load_rgb` training used."""
    return to_uint8(load_rgb(path, size))


def inputs_dir(config: HydraSettings) -> Path:
    return config.images_dir / FOLDER


def _entry(folder: Path, digest: str, size: tuple[int, int]) -> Path:
    """Raw uint8 RGB, height x width x 3: no header to write or parse, the name says the shape."""
    return folder / f"{digest}-{int(size[0])}x{int(size[1])}.rgb"


def ready_folder(folder: Path) -> Path | None:
    """A hand-off folder created and pruned; None when it cannot be (nothing is kept there)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        prune(folder)
    except OSError:
        return None
    return folder


def inputs_folder(config: HydraSettings) -> Path | None:
    """The folder the Feeder keeps inputs in, created and pruned; None when it cannot be (nothing is kept)."""
    return ready_folder(inputs_dir(config))


def keep_input(folder: Path, digest: str, array: np.ndarray) -> bool:
    """Keep one image's input (uint8, H x W x 3) for Predict.  Never fails the Feeder: a full disk or a
    read-only folder only means Predict decodes the image again."""
    target = _entry(folder, digest, array.shape[:2])
    partial = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.partial")
    try:
        partial.write_bytes(np.ascontiguousarray(array, np.uint8).tobytes())
        os.replace(partial, target)  # complete or absent: a reader never sees half an array
    except OSError:
        with contextlib.suppress(OSError):
            partial.unlink()
        return False
    return True


def keep_inputs(config: HydraSettings, arrays: Mapping[str, np.ndarray]) -> int:
    """`keep_input` for each digest; returns how many were kept."""
    folder = inputs_folder(config)
    return 0 if folder is None else sum(keep_input(folder, digest, array) for digest, array in arrays.items())


def take_inputs(config: HydraSettings, digests: Iterable[str], size: tuple[int, int]) -> dict[str, np.ndarray]:
    """The kept inputs of these digests at `size` (height, width), removed on the way; absent ones are left out."""
    folder = inputs_dir(config)
    found: dict[str, np.ndarray] = {}
    if not folder.is_dir():
        return found
    shape = (int(size[0]), int(size[1]), 3)
    length = shape[0] * shape[1] * shape[2]
    for digest in set(digests):
        path = _entry(folder, digest, size)
        try:
            with path.open("rb") as handle:
                complete = os.fstat(handle.fileno()).st_size == length
                array = np.fromfile(handle, np.uint8, count=length) if complete else None
        except (OSError, ValueError):
            continue  # not kept (a backfill, another size, taken by a concurrent run) or unreadable
        with contextlib.suppress(OSError):
            path.unlink()
        if array is not None and array.size == length:
            found[digest] = array.reshape(shape)
    return found


def discard_inputs(config: HydraSettings, digests: Iterable[str]) -> int:
    """Remove the kept inputs of these digests at any size: Predict is done with them (no model, already
    classified, or another input size), so they need not wait for `prune`."""
    folder, wanted = inputs_dir(config), set(digests)
    removed = 0
    if not wanted or not folder.is_dir():
        return removed
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.split("-", 1)[0] in wanted:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed += 1
    return removed


def prune(folder: Path, *, older_than: float = STALE_SECONDS) -> int:
    """Remove entries (and partial writes) older than `older_than` seconds: their Predict never came."""
    limit = time.time() - older_than
    removed = 0
    with os.scandir(folder) as entries:
        for entry in entries:
            with contextlib.suppress(OSError):
                if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < limit:
                    os.unlink(entry.path)
                    removed += 1
    return removed
