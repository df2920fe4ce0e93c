"""Quarantine: a file Hydra cannot use is moved aside and recorded with the reason, never dropped.

A quarantined file becomes an `images` row with status `quarantined` and `quarantine_reason`, its bytes
moved under ``quarantine_dir/<day>/`` with a name that is safe on any file system (the original name,
whatever it holds — quotes, `<script>`, invalid UTF-8 — is kept in the row, for pages to escape).
"""

from __future__ import annotations

import errno
import logging
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.orm import Session

from hydra_assets.db.engine import HydraDB
from hydra_assets.db.models import Image, utcnow
from hydra_assets.images import file_digest, find_image, store_file
from hydra_assets.naming import ImageName
from hydra_assets.settings import HydraSettings

log = logging.getLogger(__name__)
UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_file_name(name: str, *, limit: int = 120) -> str:
    """A name that cannot climb folders or break a shell: runs of other characters become '_'."""
    cleaned = UNSAFE.sub("_", name).lstrip(".") or "unnamed"
    return cleaned[-limit:]


def db_text(text: str, *, limit: int = 512) -> str:
    """Text a database accepts: undecodable bytes (surrogates from the file system) shown as escapes."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")[:limit]


def landed_at(info: os.stat_result) -> datetime:
    """When a file landed in the folder: the later of its write and its rename (ctime), as naive UTC."""
    stamp = max(info.st_mtime, info.st_ctime)
    return min(datetime.fromtimestamp(stamp, UTC).replace(tzinfo=None), utcnow())


def same_landing(landed: datetime, received: datetime) -> bool:
    """Is `landed` the very landing recorded as `received`?  Then a file still in the incoming folder is the
    one an interrupted run registered (not a second drop).  Exact to the microsecond where the database
    keeps them (SQLite), to the second where it does not (MySQL DATETIME)."""
    if received.microsecond == 0:
        return landed.replace(microsecond=0) == received
    return abs((landed - received).total_seconds()) < 0.001


@dataclass(frozen=True)
class QuarantineItem:
    path: Path
    reason: str
    name: ImageName | None = None
    plot_type_id: int | None = None
    digest: str | None = None


def _safe_digest(path: Path) -> str:
    try:
        if path.is_file() and not path.is_symlink():
            return file_digest(path)
    except OSError:
        pass
    return ""


def move_aside(config: HydraSettings, path: Path, digest: str) -> Path | None:
    """Move `path` into the quarantine folder; None when it vanished meanwhile."""
    now = datetime.now(UTC)
    folder = config.quarantine_dir / now.strftime("%Y-%m-%d")
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{now:%H%M%S%f}-{digest[:12] or 'unreadable'}-{safe_file_name(path.name)}"
    try:
        os.rename(path, target)
    except FileNotFoundError:
        return None
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise
        if path.is_symlink():  # another file system: recreate the link, never follow it
            os.symlink(os.readlink(path), target)
            path.unlink()
        elif path.is_file():
            store_file(path, folder, target.name, move=True)
        else:  # a FIFO or device across file systems cannot be moved; it is recorded and removed
            path.unlink()
            return target
    return target


def record_quarantine(
    session: Session, item: QuarantineItem, *, stored: Path | None, size: int, received_at: datetime
) -> Image:
    """The `images` row of a quarantined file, in the caller's transaction.

    The row keeps plot type, run and chunk when the name gave them, unless an image with the same identity
    (plot type, run, chunk, digest) already exists — a second drop of the same bytes — in which case the
    plot type is left empty so the identity stays unique; the reason names it.
    """
    name = item.name
    plot_type_id = item.plot_type_id
    digest = item.digest or ""
    if (name is not None and plot_type_id is not None and digest
            and find_image(session, plot_type_id=plot_type_id, run=name.run, chunk=name.chunk, digest=digest)):
        plot_type_id = None
    row = Image(
        plot_type_id=plot_type_id,
        run_number=name.run if name else None,
        chunk=name.chunk if name else None,
        digest=digest,
        file_name=db_text(item.path.name),
        stored_path=str(stored) if stored else "",
        size_bytes=size,
        received_at=received_at,
        status="quarantined",
        quarantine_reason=db_text(item.reason, limit=4000),
    )
    session.add(row)
    session.flush()
    return row


def quarantine_files(db: HydraDB, config: HydraSettings, items: list[QuarantineItem]) -> list[tuple[QuarantineItem, int]]:
    """Move every file aside, then record them all in one transaction; returns (item, image id) pairs.

    Files are moved first, so a failed database write leaves them safe in the quarantine folder rather
    than re-quarantined on every tick.
    """
    moved: list[tuple[QuarantineItem, Path | None, int, datetime]] = []
    for item in items:
        try:
            info = item.path.lstat()
        except FileNotFoundError:
            continue
        digest = item.digest if item.digest is not None else _safe_digest(item.path)
        item = QuarantineItem(item.path, item.reason, item.name, item.plot_type_id, digest)
        try:
            target = move_aside(config, item.path, digest)
        except OSError as error:  # e.g. the quarantine folder is full: the file waits, good files go on
            log.error("cannot quarantine %s (%s): %s; left in place, tried again on a later tick",
                      item.path.name, item.reason, error)
            continue
        if target is None:
            continue
        moved.append((item, target, info.st_size, landed_at(info)))
    if not moved:
        return []

    def write(session: Session) -> list[tuple[QuarantineItem, int]]:
        return [(item, record_quarantine(session, item, stored=target, size=size, received_at=when).id)
                for item, target, size, when in moved]

    return db.write(write, what="record quarantined files")

