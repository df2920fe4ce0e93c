"""Reference sets of a plot type and the reference score of its images (issue 14; docs/reference.md).

Long module: choosing, building, scoring and the compare view share the same image and profile rules.

A reference is one or more runs whose images define "normal" for a plot type.  An expert chooses them
(`choose_reference`: `hydra reference set`, the pages; the caller checks the `edit_reference` permission),
or the plot type follows its latest good runs (`auto_reference`, refreshed by the `reference_refresh`
schedule when the plot type's `reference_rule` is "auto").  Every change is a new `ReferenceSet` version —
who, when, which rule, which runs, how many images, the calibrated limit — and the old one is deactivated,
so the rows are the history.

The profile (`hydra_assets.scores.reference`) is built from the stored images of the runs and saved as
`<images_dir>/.references/<plot type>/<version>.npz` (shared image storage, so every worker and the pages
read the same file); a missing file is rebuilt from the same images.  `score_run` is the pipeline's step:
one `ReferenceScore` per (image, reference version), idempotent; an image that cannot be scored gets a row
with status "missing" and the reason, and the rest of the chunk goes on.

Auto rule (`auto_runs`): walking back from the newest run, a run qualifies when it has at least
`AUTO_MIN_IMAGES` usable images of the plot type, none of them labeled Bad by a person, at least
`AUTO_GOOD_SHARE` of them good (labeled Good by a person, or confirmed Good by the classifier: confirmed
and not a bad label), and no image arrived in the last `AUTO_QUIET` (a run still being taken is not
judged yet).  The newest qualifying runs, up to `AUTO_RUNS`, among the newest `AUTO_LOOKBACK` runs with
images of the plot type, are the reference.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from hydra_assets.db.engine import HydraDB
from hydra_assets.db.models import Image, Inference, Label, PlotType, ReferenceScore, ReferenceSet, Run, utcnow
from hydra_assets.scores import reference as scoring
from hydra_assets.scores.reference import ReferenceError, ReferenceProfile
from hydra_assets.settings import HydraSettings

log = logging.getLogger(__name__)

USABLE = ("registered", "labeled_import")  # as the Feeder's USABLE (not imported: no ingest dependency here)
FOLDER = ".references"
AUTO_MIN_IMAGES = 5
AUTO_GOOD_SHARE = 0.8
AUTO_RUNS = 3  # measured in bench/reference.py: 3 runs follow drift better than 1 (more images, more spread)
AUTO_QUIET = timedelta(minutes=15)
MAX_IMAGES = 500  # per reference version (mean and spread settle long before; decoding them is the cost)
AUTO_LOOKBACK = 50  # runs looked at, newest first: the hourly refresh stays cheap where none qualifies
RULES = ("expert", "auto")


@dataclass(frozen=True)
class ReferenceChange:
    """What `choose_reference` / `auto_reference` did: the new version (or None) and why."""

    plot_type: str
    version: int | None
    runs: list[int]
    n_images: int = 0
    limit: float | None = None
    excluded: list[str] = field(default_factory=list)  # "image 12 (run 5 chunk 3): 320x240, not 640x480"
    message: str = ""


@dataclass
class ScoreResult:
    run: int
    scored: int = 0
    missing: int = 0
    flagged: int = 0
    already: int = 0
    reasons: Counter[str] = field(default_factory=Counter)  # missing reason -> images
    chunks: Counter[tuple[int | None, int | None]] = field(default_factory=Counter)
    duration_ms: float = 0.0
    handed_over: int = 0  # grids the Feeder computed (`ingest/reference_grids.py`): no image decoded for them


@dataclass(frozen=True)
class ComparePictures:
    """What the compare view shows for one image: the image, its reference, the difference, score and limit.

    Arrays are None when they cannot be shown (`reason` says why).  `difference` is the signed pull map blown
    up to the image's size: positive where the image is lighter than the reference (missing ink), negative
    where darker (extra ink); 0 in masked regions.
    """

    image_id: int
    plot_type: str
    run: int | None
    chunk: int | None
    image: np.ndarray | None  # (H, W, 3) uint8
    reference: np.ndarray | None  # (H, W, 3) uint8: the reference images' mean
    difference: np.ndarray | None  # (H, W) float32 pulls
    score: float | None
    limit: float | None
    flagged: bool
    reference_version: int | None
    reference_runs: list[int]
    reference_rule: str | None
    reason: str | None = None


# ---- paths and image decoding -----------------------------------------------------------------------------


def references_dir(images_dir: Path) -> Path:
    return Path(images_dir) / FOLDER


def artifact_path(images_dir: Path, plot_type: str, version: int) -> Path:
    return references_dir(images_dir) / plot_type / f"{version}.npz"


def read_rgb(path: str | Path) -> np.ndarray:
    """The stored image as (H, W, 3) uint8; OSError/ValueError when it cannot be read."""
    with PILImage.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def read_image(path: str | Path, *, colour: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """The stored image's grey levels (H, W) uint8 — the decoder's luma, what the score compares: a quarter
    of the time of colour pixels (bench/reference.py) — and, with `colour`, its (H, W, 3) uint8 pixels."""
    with PILImage.open(path) as image:
        if not colour:
            return scoring.grey_levels(image), None
        rgb = image.convert("RGB")
        return scoring.grey_levels(rgb), np.asarray(rgb, dtype=np.uint8)


def _mask_cells(session: Session, plot_type_id: int) -> tuple[int | None, np.ndarray | None]:
    """The plot type's current mask (id, and its cells on the score's grid, True = ignored)."""
    from hydra_assets.mask_versions import current_mask
    from hydra_assets.masks import mask_array

    row = current_mask(session, plot_type_id)
    if row is None:
        return None, None
    return row.id, (mask_array(*scoring.GRID, row.regions) if row.regions else None)  # [] : mask cleared


# ---- building a reference -----------------------------------------------------------------------------------


def _plot_type(session: Session, plot_type: str | PlotType) -> PlotType:
    if isinstance(plot_type, PlotType):
        return plot_type
    row = session.scalar(select(PlotType).where(PlotType.name == plot_type))
    if row is None:
        raise ReferenceError(f"unknown plot type {plot_type!r}")
    return row


def _bad_label_ids(session: Session, plot_type_id: int) -> set[int]:
    return set(session.scalars(select(Label.id).where(Label.plot_type_id == plot_type_id, Label.is_bad.is_(True))))


def reference_images(session: Session, plot_type_id: int, runs: Collection[int]) -> list[Image]:
    """The usable images of `runs` that may stand for "good": not labeled Bad by a person and never confirmed
    Bad by a classifier; at most `MAX_IMAGES`, spread evenly over the runs' chunks."""
    images = list(session.scalars(select(Image).where(
        Image.plot_type_id == plot_type_id, Image.run_number.in_(list(runs)), Image.status.in_(USABLE))
        .order_by(Image.run_number, Image.chunk, Image.id)))
    bad = _bad_label_ids(session, plot_type_id)
    confirmed_bad = set(session.scalars(select(Inference.image_id).where(
        Inference.plot_type_id == plot_type_id, Inference.run_number.in_(list(runs)),
        Inference.confirmed.is_(True), Inference.is_bad.is_(True))))
    good = [i for i in images if i.label_id not in bad and (i.label_id is not None or i.id not in confirmed_bad)]
    if len(good) > MAX_IMAGES:  # every image decoded at each new version: keep the hourly refresh bounded
        good = [good[k] for k in np.unique(np.linspace(0, len(good) - 1, MAX_IMAGES).round().astype(int))]
    return good


