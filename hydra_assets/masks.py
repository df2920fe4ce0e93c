"""Masks: rectangles of a plot type's image that the classifier input, GradCAM and the reference score ignore.

A rectangle is (x0, y0, x1, y1) in fractions of the image's width and height (0 = left/top, 1 = right/bottom),
so one mask serves every image size of a plot type (stored, model input, display).  Pure functions of numpy
arrays, held to the pure rules (docs/architecture.md), so the Feeder, Predict, training, `hydra classify`,
the reference score and the pages apply exactly the same pixels.  The versions stored per plot type (who,
when, which model used which) live in `hydra_assets.mask_versions`.

A pixel is ignored when it overlaps a rectangle at all (a dead channel that covers part of a pixel is still
ignored); every valid rectangle ignores at least one pixel.  Ignored pixels get one neutral constant, the
same for training and inference, so the model and the score see no information from them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

Region = tuple[float, float, float, float]
EDGE_TOLERANCE = 1e-9  # 0.3 * 10 is 3.0000000000000004: a rectangle's edge on a pixel edge stays on it


class MaskError(ValueError):
    """A mask that cannot be applied: a rectangle outside the image, reversed or empty, or all of the image."""


def _region(index: int, region: object) -> Region:
    where = f"rectangle {index + 1}"
    if isinstance(region, str | bytes) or not isinstance(region, Sequence) or len(region) != 4:
        raise MaskError(f"{where}: give four numbers x0, y0, x1, y1 (fractions 0..1 of width and height), "
                        f"not {region!r}")
    try:
        x0, y0, x1, y1 = (float(v) for v in region)
    except (TypeError, ValueError):
        raise MaskError(f"{where}: x0, y0, x1, y1 must be numbers, not {list(region)!r}") from None
    values = (x0, y0, x1, y1)
    if not all(math.isfinite(v) for v in values):
        raise MaskError(f"{where}: x0, y0, x1, y1 must be finite numbers, not {list(values)!r}")
    outside = [name for name, v in zip(("x0", "y0", "x1", "y1"), values, strict=True) if not 0.0 <= v <= 1.0]
    if outside:
        raise MaskError(f"{where} ({_text(values)}) is outside the image: {', '.join(outside)} must be between "
                        "0 and 1 (fractions of width and height)")
    if x0 > x1 or y0 > y1:
        flipped = " and ".join(axis for axis, bad in (("x0 > x1", x0 > x1), ("y0 > y1", y0 > y1)) if bad)
        raise MaskError(f"{where} ({_text(values)}) has reversed corners ({flipped}): give the top-left corner "
                        "first, then the bottom-right one")
    if x0 == x1 or y0 == y1:
        raise MaskError(f"{where} ({_text(values)}) is empty: it has no width or no height")
    return x0, y0, x1, y1


def covers_all(regions: Sequence[Region]) -> bool:
    """Whether the rectangles together cover the whole image (exact: every cell between their edges)."""
    xs = sorted({0.0, 1.0, *(r[0] for r in regions), *(r[2] for r in regions)})
    ys = sorted({0.0, 1.0, *(r[1] for r in regions), *(r[3] for r in regions)})
    for xa, xb in zip(xs, xs[1:], strict=False):
        for ya, yb in zip(ys, ys[1:], strict=False):
            cx, cy = (xa + xb) / 2, (ya + yb) / 2
            if not any(r[0] <= cx <= r[2] and r[1] <= cy <= r[3] for r in regions):
                return False
    return True


def validate_regions(regions: Iterable[object] | None) -> list[Region]:
    """The rectangles as float tuples, or MaskError naming the first bad one; [] (or None) is no mask."""
    checked = [_region(i, r) for i, r in enumerate(regions or [])]
    if checked and covers_all(checked):
        raise MaskError("the mask covers all of the image: nothing would be left to classify or compare; "
                        "leave at least part of the image unmasked")
    return checked


def parse_region(text: str) -> Region:
    """'x0,y0,x1,y1' (as typed on the command line or in the Library) to a checked rectangle."""
    parts = [p.strip() for p in str(text).replace(";", ",").split(",")]
    if len(parts) != 4 or not all(parts):
        raise MaskError(f"{text!r}: give four numbers x0,y0,x1,y1 (fractions 0..1 of width and height)")
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        raise MaskError(f"{text!r}: x0,y0,x1,y1 must be numbers (fractions 0..1 of width and height)") from None
    return _region(0, numbers)


def _text(region: Sequence[float]) -> str:
    return ",".join(f"{float(v):g}" for v in region)


def region_text(region: Sequence[float]) -> str:
    """'x0,y0,x1,y1' as shown and typed, e.g. '0.1,0,0.2,1'."""
    return _text(region)


def pixel_bounds(height: int, width: int, region: Region) -> tuple[int, int, int, int]:
    """(row0, row1, col0, col1), end exclusive: every pixel the rectangle overlaps, at least one."""
    x0, y0, x1, y1 = region

    def span(lo: float, hi: float, size: int) -> tuple[int, int]:
        start = min(size - 1, max(0, math.floor(lo * size + EDGE_TOLERANCE)))
        end = min(size, max(start + 1, math.ceil(hi * size - EDGE_TOLERANCE)))
        return start, end

    r0, r1 = span(y0, y1, height)
    c0, c1 = span(x0, x1, width)
    return r0, r1, c0, c1


def mask_array(height: int, width: int, regions: Iterable[object] | None) -> np.ndarray:
    """A (height, width) bool array, True where a pixel is ignored; MaskError if every pixel would be."""
    if int(height) < 1 or int(width) < 1:
        raise MaskError(f"an image of {height}x{width} pixels has nothing to mask")
    ignored = np.zeros((int(height), int(width)), dtype=bool)
    for region in validate_regions(regions):
        r0, r1, c0, c1 = pixel_bounds(int(height), int(width), region)
        ignored[r0:r1, c0:c1] = True
    if ignored.all():
        raise MaskError(f"on a {height}x{width} image the mask covers every pixel: nothing would be left to "
                        "classify or compare")
    return ignored


def apply_mask(array: np.ndarray, regions: Iterable[object] | None, fill: float = 0.0) -> np.ndarray:
    """A copy of an image (H, W), (H, W, C) or a batch (N, H, W, C) with ignored pixels set to `fill`.

    No rectangles: the array itself, unchanged (no copy), so an unmasked plot type costs nothing.
    """
    array = np.asarray(array)
    checked = validate_regions(regions)
    if not checked:
        return array
    if array.ndim not in (2, 3, 4):
        raise MaskError(f"a mask applies to an image (H, W), (H, W, C) or a batch (N, H, W, C), "
                        f"not an array of shape {array.shape}")
    height, width = array.shape[1:3] if array.ndim == 4 else array.shape[:2]
    ignored = mask_array(height, width, checked)
    out = array.copy()
    if array.ndim == 4:
        out[:, ignored] = fill
    else:
        out[ignored] = fill
    return out
