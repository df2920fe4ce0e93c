"""The similarity map of a plot type's images: features, a 2-D projection and "more like this".

An expert labels faster by painting a whole cluster of look-alike images at once than by clicking them one by
one (bench/map_labels.py measures how much).  The map needs three things, all from well-kept libraries:

* **features** per image: the active model's own embedding (`ml/embedding.py`, what its last layer
  classifies, of the image with the model's mask applied) when the plot type has a model that loads, else
  the image downsampled to `PIXEL_SIZE` in grayscale — so a plot type with no model yet gets a map too;
* a **2-D projection**: scikit-learn PCA (fast, the default for big sets), t-SNE, or UMAP (umap-learn;
  slower on the first call: numba compiles it);
* **nearest neighbours** in feature space (scikit-learn `NearestNeighbors`) for "more like this".

Features are cached per plot type and feature source (model version or pixels) under
``<home>/similarity/``, one row per image id, so reopening the map only computes images new since; a
projection is cached per (source, method, the exact set of images).  Files are written to a temporary
name, then renamed: a crash never leaves a half cache.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image as PILImage

if TYPE_CHECKING:
    from hydra_assets.db.engine import HydraDB
    from hydra_assets.settings import HydraSettings

log = logging.getLogger(__name__)

PIXEL_SIZE = (24, 32)  # (height, width) of the grayscale thumbnail used as features without a model
DEFAULT_CAP = 5000  # images on one map: the newest, so a projection stays a few seconds
PCA, TSNE, UMAP = "PCA", "t-SNE", "UMAP"
METHODS = (PCA, TSNE, UMAP)
PIXELS = "pixels"  # the feature source without a model
Embedder = Callable[[Sequence[Path]], np.ndarray]  # image files -> features (N, D)
RETRY_SECONDS = 600.0  # a model version that did not load is tried again after this long (MLflow may be back)
_UNUSABLE: dict[tuple[str, str], tuple[float, str]] = {}  # (database, model key) -> (when, why it did not load)


class SimilarityError(ValueError):
    """A map that cannot be made as asked (unknown method, library missing); the message says what to do."""


@dataclass
class SimilarityMap:
    """One plot type's map: image ids in the order of the rows of `xy` and `features`."""

    image_ids: list[int]
    xy: np.ndarray  # (N, 2) float32
    features: np.ndarray  # (N, D) float32
    source: str  # "pixels" or the model version's key ("hydra-X/3")
    method: str
    notes: list[str] = field(default_factory=list)  # what the page should say (fallbacks, images left out)

    def position(self, image_id: int) -> int | None:
        try:
            return self.image_ids.index(int(image_id))
        except ValueError:
            return None

    def more_like(self, image_id: int, k: int = 12) -> list[int]:
        """Ids of the `k` images nearest to `image_id` in feature space (itself excluded), nearest first."""
        at = self.position(image_id)
        if at is None:
            return []
        return [self.image_ids[i] for i in nearest(self.features, at, k)]


# ---- features -------------------------------------------------------------------------------------------


def grayscale(pixels: np.ndarray | PILImage.Image, size: tuple[int, int] = PIXEL_SIZE) -> np.ndarray:
    """An image as a flat float32 row of grayscale values in [0, 1] at `size` (height, width)."""
    image = pixels if isinstance(pixels, PILImage.Image) else PILImage.fromarray(np.asarray(pixels))
    height, width = size
    small = image.convert("L").resize((width, height), PILImage.Resampling.BOX)
    return (np.asarray(small, dtype=np.float32) / 255.0).reshape(-1)


def pixel_features(paths: Sequence[Path], size: tuple[int, int] = PIXEL_SIZE) -> np.ndarray:
    """Grayscale rows of image files; an unreadable file gives a row of NaN (left off the map by the caller)."""
    rows = np.full((len(paths), size[0] * size[1]), np.nan, dtype=np.float32)
    for i, path in enumerate(paths):
        try:
            with PILImage.open(path) as image:
                image.draft("L", (size[1] * 4, size[0] * 4))  # JPEG decodes smaller; PNG ignores it
                rows[i] = grayscale(image, size)
        except (OSError, ValueError) as error:
            log.info("similarity map: cannot read %s: %s", path, error)
    return rows