def _where(image: Image) -> str:
    return f"image {image.id} (run {image.run_number} chunk {image.chunk})"


def build_profile(images: Sequence[Image], *, quantile: float, mask: np.ndarray | None
                  ) -> tuple[ReferenceProfile, list[str]]:
    """Profile of the stored images; images of another size than most, or unreadable, excluded with a message."""
    decoded: list[tuple[Image, tuple[np.ndarray, np.ndarray | None]]] = []
    excluded: list[str] = []
    for image in images:
        try:
            grey, rgb = read_image(image.stored_path, colour=True)
            decoded.append((image, (grey, rgb)))
        except (OSError, ValueError) as error:
            excluded.append(f"{_where(image)}: unreadable ({type(error).__name__}: {str(error)[:120]})")
    sizes = Counter(grey.shape for _, (grey, _rgb) in decoded)
    if not sizes:
        raise ReferenceError("none of the reference images could be read" + (f": {excluded[0]}" if excluded else ""))
    size = sizes.most_common(1)[0][0]
    kept = []
    for image, (grey, rgb) in decoded:
        if grey.shape != size:
            excluded.append(f"{_where(image)}: {grey.shape[1]}x{grey.shape[0]} pixels, not {size[1]}x{size[0]} "
                            "like the other reference images")
        else:
            kept.append((grey, rgb))
    grids = np.stack([scoring.grey_grid(grey) for grey, _ in kept])
    mean_image = np.mean(np.stack([rgb for _, rgb in kept]), axis=0).round().astype(np.uint8)
    profile = scoring.build(grids, quantile=quantile, image_size=size, mask=mask, mean_image=mean_image)
    return profile, excluded


