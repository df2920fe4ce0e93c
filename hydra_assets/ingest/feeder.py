"""The Feeder: files of a chunk become registered images (or quarantined ones), idempotently.

For each file the sensor requested: check it is still the bytes the sensor saw, that its name and plot
type are known, that Pillow reads it completely under the pixel limit; then store it under the images
folder, register it with its digest, and prepare the model's input (RGB, resized to the active model's
input size) and, for a plot type with a reference, the reference grid from the pixels decoded for the
check.  They are kept for Predict and the reference step by image digest (`model_inputs`,
`reference_grids`), which works whatever executor runs the steps.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from hydra_assets.db.engine import HydraDB
from hydra_assets.db.models import Image, Model, PlotType, ReferenceSet
from hydra_assets.images import (
    BadImage,
    check_image,
    file_digest,
    store_file,
    stored_name,
    touch_run,
)
from hydra_assets.ingest.health import write_resolving_conflicts
from hydra_assets.ingest.model_inputs import inputs_folder, keep_input, to_uint8
from hydra_assets.ingest.quarantine import QuarantineItem, db_text, landed_at, quarantine_files, same_landing
from hydra_assets.ingest.reference_grids import grids_folder, image_grid, keep_grid
from hydra_assets.ingest.scan import FileRef
from hydra_assets.naming import BadFileName, ImageName, parse_image_name
from hydra_assets.settings import HydraSettings

USABLE = ("registered", "labeled_import")


@dataclass(frozen=True)
class FedImage:
    image_id: int
    plot_type: str
    plot_type_id: int
    chunk: int
    file_name: str
    digest: str
    stored: Path


@dataclass
class FeedResult:
    run: int
    requested: int = 0
    registered: list[FedImage] = field(default_factory=list)
    quarantined: list[tuple[str, str]] = field(default_factory=list)  # (file name, reason)
    duplicates: int = 0  # of the quarantined: same bytes as an image already registered
    already: int = 0  # an earlier attempt of this run registered them (file gone, image there)
    changed: list[str] = field(default_factory=list)  # bytes differ from the sensor's: left for a new request
    missing: list[str] = field(default_factory=list)  # neither the file nor an image: deleted by someone
    elsewhere: list[str] = field(default_factory=list)  # name says another run number: left in place
    chunks: Counter[tuple[int | None, int | None]] = field(default_factory=Counter)
    timings_ms: Counter[str] = field(default_factory=Counter)  # wall time per phase (bench/ingest.py --parts profile)
    duration_ms: float = 0.0

    @property
    def unaccounted(self) -> list[str]:
        """Requested files that ended neither registered, quarantined, done before, nor deferred."""
        return [*self.missing, *self.elsewhere]


def input_sizes(session: Session) -> dict[int, tuple[int, int]]:
    """(height, width) the active model of each plot type expects, else the plot type's configured size."""
    sizes = {pid: (h, w) for pid, h, w in session.execute(
        select(PlotType.id, PlotType.input_height, PlotType.input_width))}
    for pid, h, w in session.execute(
        select(Model.plot_type_id, Model.input_height, Model.input_width).where(Model.active.is_(True))
        .order_by(Model.activated_at, Model.id)
    ):
        sizes[pid] = (h, w)
    return sizes


@dataclass(frozen=True)
class _Accepted:
    ref: FileRef
    path: Path
    name: ImageName
    plot_type_id: int
    width: int
    height: int
    size: int
    received_at: object
    pixels: np.ndarray | None = None  # the model input, decoded once while checking the file
    grid: np.ndarray | None = None  # the reference grid, from the same decode


def _already_registered(db: HydraDB, run: int, refs: Sequence[FileRef]) -> set[tuple[str, str]]:
    if not refs:
        return set()
    with db.read() as s:
        rows = s.execute(select(Image.file_name, Image.digest).where(
            Image.run_number == run, Image.digest.in_([r.digest for r in refs]), Image.status.in_(USABLE)))
        return {(name, digest) for name, digest in rows}


def _registered(db: HydraDB, run: int, digests: Sequence[str]
                ) -> dict[tuple[int, int, str], tuple[int, object, str]]:
    """Usable images of `run` with these digests, by identity: one query for the whole chunk."""
    if not digests:
        return {}
    with db.read() as s:
        rows = s.execute(select(Image.plot_type_id, Image.chunk, Image.digest, Image.id, Image.received_at,
                                Image.file_name).where(
            Image.run_number == run, Image.digest.in_(list(set(digests))), Image.status.in_(USABLE)))
        return {(pt, chunk, digest): (image_id, received, name) for pt, chunk, digest, image_id, received, name in rows}


WORKERS = max(2, min(4, os.cpu_count() or 2))
# storing waits on the disk more than it computes (copy 1.6 ms and fsync 2.5 ms per 22-kB PNG at load 9, a
# hard link 0.02 ms): more threads than cores keep the disk busy (bench/ingest.py --parts profile)
STORE_WORKERS = 8