def model_embedder(db: HydraDB, settings: HydraSettings, plot_type: str) -> tuple[str, Embedder | None, str]:
    """(source key, embedder, note) of the plot type's active model; (PIXELS, None, why) without a usable one.

    A model that does not load (file missing, MLflow down) or has no embedding layer is not an error: the
    map falls back to pixels and says why.
    """
    from hydra_assets.ml.active import ModelLoadError, active_model_row, load_active_model

    with db.read() as session:
        row = active_model_row(session, plot_type)
        key = row.key if row is not None else None
    if key is None:
        return PIXELS, None, "no active model: the map uses image pixels"
    memo = (str(db.url), key)
    if memo in _UNUSABLE and time.monotonic() - _UNUSABLE[memo][0] < RETRY_SECONDS:
        return PIXELS, None, _UNUSABLE[memo][1]
    try:
        model = load_active_model(db, settings, plot_type)
    except Exception as error:  # any failure to load (MLflow, file, Keras) means: use pixels
        log.warning("similarity map: the active model %s of %s did not load: %r", key, plot_type, error)
        why = f" ({str(error)[:200]})" if isinstance(error, ModelLoadError) else " (the server log says why)"
        note = f"the active model {key} did not load{why}; the map uses image pixels"
        _UNUSABLE[memo] = (time.monotonic(), note)
        return PIXELS, None, note
    if model is None:
        return PIXELS, None, "no active model: the map uses image pixels"
    from hydra_assets.ml.embedding import with_embedding

    if with_embedding(model.keras_model) is None:
        return PIXELS, None, f"the active model {key} has no embedding layer; the map uses image pixels"

    def embed(paths: Sequence[Path]) -> np.ndarray:
        from hydra_assets.images import load_rgb
        from hydra_assets.ml.embedding import embed as embed_batch

        rows: list[np.ndarray] = []
        size = (model.input_size[0], model.input_size[1])
        width = None
        for start in range(0, len(paths), 64):
            batch, ok = [], []
            for path in paths[start:start + 64]:
                try:
                    batch.append(load_rgb(path, size))
                    ok.append(True)
                except (OSError, ValueError):
                    batch.append(np.zeros((*size, 3), np.float32))
                    ok.append(False)
            # as the model sees them: its mask's rectangles blanked, as in training and Predict
            features, _weights = embed_batch(model.keras_model, model.masked(np.stack(batch)))
            assert features is not None  # checked above: the model has an embedding
            features[~np.asarray(ok)] = np.nan
            width = features.shape[1]
            rows.append(features)
        return np.concatenate(rows) if rows else np.zeros((0, width or 1), np.float32)

    return key, embed, f"features: the active model {key}'s embedding"


class FeatureCache:
    """Features of one plot type and source, per image id, in ``<folder>/<plot type>-<source>.npz``."""

    def __init__(self, folder: Path, plot_type_id: int, source: str) -> None:
        self.folder = Path(folder)
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", source)
        self.path = self.folder / f"{int(plot_type_id)}-{safe}.npz"

    def load(self) -> dict[int, np.ndarray]:
        if not self.path.is_file():
            return {}
        try:
            with np.load(self.path, allow_pickle=False) as data:
                return dict(zip((int(i) for i in data["ids"]), np.asarray(data["features"], np.float32), strict=True))
        except (OSError, ValueError, KeyError) as error:  # a damaged cache is recomputed, never an error
            log.warning("similarity cache %s unreadable, recomputing: %s", self.path, error)
            return {}

    def features(self, image_ids: Sequence[int], paths: Sequence[Path], compute: Embedder) -> np.ndarray:
        """Rows for `image_ids` (files `paths`), computing only those not cached yet, and saving them.

        A row that could not be computed (unreadable file) is NaN and not cached: it is tried again next time.
        """
        known = self.load()
        missing = [i for i, image_id in enumerate(image_ids) if int(image_id) not in known]
        fresh: dict[int, np.ndarray] = {}
        if missing:
            computed = np.asarray(compute([paths[i] for i in missing]), dtype=np.float32)
            fresh = dict(zip(missing, computed, strict=True))
            for i, row in fresh.items():
                if not np.isnan(row).any():
                    known[int(image_ids[i])] = row
            if known:
                order = sorted(known)
                _save(self.path, ids=np.array(order, dtype=np.int64), features=np.stack([known[i] for i in order]))
        rows = [known.get(int(image_id), fresh.get(i)) for i, image_id in enumerate(image_ids)]
        width = next((len(r) for r in rows if r is not None), 1)
        out = np.full((len(image_ids), width), np.nan, dtype=np.float32)
        for i, row in enumerate(rows):
            if row is not None and len(row) == width:
                out[i] = row
        return out