def _parse_runs(runs: Collection[int] | str) -> list[int]:
    if isinstance(runs, str):
        try:
            runs = [int(part) for part in runs.replace(" ", "").split(",") if part]
        except ValueError as error:
            raise ReferenceError(f"runs must be run numbers separated by commas, not {runs!r}") from error
    chosen = sorted({int(r) for r in runs})
    if not chosen:
        raise ReferenceError("choose at least one run")
    return chosen


def make_reference(session: Session, images_dir: Path, plot_type: str | PlotType, runs: Collection[int] | str, *,
                   rule: str, by: str, comment: str = "") -> ReferenceChange:
    """Build, save and activate a new reference version from `runs` (any rule); ReferenceError, with nothing
    written, when the runs hold no usable image of the plot type."""
    if rule not in RULES:
        raise ReferenceError(f"reference rule must be one of {RULES}, not {rule!r}")
    row = _plot_type(session, plot_type)
    chosen = _parse_runs(runs)
    images = reference_images(session, row.id, chosen)
    if not images:
        several = len(chosen) > 1
        raise ReferenceError(f"{row.name}: run{'s' if several else ''} {', '.join(map(str, chosen))} "
                             f"{'hold' if several else 'holds'} no usable image of this plot type (none stored, or "
                             "all labeled or confirmed Bad)")
    mask_id, mask = _mask_cells(session, row.id)
    profile, excluded = build_profile(images, quantile=row.reference_quantile, mask=mask)
    version = int(session.scalar(select(func.max(ReferenceSet.version)).where(
        ReferenceSet.plot_type_id == row.id)) or 0) + 1
    path = scoring.save(profile, artifact_path(images_dir, row.name, version))
    for old in session.scalars(select(ReferenceSet).where(ReferenceSet.plot_type_id == row.id,
                                                          ReferenceSet.active.is_(True))):
        old.active = False
    session.add(ReferenceSet(
        plot_type_id=row.id, version=version, runs=chosen, rule=rule, method=profile.method, chosen_by=by,
        chosen_at=utcnow(), comment=comment, n_images=profile.n_images, image_height=profile.image_height,
        image_width=profile.image_width, quantile=profile.quantile, score_limit=profile.limit, mask_id=mask_id,
        artifact_path=str(path), active=True))
    session.flush()
    return ReferenceChange(row.name, version, chosen, profile.n_images, profile.limit, excluded,
                           f"{row.name}: reference version {version} from run{'s' if len(chosen) > 1 else ''} "
                           f"{', '.join(map(str, chosen))} ({profile.n_images} images, limit "
                           f"{profile.limit:.2f} at quantile {profile.quantile:g})"
                           + (f"; {len(excluded)} excluded" if excluded else ""))


def choose_reference(session: Session, images_dir: Path, plot_type: str | PlotType, runs: Collection[int] | str,
                     *, by: str, comment: str = "") -> ReferenceChange:
    """An expert's reference: `runs` (the caller checked `edit_reference`).  The plot type's rule becomes
    "expert", so the schedule no longer replaces it."""
    change = make_reference(session, images_dir, plot_type, runs, rule="expert", by=by, comment=comment)
    _plot_type(session, plot_type).reference_rule = "expert"
    return change


