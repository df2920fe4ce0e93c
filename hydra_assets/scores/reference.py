"""The reference score: how far an image is from its plot type's reference (known-good) images.

Method (docs/reference.md, measured by bench/reference.py): AutoDQM-style per-pixel pulls.  Every image is
shrunk to a small grey grid (`GRID`, block means); the reference keeps the mean and the spread of each grid
cell over its images.  An image's pull map is (image − mean) / spread, the spread floored at `SPREAD_FLOOR`
so a cell that never moved in the reference (white background) does not turn a rounding step into a huge
pull.  Two statistics of the absolute pulls, each the root mean square of its largest share (`TOP_SHARES`):
0.5 % of the cells (a local change: a dead channel, a hot spot) and 10 % (a broad one: a shifted or widened
peak, a missing sector); each is divided by its median over the reference's own images (`scales`), and
the score is the larger of the two — "how many times more unusual than a typical reference image".  The
chunk-to-chunk noise of a good image stays inside the spread.  Masked cells (`mask`: True = ignore) count
as zero pull, in the profile's calibration and in every score.  bench/reference.py measured the choice.

The limit is calibrated on the reference's own images, leave-one-out: each image's score against the mean
and spread of the *other* reference images, and the chosen quantile (the plot type's `reference_quantile`,
default 0.99) of those.  So "above the limit" means "as unusual as only the reference's own 1-in-100".

Pure: numpy only.  Decoding the stored images and the database are `hydra_assets/references.py`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

METHOD = "pixel-pull"
GRID = (48, 64)  # (height, width) of the grey grid every image is shrunk to
GREY_MODE = "L"  # Pillow's luma (ITU-R 601-2): a quarter of the time of colour pixels (bench/reference.py)
SPREAD_FLOOR = 0.02  # grey levels (0..1): the smallest spread a grid cell is given
TOP_SHARES = (0.005, 0.1)  # a local and a broad statistic: RMS of this share of the largest |pulls|
DEFAULT_QUANTILE = 0.99
MIN_IMAGES = 2  # leave-one-out needs another image
SCALE_FLOOR = 0.5  # pulls: identical reference images must not make every later rounding step "unusual"


class ReferenceError(ValueError):
    """A reference that cannot be built or used; the message says why, in the user's words."""


@dataclass
class ReferenceProfile:
    """What one reference version keeps: per-cell mean and spread of its grids, and the calibrated limit."""

    mean: np.ndarray  # (h, w) float32 grey levels 0..1
    spread: np.ndarray  # (h, w) float32, floored
    scales: np.ndarray  # (len(TOP_SHARES),) each statistic's median over the reference's own images
    limit: float
    quantile: float
    n_images: int
    image_height: int
    image_width: int
    mask: np.ndarray | None = None  # (h, w) bool, True = ignored cell
    mean_image: np.ndarray | None = None  # (image_height, image_width, 3) uint8: what the reference looks like
    method: str = METHOD

    def pulls(self, grids: np.ndarray) -> np.ndarray:
        """Pull maps (n, h, w) of grey grids (n, h, w) against this profile; masked cells are 0."""
        return pull_maps(np.asarray(grids, dtype=np.float32), self.mean, self.spread, self.mask)

    def scores(self, grids: np.ndarray) -> np.ndarray:
        """Reference score per grid (n, h, w)."""
        return combine(statistics(self.pulls(grids), self.mask), self.scales)

    def flagged(self, score: float) -> bool:
        """Whether a score is above the calibrated limit (a non-finite score counts as above)."""
        return not np.isfinite(score) or score > self.limit


def grey_levels(image: Any) -> np.ndarray:
    """An open Pillow image's grey levels (H, W) uint8: the decoder's luma (`GREY_MODE`), what the score
    compares.  The one decode of the score: the reference step's (`references.read_image`) and the Feeder's,
    which hands the grid over (`ingest/reference_grids.py`), so both grids are the same bits.  Takes any
    object with Pillow's `convert`: this module imports no image library."""
    return np.asarray(image.convert(GREY_MODE), dtype=np.uint8)


def grey_grid(rgb: np.ndarray, grid: tuple[int, int] = GRID) -> np.ndarray:
    """One image as its grey grid (h, w) float32: block means of grey levels in 0..1.  The image is grey
    (H, W) — what the pipeline passes: the decoder's luma, the cheapest decode — or colour (H, W, 3), whose
    channels are averaged; integers are 0..255, floats 0..1.

    Cells take the pixels whose centres fall in them (rows and columns split as evenly as the size allows),
    so any image size maps onto the same grid."""
    raw = np.asarray(rgb)
    pixels = raw.astype(np.float32)
    if pixels.ndim == 3:
        pixels = pixels[..., :3].mean(axis=2)
    if np.issubdtype(raw.dtype, np.integer):
        pixels = pixels / 255.0
    h, w = grid
    rows = np.linspace(0, pixels.shape[0], h + 1).astype(int)
    cols = np.linspace(0, pixels.shape[1], w + 1).astype(int)
    sums = np.add.reduceat(np.add.reduceat(pixels, rows[:-1], axis=0), cols[:-1], axis=1)
    counts = np.outer(np.diff(rows), np.diff(cols)).astype(np.float32)
    return (sums / np.maximum(counts, 1.0)).astype(np.float32)