def parallel[T, U](work: Callable[[T], U], items: Sequence[T], *, workers: int = WORKERS) -> list[U]:
    """`work` over `items` in a few threads: Pillow decoding, hashing and fsync release the GIL, so a chunk's
    files are checked and stored on every core (the cores are otherwise idle until Predict)."""
    if len(items) < 2:
        return [work(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items)), thread_name_prefix="feeder") as pool:
        return list(pool.map(work, items))


def _inspect(config: HydraSettings, run: int, ref: FileRef, plot_types: dict[str, tuple[int, bool]],
             sizes: dict[int, tuple[int, int]], referenced: Collection[int] = ()) -> tuple[str, Any]:
    """What to do with one requested file: accepted | quarantine | gone | missing | changed | elsewhere."""
    path = config.input_dir / ref.name
    if Path(ref.name).name != ref.name or ref.name in {".", ".."}:
        return "missing", None  # never touch anything outside the incoming folder
    try:
        info = path.lstat()
    except FileNotFoundError:
        return "gone", None
    if not path.is_file() or path.is_symlink():
        return "quarantine", QuarantineItem(path, "not a regular file")
    try:
        digest = file_digest(path)
    except OSError as error:
        return "quarantine", QuarantineItem(path, f"unreadable: {error.strerror or error}", digest="")
    if digest != ref.digest:
        return "changed", None  # still being written or replaced: the sensor asks again
    try:
        name = parse_image_name(ref.name, config.file_regex)
    except BadFileName as error:
        return "quarantine", QuarantineItem(path, f"bad file name: {error}", digest=digest)
    if name.run != run:
        return "elsewhere", None
    known = plot_types.get(name.plot_type)
    if known is None or not known[1]:
        why = "unknown plot type" if known is None else "disabled plot type"
        return "quarantine", QuarantineItem(path, f"{why} {name.plot_type!r}", name, None, digest)
    plot_type_id = known[0]
    try:
        checked = check_image(path, max_pixels=config.max_image_pixels, pixels_at=sizes.get(plot_type_id),
                              grid_of=image_grid if plot_type_id in referenced else None)
    except BadImage as error:
        return "quarantine", QuarantineItem(path, str(error), name, plot_type_id, digest)
    except OSError as error:
        return "quarantine", QuarantineItem(path, f"unreadable: {error}", name, plot_type_id, digest)
    return "accepted", _Accepted(FileRef(digest, ref.name), path, name, plot_type_id, checked.width,
                                 checked.height, info.st_size, landed_at(info),
                                 None if checked.pixels is None else to_uint8(checked.pixels), checked.grid)