def auto_runs(session: Session, plot_type_id: int, *, quiet: timedelta = AUTO_QUIET,
              limit: int = AUTO_RUNS) -> list[int]:
    """The newest runs that qualify under the auto rule (module docstring), newest first, at most `limit`."""
    bad = _bad_label_ids(session, plot_type_id)
    counts = session.execute(
        select(Image.run_number, func.count(Image.id)).where(Image.plot_type_id == plot_type_id,
                                                             Image.status.in_(USABLE), Image.run_number.is_not(None))
        .group_by(Image.run_number).order_by(Image.run_number.desc()).limit(AUTO_LOOKBACK)).all()
    cutoff = utcnow() - quiet
    chosen: list[int] = []
    for run, n in counts:
        if len(chosen) >= limit:
            break
        if n < AUTO_MIN_IMAGES:
            continue
        run_row = session.get(Run, run)
        if run_row is not None and run_row.ended_at is None and quiet and run_row.last_seen > cutoff:
            continue  # still being taken
        images = session.execute(select(Image.id, Image.label_id).where(
            Image.plot_type_id == plot_type_id, Image.run_number == run, Image.status.in_(USABLE))).all()
        if any(label in bad for _, label in images if label is not None):
            continue
        confirmed_good = set(session.scalars(select(Inference.image_id).where(
            Inference.plot_type_id == plot_type_id, Inference.run_number == run, Inference.status == "classified",
            Inference.confirmed.is_(True), Inference.is_bad.is_(False))))
        good = sum(1 for image_id, label in images if (label is not None and label not in bad)
                   or (label is None and image_id in confirmed_good))
        if good >= AUTO_GOOD_SHARE * len(images):
            chosen.append(int(run))
    return chosen


def active_reference(session: Session, plot_type_id: int) -> ReferenceSet | None:
    return session.scalar(select(ReferenceSet).where(ReferenceSet.plot_type_id == plot_type_id,
                                                     ReferenceSet.active.is_(True)))


def auto_reference(session: Session, images_dir: Path, plot_type: str | PlotType, *, by: str = "auto",
                   quiet: timedelta = AUTO_QUIET) -> ReferenceChange:
    """Follow the plot type's latest good runs: a new version when the qualifying runs, the mask or the plot
    type's reference quantile changed, otherwise nothing.  Sets the plot type's rule to "auto"."""
    row = _plot_type(session, plot_type)
    row.reference_rule = "auto"
    runs = sorted(auto_runs(session, row.id, quiet=quiet))
    current = active_reference(session, row.id)
    if not runs:
        return ReferenceChange(row.name, None, [], message=(
            f"{row.name}: no run qualifies for an automatic reference yet (at least {AUTO_MIN_IMAGES} images, "
            f"{AUTO_GOOD_SHARE:.0%} confirmed or labeled Good, none labeled Bad); the current reference "
            + (f"version {current.version} stays" if current else "stays none") + "; or choose one: hydra reference "
            f"set {row.name} --runs N"))
    mask_id, _ = _mask_cells(session, row.id)
    if (current is not None and sorted(current.runs) == runs and current.mask_id == mask_id
            and current.quantile == row.reference_quantile):
        return ReferenceChange(row.name, None, runs, current.n_images, current.score_limit,
                               message=f"{row.name}: reference version {current.version} (runs "
                                       f"{', '.join(map(str, runs))}) is already the latest good runs")
    return make_reference(session, images_dir, row, runs, rule="auto", by=by,
                          comment="latest good runs (auto rule)")


def refresh_references(session: Session, images_dir: Path) -> list[ReferenceChange]:
    """The schedule's work: every enabled plot type whose rule is "auto" follows its latest good runs.
    A plot type whose refresh fails is reported in its change's message; the others go on."""
    changes = []
    for row in session.scalars(select(PlotType).where(PlotType.enabled.is_(True), PlotType.reference_rule == "auto")
                               .order_by(PlotType.name)):
        try:  # a refusal is raised before anything is written (rule aside), so the others go on
            changes.append(auto_reference(session, images_dir, row))
        except ReferenceError as error:
            changes.append(ReferenceChange(row.name, None, [], message=f"{row.name}: {error}"))
    return changes