def _save(path: Path, **arrays: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    staging = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")  # one per writer
    staging.write_bytes(buffer.getvalue())
    staging.replace(path)


# ---- projection and neighbours -----------------------------------------------------------------------------


def project(features: np.ndarray, method: str = PCA, *, seed: int = 0) -> np.ndarray:
    """2-D coordinates (N, 2) of feature rows, by PCA, t-SNE or UMAP (deterministic for a given `seed`).

    Fewer than 4 images cannot make a neighbourhood graph: t-SNE and UMAP then fall back to PCA.
    """
    if method not in METHODS:
        raise SimilarityError(f"unknown projection {method!r}; choose one of {', '.join(METHODS)}")
    n = len(features)
    if n < 2:
        return np.zeros((n, 2), np.float32)
    rows = np.asarray(features, dtype=np.float32).reshape(n, -1)
    if method == PCA or n < 4:
        return _pad(_pca(rows, 2, seed))
    reduced = _pca(rows, min(50, n - 1, rows.shape[1]), seed) if rows.shape[1] > 50 else rows
    if method == TSNE:
        from sklearn.manifold import TSNE as SkTSNE

        perplexity = float(min(30.0, max(2.0, (n - 1) / 3.0)))
        return _pad(SkTSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
                    .fit_transform(reduced).astype(np.float32))
    try:
        import umap
    except ImportError as error:
        raise SimilarityError(f"UMAP needs the umap-learn package ({error}); choose PCA or t-SNE") from error
    import warnings

    with warnings.catch_warnings():  # "n_jobs overridden by setting random_state": wanted, the map is repeatable
        warnings.simplefilter("ignore", UserWarning)
        return _pad(umap.UMAP(n_components=2, n_neighbors=min(15, n - 1), random_state=seed, n_jobs=1)
                    .fit_transform(reduced).astype(np.float32))


def _pca(rows: np.ndarray, components: int, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA as SkPCA

    components = max(1, min(components, rows.shape[0], rows.shape[1]))
    return SkPCA(n_components=components, random_state=seed).fit_transform(rows).astype(np.float32)


def _pad(xy: np.ndarray) -> np.ndarray:
    """Always two columns (one image, or features of one dimension, give fewer)."""
    if xy.shape[1] >= 2:
        return xy[:, :2]
    return np.hstack([xy, np.zeros((len(xy), 2 - xy.shape[1]), np.float32)])


def nearest(features: np.ndarray, index: int, k: int) -> list[int]:
    """Row positions of the `k` rows nearest to row `index` (itself excluded), nearest first."""
    from sklearn.neighbors import NearestNeighbors

    n = len(features)
    if n <= 1 or k < 1:
        return []
    finder = NearestNeighbors(n_neighbors=min(k + 1, n)).fit(features)
    _distances, found = finder.kneighbors(features[index:index + 1])
    return [int(i) for i in found[0] if int(i) != index][:k]


# ---- the map --------------------------------------------------------------------------------------------


def build_map(
    *, folder: Path, plot_type_id: int, image_ids: Sequence[int], paths: Sequence[Path | None], method: str = PCA,
    source: str = PIXELS, embedder: Embedder | None = None, seed: int = 0,
) -> SimilarityMap:
    """The map of the given images (file `None`: left off, said in `notes`), with cached features/projection."""
    if method not in METHODS:
        raise SimilarityError(f"unknown projection {method!r}; choose one of {', '.join(METHODS)}")
    notes: list[str] = []
    have = [i for i, p in enumerate(paths) if p is not None]
    ids = [int(image_ids[i]) for i in have]
    files = [Path(paths[i]) for i in have]  # type: ignore[arg-type]
    compute = embedder if embedder is not None and source != PIXELS else pixel_features
    features = FeatureCache(folder, plot_type_id, source).features(ids, files, compute)
    readable = ~np.isnan(features).any(axis=1) if len(features) else np.zeros(0, bool)
    lost = len(image_ids) - int(readable.sum())
    if lost:
        notes.append(f"{lost} image(s) left off the map: their file is missing or unreadable")
    ids = [i for i, ok in zip(ids, readable, strict=True) if ok]
    features = features[readable] if len(features) else np.zeros((0, 1), np.float32)
    digest = hashlib.sha1(np.asarray(ids, dtype=np.int64).tobytes()).hexdigest()[:16]
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{source}-{method}")
    cached = Path(folder) / f"{int(plot_type_id)}-{safe}-{digest}-{seed}.xy.npz"
    xy = _load_xy(cached, len(ids))
    if xy is None:
        xy = project(features, method, seed=seed)
        _save(cached, xy=xy)
        for old in Path(folder).glob(f"{int(plot_type_id)}-{safe}-*.xy.npz"):  # one projection per source/method
            if old != cached:
                old.unlink(missing_ok=True)
    return SimilarityMap(ids, np.asarray(xy, np.float32), features, source, method, notes)


def _load_xy(path: Path, n: int) -> np.ndarray | None:
    """A cached projection of `n` images, or None (absent, damaged or of another size: project again)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            xy = np.asarray(data["xy"], np.float32)
    except (OSError, ValueError, KeyError):
        return None
    return xy if xy.shape == (n, 2) else None


__all__ = ["DEFAULT_CAP", "METHODS", "PCA", "PIXELS", "PIXEL_SIZE", "TSNE", "UMAP", "FeatureCache", "SimilarityError",
           "SimilarityMap", "build_map", "grayscale", "model_embedder", "nearest", "pixel_features", "project"]
