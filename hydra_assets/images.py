"""Image files: validation, content digests, storage and quarantine — shared by the Feeder and label import."""

from __future__ import annotations

import hashlib
import os
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import select
from sqlalchemy.orm import Session

from hydra_assets.db.models import Image, Run, utcnow

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


class BadImage(ValueError):
    """The bytes are not a usable image; the message is the quarantine reason."""


@dataclass(frozen=True)
class CheckedImage:
    width: int
    height: int
    mode: str
    pixels: np.ndarray | None = None  # the model input, when asked for (`pixels_at`): no second decode
    grid: np.ndarray | None = None  # `grid_of` the decoded image, when asked for (the reference grid)


def file_digest(path: Path) -> str:
    """SHA-256 of the file's bytes: with (plot type, run, chunk) it identifies an image."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_image(path: Path, *, max_pixels: int, pixels_at: tuple[int, int] | None = None,
                grid_of: Callable[[PILImage.Image], np.ndarray] | None = None) -> CheckedImage:
    """Verify that `path` is a complete PNG/JPEG under the pixel limit, or raise `BadImage` saying why.
    With `pixels_at` (height, width), also return the decoded pixels as the model input (`rgb_pixels`);
    with `grid_of`, what it makes of the decoded image (the Feeder: the reference grid)."""
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise BadImage(f"extension {path.suffix or '(none)'!r} is not one of {sorted(IMAGE_SUFFIXES)}")
    size = path.stat().st_size
    if size == 0:
        raise BadImage("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            with PILImage.open(path) as probe:
                width, height = probe.size
                if width * height > max_pixels:
                    raise BadImage(f"{width}x{height} pixels exceeds the limit of {max_pixels} (decompression bomb?)")
                probe.verify()  # structure and checksums
            with PILImage.open(path) as full:
                full.load()  # truncated data only shows when decoding
                mode = full.mode
                pixels = rgb_pixels(full, pixels_at) if pixels_at is not None else None
                grid = grid_of(full) if grid_of is not None else None
    except BadImage:
        raise
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as error:
        raise BadImage(f"decompression bomb refused: {error}") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise BadImage(f"not a readable image: {error}") from error
    return CheckedImage(width=width, height=height, mode=mode, pixels=pixels, grid=grid)


def load_rgb(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Pixels as float32 RGB in [0, 1], resized to (height, width) when given — the models' input."""
    with PILImage.open(path) as image:
        return rgb_pixels(image, size)


def rgb_pixels(image: PILImage.Image, size: tuple[int, int] | None = None) -> np.ndarray:
    """`load_rgb` of an image already open (and decoded)."""
    image = image.convert("RGB")
    if size is not None:
        height, width = size
        image = image.resize((width, height), PILImage.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.float32) / 255.0


def store_file(source: Path, folder: Path, relative: str, *, move: bool = False) -> Path:
    """Copy (or move) `source` to `folder/relative` atomically: the target is complete or absent."""
    target = folder / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    try:
        shutil.copyfile(source, partial)
        with partial.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    if move:
        source.unlink(missing_ok=True)
    return target


def stored_name(plot_type: str, run: int, chunk: int, digest: str, suffix: str) -> str:
    """Where an image lives under the images folder: per plot type and run, unique by digest."""
    return f"{plot_type}/{run}/{plot_type}-{run}-{chunk:04d}-{digest[:12]}{suffix.lower()}"


def touch_run(session: Session, run_number: int, *, images: int = 1) -> None:
    """Record that images of `run_number` arrived (first/last seen)."""
    run = session.get(Run, run_number)
    now = utcnow()
    if run is None:
        session.add(Run(number=run_number, first_seen=now, last_seen=now, image_count=images, conditions={}))
    else:
        run.last_seen = now
        run.image_count += images
    session.flush()


def find_image(session: Session, *, plot_type_id: int, run: int, chunk: int, digest: str) -> Image | None:
    return session.scalar(
        select(Image).where(
            Image.plot_type_id == plot_type_id, Image.run_number == run, Image.chunk == chunk, Image.digest == digest
        )
    )