def reference_history(session: Session, plot_type: str | PlotType) -> list[ReferenceSet]:
    row = _plot_type(session, plot_type)
    return list(session.scalars(select(ReferenceSet).where(ReferenceSet.plot_type_id == row.id)
                                .order_by(ReferenceSet.version.desc())))


# ---- scoring ------------------------------------------------------------------------------------------------


def no_reference_reason(plot_type: str) -> str:
    return f"no reference yet; hydra reference set {plot_type} --runs N (or hydra reference auto {plot_type})"


@functools.lru_cache(maxsize=256)
def _load_cached(path: str, mtime_ns: int, size: int, with_image: bool) -> ReferenceProfile:
    """Profiles read once per process and file version (reading one costs ~2 ms: a chunk of 80 plot types
    would pay it 80 times); treat the result as read-only."""
    return scoring.load(Path(path), with_image=with_image)


def load_profile(session: Session, reference: ReferenceSet, *, with_image: bool = True) -> ReferenceProfile:
    """The saved profile of a reference version (`with_image`: with its mean image, for display); rebuilt
    from its runs' images (same rule) when the file is gone."""
    path = Path(reference.artifact_path) if reference.artifact_path else None
    if path is not None and path.is_file():
        stat = path.stat()
        return _load_cached(str(path), stat.st_mtime_ns, stat.st_size, with_image)
    images = reference_images(session, reference.plot_type_id, reference.runs)
    mask = None
    if reference.mask_id is not None:
        from hydra_assets.mask_versions import mask_regions
        from hydra_assets.masks import mask_array

        regions = mask_regions(session, reference.mask_id)
        mask = mask_array(*scoring.GRID, regions) if regions else None
    if not images:
        raise ReferenceError(f"reference version {reference.version}: its file {path} is gone and its runs hold "
                             "no usable image any more")
    profile, _ = build_profile(images, quantile=reference.quantile, mask=mask)
    profile.limit = float(reference.score_limit) if reference.score_limit is not None else profile.limit
    if path is not None:
        try:
            scoring.save(profile, path)
        except OSError as error:
            log.warning("could not save the rebuilt reference %s: %s", path, error)
    return profile


@dataclass(frozen=True)
class Scored:
    status: str  # scored | missing
    reason: str | None
    score: float | None
    flagged: bool
    grid: np.ndarray | None = None
    rgb: np.ndarray | None = None


def score_one(profile: ReferenceProfile | None, stored_path: str, *, no_reference: str = "no reference yet",
              colour: bool = False, handed: tuple[np.ndarray, tuple[int, int]] | None = None) -> Scored:
    """One stored image against a profile, or why it cannot be scored (`colour`: also keep its pixels).
    `handed` is the image's grid and (height, width) from the Feeder: nothing is decoded then."""
    if profile is None:
        return Scored("missing", no_reference, None, False)
    rgb = None
    if handed is None:
        try:
            grey, rgb = read_image(stored_path, colour=colour)
        except (OSError, ValueError) as error:
            return Scored("missing", f"unreadable image ({type(error).__name__}: {str(error)[:160]})", None, False)
        height, width = grey.shape
    else:
        height, width = handed[1]
    if (height, width) != (profile.image_height, profile.image_width):
        return Scored("missing", f"image of {width}x{height} pixels, the reference's are "
                                 f"{profile.image_width}x{profile.image_height}", None, False, rgb=rgb)
    grid = scoring.grey_grid(grey) if handed is None else handed[0]
    score = float(profile.scores(grid[None])[0])
    return Scored("scored", None, score, profile.flagged(score), grid, rgb)


