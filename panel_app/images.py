"""Serving images to the pages: by image id, only from Hydra's image folders, only to logged-in users.

The browser asks for `hydra/image/<id>?size=thumb` (or `hydra/gradcam/<id>`); the handler looks the path
up in the database and serves it only when it resolves — symlinks followed — inside the images, kept or
GradCAM folder.  A URL never carries a path, so `..`, absolute paths and symlinks pointing elsewhere
cannot reach other files; `safe_path` is the second wall, for paths that came from the database.
Image URLs are immutable per id, so the Run grid's refreshes cost the browser nothing but new images.
"""

from __future__ import annotations

import hashlib
import io
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path, PurePath

from PIL import Image as PILImage
from sqlalchemy import select
from tornado.web import HTTPError, RequestHandler, authenticated

from hydra_assets.db.engine import HydraDB
from hydra_assets.db.models import Image, Inference, KeepDecision
from hydra_assets.settings import HydraSettings

log = logging.getLogger(__name__)

IMAGE_ROUTE = "hydra/image"
GRADCAM_ROUTE = "hydra/gradcam"
SUFFIXES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
SIZES = {"thumb": 360, "small": 200, "full": None}


def image_url(image_id: int, size: str = "thumb") -> str:
    """Relative URL of an image (pages live one level below the server root)."""
    return f"{IMAGE_ROUTE}/{int(image_id)}?size={size}"


def gradcam_url(image_id: int, size: str = "thumb") -> str:
    return f"{GRADCAM_ROUTE}/{int(image_id)}?size={size}"


def image_roots(settings: HydraSettings) -> list[Path]:
    return [Path(p) for p in (settings.images_dir, settings.kept_dir, settings.gradcam_dir) if p is not None]


def safe_path(candidate: str | Path | None, roots: Sequence[Path]) -> Path | None:
    """The real path of `candidate` if it is an image file inside one of `roots`, else None.

    Relative candidates are taken under each root in turn and may not contain `..`; the result is
    resolved (symlinks followed) and must still lie inside a root.
    """
    if not candidate:
        return None
    path = Path(candidate)
    if "\x00" in str(candidate):
        return None
    if path.is_absolute():
        candidates = [path]
    else:
        if ".." in PurePath(candidate).parts:
            return None
        candidates = [root / path for root in roots]
    real_roots = [root.resolve() for root in roots]
    for option in candidates:
        try:
            resolved = option.resolve(strict=True)
        except (OSError, RuntimeError):
            continue
        if resolved.suffix.lower() not in SUFFIXES or not resolved.is_file():
            continue
        if any(resolved.is_relative_to(root) for root in real_roots):
            return resolved
    return None


class ThumbnailCache:
    """Downscaled PNGs kept in memory (the Run grid asks for the same thumbnails again and again)."""

    def __init__(self, max_items: int = 1024) -> None:
        self.max_items = max_items
        self._items: OrderedDict[tuple[str, float, int], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path, width: int) -> bytes:
        stat = path.stat()
        key = (str(path), stat.st_mtime, width)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        data = make_thumbnail(path, width)
        with self._lock:
            self._items[key] = data
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
        return data


def make_thumbnail(path: Path, width: int) -> bytes:
    with PILImage.open(path) as image:
        image.thumbnail((width, width * 4), PILImage.Resampling.LANCZOS)
        if image.mode not in ("RGB", "RGBA", "L", "LA"):
            image = image.convert("RGBA")
        out = io.BytesIO()
        image.save(out, format="PNG", optimize=False)
        return out.getvalue()


class ImageLocator:
    """Finds the file of an image (or of its GradCAM) from the database, inside the allowed folders."""

    def __init__(self, db: HydraDB, settings: HydraSettings) -> None:
        self.db = db
        self.roots = image_roots(settings)
        self.thumbnails = ThumbnailCache()

    def image_path(self, image_id: int) -> Path | None:
        with self.db.read() as session:
            stored = session.scalar(select(Image.stored_path).where(Image.id == image_id))
            path = safe_path(stored, self.roots)
            if path is None:  # the stored copy may be gone; the kept copy may remain
                kept = session.scalars(
                    select(KeepDecision.kept_path).where(KeepDecision.image_id == image_id,
                                                         KeepDecision.kept_path.is_not(None))
                ).first()
                path = safe_path(kept, self.roots)
        return path

    def gradcam_path(self, image_id: int) -> Path | None:
        with self.db.read() as session:
            stored = session.scalars(
                select(Inference.gradcam_path)
                .where(Inference.image_id == image_id, Inference.gradcam_path.is_not(None))
                .order_by(Inference.classified_at.desc(), Inference.id.desc())
            ).first()
        return safe_path(stored, self.roots)

    def read(self, kind: str, image_id: int, size: str) -> tuple[bytes, str] | None:
        path = self.gradcam_path(image_id) if kind == "gradcam" else self.image_path(image_id)
        if path is None:
            return None
        width = SIZES.get(size, SIZES["thumb"])
        if width is None:
            return path.read_bytes(), SUFFIXES[path.suffix.lower()]
        return self.thumbnails.get(path, width), "image/png"


class ImageHandler(RequestHandler):
    """GET hydra/image/<id> and hydra/gradcam/<id>, for logged-in users only."""

    def initialize(self, locator: ImageLocator, kind: str) -> None:
        self.locator = locator
        self.kind = kind

    # authentication: the same provider as the pages (Panel's basic auth or OAuth, or none)
    def get_login_url(self) -> str:
        provider = self.application.auth_provider
        if provider.get_login_url is not None:
            return provider.get_login_url(self)
        return provider.login_url or "/login"

    def get_current_user(self):  # type: ignore[no-untyped-def]
        provider = self.application.auth_provider
        if provider.get_user is not None:
            return provider.get_user(self)
        if provider.get_user_async is None:
            return "default_user"  # the app runs without login
        return None

    async def prepare(self) -> None:
        provider = self.application.auth_provider
        if provider.get_user_async is not None:
            self.current_user = await provider.get_user_async(self)

    @authenticated
    def get(self, image_id: str) -> None:
        size = self.get_argument("size", "thumb")
        try:
            found = self.locator.read(self.kind, int(image_id), size)
        except (OSError, ValueError) as error:
            log.warning("cannot serve %s %s: %s", self.kind, image_id, error)
            found = None
        if found is None:
            raise HTTPError(404)
        data, content_type = found
        etag = hashlib.sha1(data).hexdigest()
        self.set_header("Content-Type", content_type)
        self.set_header("X-Content-Type-Options", "nosniff")
        # an image id's pixels never change; a GradCAM may be replaced by a newer model's
        self.set_header("Cache-Control", f"private, max-age={86400 if self.kind == 'image' else 60}")
        self.set_header("Etag", f'"{etag}"')
        if self.request.headers.get("If-None-Match", "").strip('"') == etag:
            self.set_status(304)
            return
        self.write(data)


def image_routes(locator: ImageLocator) -> list[tuple[str, type, dict]]:
    """Tornado routes to hand to `pn.serve(extra_patterns=…)`."""
    return [
        (rf"/{IMAGE_ROUTE}/(\d+)", ImageHandler, {"locator": locator, "kind": "image"}),
        (rf"/{GRADCAM_ROUTE}/(\d+)", ImageHandler, {"locator": locator, "kind": "gradcam"}),
    ]