def pull_maps(grids: np.ndarray, mean: np.ndarray, spread: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    pulls = (grids - mean) / spread
    if mask is not None:
        pulls = np.where(mask, 0.0, pulls)
    return pulls.astype(np.float32)


def statistics(pulls: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Per pull map (n, h, w), per share of `TOP_SHARES`: the RMS of its largest |pulls| over unmasked
    cells, (n, len(TOP_SHARES))."""
    pulls = np.abs(np.asarray(pulls, dtype=np.float32)).reshape(len(pulls), -1)
    if not len(pulls):
        return np.zeros((0, len(TOP_SHARES)), dtype=np.float64)
    cells = pulls.shape[1] - (0 if mask is None else int(np.count_nonzero(mask)))
    ordered = np.sort(pulls, axis=1).astype(np.float64) ** 2
    out = []
    for share in TOP_SHARES:
        top = max(1, int(round(share * max(cells, 1))))
        out.append(np.sqrt(ordered[:, -top:].mean(axis=1)))
    return np.stack(out, axis=1)


def combine(stats: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """The score: the largest statistic in units of its typical value on the reference."""
    if not len(stats):
        return np.zeros(0, dtype=np.float64)
    return (np.asarray(stats, dtype=np.float64) / np.maximum(np.asarray(scales, dtype=np.float64), 1e-9)).max(axis=1)


def _spread(variance: np.ndarray) -> np.ndarray:
    return np.sqrt(np.maximum(variance, 0.0) + SPREAD_FLOOR**2).astype(np.float32)


def build(grids: np.ndarray, *, quantile: float = DEFAULT_QUANTILE, image_size: tuple[int, int],
          mask: np.ndarray | None = None, mean_image: np.ndarray | None = None) -> ReferenceProfile:
    """The profile of reference grids (n, h, w), its limit calibrated leave-one-out at `quantile`.

    `image_size` (height, width) is the size every reference image had; images of another size are not
    scored against it.  `mask` (h, w), True = ignore, is applied to calibration and to every later score."""
    if not 0.0 < quantile < 1.0:
        raise ReferenceError(f"reference quantile must be between 0 and 1, not {quantile}")
    grids = np.asarray(grids, dtype=np.float64)
    n = len(grids)
    if n < MIN_IMAGES:
        raise ReferenceError(f"a reference needs at least {MIN_IMAGES} images, it has {n}")
    if mask is not None and bool(np.all(mask)):
        raise ReferenceError("the mask covers the whole image: nothing is left to compare")
    total = grids.sum(axis=0)
    squares = (grids**2).sum(axis=0)
    mean = total / n
    variance = squares / n - mean**2
    # leave-one-out: each image against the mean and spread of the others (exact, without n refits)
    others_mean = (total[None] - grids) / (n - 1)
    others_variance = (squares[None] - grids**2) / (n - 1) - others_mean**2
    own_stats = statistics(pull_maps(grids, others_mean, _spread(others_variance), mask), mask)
    scales = np.maximum(np.median(own_stats, axis=0), SCALE_FLOOR)
    limit = float(np.quantile(combine(own_stats, scales), quantile))
    return ReferenceProfile(mean.astype(np.float32), _spread(variance), scales, limit, float(quantile), n,
                            int(image_size[0]), int(image_size[1]),
                            None if mask is None else np.asarray(mask, dtype=bool), mean_image)


def difference_map(profile: ReferenceProfile, grid: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """Signed pull map of one image for display: positive = brighter than the reference, negative = darker
    (more ink); masked cells 0.  With `size` (height, width), each cell blown up to the pixels it covers."""
    pulls = profile.pulls(np.asarray(grid, dtype=np.float32)[None])[0]
    if size is None:
        return pulls
    h, w = pulls.shape
    rows = np.minimum((np.arange(size[0]) * h) // max(size[0], 1), h - 1)
    cols = np.minimum((np.arange(size[1]) * w) // max(size[1], 1), w - 1)
    return pulls[np.ix_(rows, cols)]


def save(profile: ReferenceProfile, path: Path) -> Path:
    """Write the profile as one `.npz` (a temporary name, then renamed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = {}
    if profile.mask is not None:
        extra["mask"] = profile.mask
    if profile.mean_image is not None:
        extra["mean_image"] = profile.mean_image
    buffer = io.BytesIO()
    np.savez_compressed(buffer, mean=profile.mean, spread=profile.spread, scales=profile.scales, limit=profile.limit,
                        quantile=profile.quantile, n_images=profile.n_images, image_height=profile.image_height,
                        image_width=profile.image_width, method=profile.method, **extra)
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_bytes(buffer.getvalue())
    staging.replace(path)
    return path


def load(path: Path, *, with_image: bool = True) -> ReferenceProfile:
    """Read a saved profile; `with_image=False` skips the mean image (only the compare view shows it), which
    is most of the file: the pipeline loads every plot type's profile for every chunk."""
    with np.load(Path(path), allow_pickle=False) as data:
        return ReferenceProfile(
            np.asarray(data["mean"], dtype=np.float32), np.asarray(data["spread"], dtype=np.float32),
            np.asarray(data["scales"], dtype=np.float64), float(data["limit"]), float(data["quantile"]), int(data["n_images"]), int(data["image_height"]),
            int(data["image_width"]), np.asarray(data["mask"], dtype=bool) if "mask" in data else None,
            np.asarray(data["mean_image"], dtype=np.uint8) if with_image and "mean_image" in data else None,
            str(data["method"]))


__all__ = ["DEFAULT_QUANTILE", "GRID", "METHOD", "MIN_IMAGES", "TOP_SHARES", "ReferenceError", "ReferenceProfile",
           "build", "combine", "difference_map", "grey_grid", "grey_levels", "load", "save", "statistics"]