def compute_scores(session: Session, images: Sequence[Image], grids: Mapping[str, np.ndarray] | None = None
                   ) -> list[dict]:
    """Score `images` against their plot types' active references: the `ReferenceScore` fields of each image
    that has no row for that version yet (nothing written; decoding happens here, except for the images
    whose grid the Feeder handed over: `grids`, by digest, of images of their stored height and width)."""
    grids = grids or {}
    import time

    by_type: dict[int, list[Image]] = {}
    for image in images:
        if image.plot_type_id is not None:
            by_type.setdefault(image.plot_type_id, []).append(image)
    rows: list[dict] = []
    for plot_type_id, group in by_type.items():
        plot_type = session.get(PlotType, plot_type_id)
        reference = active_reference(session, plot_type_id)
        version = reference.version if reference is not None else 0
        done = set(session.scalars(select(ReferenceScore.image_id).where(
            ReferenceScore.image_id.in_([i.id for i in group]), ReferenceScore.reference_version == version)))
        todo = [i for i in group if i.id not in done]
        if not todo:
            continue
        profile, why = None, no_reference_reason(plot_type.name if plot_type else str(plot_type_id))
        if reference is not None:
            try:
                profile = load_profile(session, reference, with_image=False)
            except (ReferenceError, OSError, ValueError) as error:
                why = f"reference version {reference.version} unusable: {error}"
        for image in todo:
            started = time.perf_counter()
            grid = grids.get(image.digest)
            handed = None if grid is None else (grid, (int(image.height), int(image.width)))
            result = score_one(profile, image.stored_path, no_reference=why, handed=handed)
            rows.append(dict(
                image_id=image.id, plot_type_id=plot_type_id, run_number=image.run_number or 0,
                chunk=image.chunk or 0, reference_id=None if reference is None else reference.id,
                reference_version=version, status=result.status, reason=result.reason, score=result.score,
                score_limit=None if profile is None else profile.limit, flagged=result.flagged,
                score_ms=round((time.perf_counter() - started) * 1000, 3), computed_at=utcnow()))
    return rows


@dataclass(frozen=True, slots=True)
class ScoreRow:
    """One reference score as `write_scores` inserted it: the row's fields (defaults as the table's), not an
    ORM object — building 200 of those cost as much as the INSERT itself."""

    image_id: int
    plot_type_id: int
    run_number: int
    chunk: int
    reference_id: int | None = None
    reference_version: int = 0
    status: str = "scored"
    reason: str | None = None
    score: float | None = None
    score_limit: float | None = None
    flagged: bool = False
    score_ms: float | None = None
    computed_at: datetime = field(default_factory=utcnow)


_SCORE_FIELDS = tuple(f.name for f in fields(ScoreRow))


def write_scores(session: Session, rows: Sequence[dict]) -> list[ScoreRow]:
    """Insert the rows that are still new, one per (image, reference version), in one INSERT for the chunk.

    A concurrent run may have written some first: its rows stay and ours are left out; one that commits between
    our read and our INSERT makes it fail on the unique key, and `score_run_in` runs the transaction again
    (`write_resolving_conflicts`), as the Feeder, Predict and Keeper do."""
    if not rows:
        return []
    existing = set(session.execute(select(ReferenceScore.image_id, ReferenceScore.reference_version).where(
        ReferenceScore.image_id.in_(sorted({r["image_id"] for r in rows})))).tuples())
    added: list[ScoreRow] = []
    for row in rows:
        key = (row["image_id"], row["reference_version"])
        if key not in existing:
            existing.add(key)  # the same image twice in `rows`: written once
            added.append(ScoreRow(**row))
    if added:
        session.execute(insert(ReferenceScore), [{name: getattr(r, name) for name in _SCORE_FIELDS} for r in added])
    return added


def score_images(session: Session, images: Sequence[Image]) -> list[ScoreRow]:
    """`compute_scores` and `write_scores` in one session (the command line, tests)."""
    return write_scores(session, compute_scores(session, images))


def _run_images(session: Session, run: int, digests: Collection[str] | None) -> list[Image]:
    if digests is not None and not digests:
        return []
    query = select(Image).where(Image.run_number == run, Image.status.in_(USABLE)).order_by(Image.id)
    if digests is not None:
        query = query.where(Image.digest.in_(list(set(digests))))
    return list(session.scalars(query))


def _summary(result: ScoreResult, images: int, rows: Sequence[ScoreRow]) -> ScoreResult:
    result.already = images - len(rows)
    for row in rows:
        result.chunks[(row.plot_type_id, row.chunk)] += 1
        if row.status == "scored":
            result.scored += 1
            result.flagged += int(row.flagged)
        else:
            result.missing += 1
            result.reasons[row.reason or "?"] += 1
    return result