def feed_files(
    db: HydraDB,
    config: HydraSettings,
    run: int,
    refs: Sequence[FileRef],
    *,
    dagster_run_id: str = "",
) -> FeedResult:
    """Register (or quarantine) every requested file of run `run`; safe to run again on the same request."""
    started = time.perf_counter()
    result = FeedResult(run=run, requested=len(refs))
    phase = [started]

    def lap(name: str) -> None:
        now = time.perf_counter()
        result.timings_ms[name] += (now - phase[0]) * 1000
        phase[0] = now

    with db.read() as s:
        plot_types = {p.name: (p.id, p.enabled) for p in s.scalars(select(PlotType))}
        sizes = input_sizes(s)
        referenced = set(s.scalars(select(ReferenceSet.plot_type_id).where(ReferenceSet.active.is_(True))))
    accepted: list[_Accepted] = []
    to_quarantine: list[QuarantineItem] = []
    gone: list[FileRef] = []
    wanted = sizes if dagster_run_id else {}  # pixels only for a pipeline run's Predict step
    grids_wanted = referenced if dagster_run_id else set()  # and grids for its reference step
    lap("db_read")
    inspected = parallel(lambda ref: _inspect(config, run, ref, plot_types, wanted, grids_wanted), refs)
    lap("check")  # hash, verify, decode, resize (and the reference grid), on every core
    for ref, (kind, payload) in zip(refs, inspected, strict=True):
        if kind == "accepted":
            accepted.append(payload)
        elif kind == "quarantine":
            to_quarantine.append(payload)
        elif kind == "gone":
            gone.append(ref)
        else:
            getattr(result, kind).append(ref.name)  # missing | changed | elsewhere

    registered_before = _registered(db, run, [a.ref.digest for a in accepted])
    lap("db_read")
    fresh = []
    for a in accepted:
        existing = registered_before.get((a.plot_type_id, a.name.chunk, a.ref.digest))
        if existing is None:
            fresh.append(a)
            continue
        image_id, received, registered_name = existing
        if registered_name == db_text(a.ref.name) and same_landing(a.received_at, received):
            # this very file (name, bytes and landing time), registered by an earlier attempt of the run that
            # died before removing it: its bytes are stored, the copy is redundant, not a second drop
            a.path.unlink(missing_ok=True)
            result.already += 1
            continue
        to_quarantine.append(QuarantineItem(
            a.path, f"duplicate: the same bytes are already registered as image {image_id} ({a.name.plot_type}, "
                    f"run {run}, chunk {a.name.chunk}, received {received:%Y-%m-%d %H:%M:%S} UTC)",
            a.name, a.plot_type_id, a.ref.digest))
        result.duplicates += 1
    accepted = fresh

    done_before = _already_registered(db, run, gone)
    for ref in gone:
        if (db_text(ref.name), ref.digest) in done_before:
            result.already += 1
        else:
            result.missing.append(ref.name)
    lap("db_read")

    # a pipeline run's Predict takes the inputs decoded for the check instead of decoding the files again
    inputs = inputs_folder(config) if any(a.pixels is not None for a in accepted) else None
    grids = grids_folder(config) if any(a.grid is not None for a in accepted) else None  # and its reference step

    def store(a: _Accepted) -> Path:
        path = store_file(a.path, config.images_dir,
                          stored_name(a.name.plot_type, run, a.name.chunk, a.ref.digest, a.path.suffix))
        if inputs is not None and a.pixels is not None:
            keep_input(inputs, a.ref.digest, a.pixels)  # in the storing threads, beside the fsync
        if grids is not None and a.grid is not None:
            keep_grid(grids, a.ref.digest, (a.height, a.width), a.grid)
        return path

    stored = dict(zip([a.ref.name for a in accepted], parallel(store, accepted, workers=STORE_WORKERS), strict=True))
    lap("store")  # copy + fsync into the images folder, model inputs and grids kept

    def register(session: Session) -> tuple[list[FedImage], list[_Accepted]]:
        """All of the chunk's rows in one INSERT (executemany), not a query and a flush per image: 0.86 ms
        per image on SQLite before (bench/ingest.py --parts profile).  A row with the same identity, whatever
        its status, means a concurrent run of the same bytes got there first (`uq_image_identity`)."""
        wanted = list({a.ref.digest for a in accepted})
        taken = set(session.execute(select(Image.plot_type_id, Image.chunk, Image.digest).where(
            Image.run_number == run, Image.digest.in_(wanted))).tuples())
        new, dupes = [], []
        for a in accepted:
            identity = (a.plot_type_id, a.name.chunk, a.ref.digest)
            if identity in taken:
                dupes.append(a)
                continue
            taken.add(identity)
            new.append(a)
        if not new:
            return [], dupes
        session.execute(insert(Image), [dict(
            plot_type_id=a.plot_type_id, run_number=run, chunk=a.name.chunk, digest=a.ref.digest,
            file_name=db_text(a.ref.name), stored_path=str(stored[a.ref.name]), size_bytes=a.size,
            width=a.width, height=a.height, received_at=a.received_at, status="registered",
        ) for a in new])
        ids = {(pt, chunk, digest): image_id for image_id, pt, chunk, digest in session.execute(
            select(Image.id, Image.plot_type_id, Image.chunk, Image.digest).where(
                Image.run_number == run, Image.digest.in_(list({a.ref.digest for a in new}))))}
        fed = [FedImage(ids[(a.plot_type_id, a.name.chunk, a.ref.digest)], a.name.plot_type, a.plot_type_id,
                        a.name.chunk, a.ref.name, a.ref.digest, stored[a.ref.name]) for a in new]
        touch_run(session, run, images=len(fed))
        return fed, dupes

    fed, late_dupes = write_resolving_conflicts(db, register, what="register images") if accepted else ([], [])
    lap("db_write")
    # registered: the copy is stored.  In threads: an unlink waits on the directory and the journal (1-2 ms
    # each in a folder of 20,000 waiting files on a busy machine, bench/ingest.py --parts rate)
    parallel(lambda image: config.input_dir.joinpath(image.file_name).unlink(missing_ok=True), fed,
             workers=STORE_WORKERS)
    lap("unlink")
    for a in late_dupes:
        to_quarantine.append(QuarantineItem(a.path, "duplicate: the same bytes were registered by a concurrent "
                                                    "run", a.name, a.plot_type_id, a.ref.digest))
        result.duplicates += 1

    for item, _image_id in quarantine_files(db, config, to_quarantine):
        result.quarantined.append((item.path.name, item.reason))
    lap("quarantine")
    result.registered = fed
    for image in fed:
        result.chunks[(image.plot_type_id, image.chunk)] += 1
    result.duration_ms = (time.perf_counter() - started) * 1000
    return result


__all__ = ["FeedResult", "FedImage", "feed_files", "input_sizes"]