def score_run(session: Session, run: int, digests: Collection[str] | None = None) -> ScoreResult:
    """Every usable image of run `run` (in scope) scored once against its reference, in one session."""
    import time

    started = time.perf_counter()
    images = _run_images(session, run, digests)
    result = _summary(ScoreResult(run=run), len(images), score_images(session, images))
    result.duration_ms = (time.perf_counter() - started) * 1000
    return result


def score_run_in(db: HydraDB, run: int, digests: Collection[str] | None = None, *,
                 config: HydraSettings | None = None) -> ScoreResult:
    """The pipeline step: `score_run`, with the images scored outside any write transaction and the rows
    written in a short one (run again when a concurrent run inserted a row first).  With `config`, the grids
    the Feeder kept are taken (and removed) first, so only images without one are decoded."""
    import time

    from hydra_assets.ingest.health import write_resolving_conflicts
    from hydra_assets.ingest.reference_grids import take_grids

    started = time.perf_counter()
    with db.read() as s:
        images = _run_images(s, run, digests)
        grids = {} if config is None else take_grids(config, {
            i.digest: (i.height, i.width) for i in images if i.height and i.width})
        rows = compute_scores(s, images, grids)
    added = write_resolving_conflicts(db, lambda s: write_scores(s, rows), what="reference scores")
    result = _summary(ScoreResult(run=run), len(images), added)
    handed = {i.id for i in images if i.digest in grids}
    result.handed_over = sum(1 for r in rows if r["image_id"] in handed)
    result.duration_ms = (time.perf_counter() - started) * 1000
    return result


# ---- the compare view -----------------------------------------------------------------------------------------


def compare_pictures(session: Session, image_id: int) -> ComparePictures:
    """The image, its plot type's active reference, the difference map, score and limit (H6's compare view).

    The score shown is the stored one for the active reference version when there is one, else computed now."""
    image = session.get(Image, image_id)
    if image is None:
        raise ReferenceError(f"no image {image_id}")
    plot_type = session.get(PlotType, image.plot_type_id) if image.plot_type_id is not None else None
    name = plot_type.name if plot_type else "?"
    reference = active_reference(session, image.plot_type_id) if image.plot_type_id is not None else None
    empty = dict(image_id=image.id, plot_type=name, run=image.run_number, chunk=image.chunk)
    if reference is None:
        rgb = None
        try:
            rgb = read_rgb(image.stored_path)
        except (OSError, ValueError):
            pass
        return ComparePictures(**empty, image=rgb, reference=None, difference=None, score=None, limit=None,
                               flagged=False, reference_version=None, reference_runs=[], reference_rule=None,
                               reason=no_reference_reason(name))
    about = dict(reference_version=reference.version, reference_runs=list(reference.runs),
                 reference_rule=reference.rule)
    try:
        profile = load_profile(session, reference)
    except (ReferenceError, OSError, ValueError) as error:
        return ComparePictures(**empty, image=None, reference=None, difference=None, score=None,
                               limit=reference.score_limit, flagged=False, **about,
                               reason=f"reference version {reference.version} unusable: {error}")
    result = score_one(profile, image.stored_path, colour=True)
    stored = session.scalar(select(ReferenceScore).where(ReferenceScore.image_id == image.id,
                                                         ReferenceScore.reference_version == reference.version))
    score = stored.score if stored is not None and stored.score is not None else result.score
    flagged = stored.flagged if stored is not None and stored.status == "scored" else result.flagged
    difference = None
    if result.grid is not None:
        difference = scoring.difference_map(profile, result.grid, (profile.image_height, profile.image_width))
    return ComparePictures(**empty, image=result.rgb, reference=profile.mean_image, difference=difference,
                           score=score, limit=profile.limit, flagged=flagged, **about, reason=result.reason)


__all__ = ["AUTO_GOOD_SHARE", "AUTO_MIN_IMAGES", "AUTO_QUIET", "AUTO_RUNS", "ComparePictures", "ReferenceChange",
           "ReferenceError", "ScoreResult", "ScoreRow", "active_reference", "artifact_path", "auto_reference", "auto_runs",
           "choose_reference", "compare_pictures", "load_profile", "make_reference", "reference_history",
           "reference_images", "refresh_references", "score_images", "score_one", "score_run", "score_run_in"]
