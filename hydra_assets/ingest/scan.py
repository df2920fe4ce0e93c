"""The incoming folder as the file sensor sees it: which files are ready, which wait, which are refused,
and how ready files become run requests (one per run number per tick) with small configs and cursors.

Everything here is pure or only stats/reads files, so the grouping, caps and cursor rules are tested
without Dagster.  Limits come from Dagster's MySQL storage, where a run body and a tick (with its cursor)
are TEXT columns of 64 KiB: the files a run carries and the cursor each stay well below that.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hydra_assets.naming import BadFileName, ImageName, parse_image_name

# Writers put these on a file while it is being written, then rename it: not ours yet.
TEMP_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".swp", ".filepart", "~")
ABANDONED_AFTER_S = 3600.0  # a temporary file untouched this long is quarantined (nothing stays forever)
FINGERPRINT_CHARS = 10
MAX_PENDING = 3000  # 30 kB of cursor; beyond it the sensor waits for runs to drain the folder
MAX_FILES_CONFIG_CHARS = 40_000  # of a run's file list: the run body stays far below 64 KiB
TAG_LIMIT = 1000
# Dagster stores a sensor tick, its cursor and *every run request of the tick with its run config*, in one
# TEXT column on MySQL (job_ticks.tick_body, 64 KiB): measured, ~770 characters + ~510 and the tags per run
# request + the file reference and 4 per file.  A tick on MySQL storage stays below this.
MYSQL_TICK_CHARS = 60_000
RUN_REQUEST_CHARS = 700  # a run request without files and tags, with its run key and its run id twice


@dataclass(frozen=True)
class Seen:
    """One directory entry of the incoming folder, as stat saw it (symlinks are not followed)."""

    path: Path
    size: int
    mtime_ns: int
    ctime_ns: int
    kind: str  # file | symlink | other

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def fingerprint(self) -> str:
        """Short identity of this version of the file (name, size, mtime): cheap to compare every tick."""
        raw = f"{self.name}\0{self.size}\0{self.mtime_ns}".encode("utf-8", "surrogateescape")
        return hashlib.blake2b(raw, digest_size=FINGERPRINT_CHARS // 2).hexdigest()

    def age_s(self, now_ns: int) -> float:
        """Seconds since the last write; a future mtime (a writer's wrong clock) falls back to the ctime,
        which the kernel stamps with its own clock, so such a file is not left waiting forever."""
        changed = self.mtime_ns if self.mtime_ns <= now_ns else min(self.ctime_ns, now_ns)
        return (now_ns - changed) / 1e9


def list_incoming(folder: Path) -> list[Seen]:
    """Regular files, symlinks and other non-directories directly in `folder` (sub-folders are ignored)."""
    seen: list[Seen] = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return seen
    for entry in entries:
        try:
            info = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue  # taken by a Feeder between listing and stat
        if stat.S_ISDIR(info.st_mode):
            continue
        kind = "file" if stat.S_ISREG(info.st_mode) else "symlink" if stat.S_ISLNK(info.st_mode) else "other"
        seen.append(Seen(Path(entry.path), info.st_size, info.st_mtime_ns, info.st_ctime_ns, kind))
    return seen


def is_temporary(name: str) -> bool:
    return name.startswith(".") or name.lower().endswith(TEMP_SUFFIXES)


PNG_TRAILER = b"\x00\x00\x00\x00IEND\xaeB`\x82"
JPEG_TRAILER = b"\xff\xd9"


def has_complete_trailer(path: Path) -> bool:
    """True when the file already ends like a complete PNG (IEND) or JPEG (EOI): no longer being written.

    Lets a young file through without waiting for the minimum age (a tick, 5 s, for one that just missed
    it); a half-written or truncated file has no trailer and still waits.
    """
    suffix = path.suffix.lower()
    trailer = PNG_TRAILER if suffix == ".png" else JPEG_TRAILER if suffix in (".jpg", ".jpeg") else None
    if trailer is None:
        return False
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            if handle.tell() < len(trailer):
                return False
            handle.seek(-len(trailer), os.SEEK_END)
            return handle.read(len(trailer)) == trailer
    except OSError:
        return False


@dataclass(frozen=True)
class Rejected:
    seen: Seen
    reason: str
    name: ImageName | None = None  # when the name parsed but something else is wrong


@dataclass
class Triage:
    candidates: list[tuple[Seen, ImageName]] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    waiting: int = 0  # too young or still under a temporary name
    pending: int = 0  # requested already, their run has not taken them yet


def triage(
    seen: Iterable[Seen],
    *,
    now_ns: int,
    min_age_s: float,
    regex: re.Pattern[str],
    plot_types: Mapping[str, bool],
    pending: frozenset[str] = frozenset(),
    abandoned_after_s: float = ABANDONED_AFTER_S,
    complete: Callable[[Path], bool] = has_complete_trailer,
) -> Triage:
    """Sort entries into candidates, refusals (with the reason a person reads) and files to wait for.

    `plot_types` maps known plot type names to whether they are enabled.  A file younger than
    `min_age_s` (by mtime) may still be written to, unless it already ends like a complete image; a file
    under a temporary name is being written.
    """
    out = Triage()
    for item in seen:
        if item.fingerprint in pending:
            out.pending += 1
            continue
        age = item.age_s(now_ns)
        if is_temporary(item.name):
            if age < abandoned_after_s:
                out.waiting += 1
            else:
                out.rejected.append(Rejected(item, f"temporary file left unchanged for {age / 3600:.1f} h "
                                                   "(writers should rename it when complete)"))
            continue
        if age < min_age_s and not (item.kind == "file" and complete(item.path)):
            out.waiting += 1
            continue
        if item.kind == "symlink":
            out.rejected.append(Rejected(item, "symbolic links are not accepted (copy or move the file itself)"))
            continue
        if item.kind != "file":
            out.rejected.append(Rejected(item, "not a regular file"))
            continue
        try:
            parsed = parse_image_name(item.name, regex)
        except BadFileName as error:
            out.rejected.append(Rejected(item, f"bad file name: {error}"))
            continue
        enabled = plot_types.get(parsed.plot_type)
        if enabled is None:
            known = sorted(plot_types)
            hint = ", ".join(known[:20]) + (" …" if len(known) > 20 else "") if known else "none defined yet"
            out.rejected.append(Rejected(item, f"unknown plot type {parsed.plot_type!r} (known: {hint})", parsed))
        elif not enabled:
            out.rejected.append(Rejected(item, f"plot type {parsed.plot_type!r} is disabled", parsed))
        else:
            out.candidates.append((item, parsed))
    return out


def select_runs(
    candidates: Iterable[tuple[Seen, ImageName]], *, max_runs: int, max_files_per_run: int
) -> dict[int, list[tuple[Seen, ImageName]]]:
    """The files this tick requests: oldest run numbers first, at most `max_files_per_run` each.

    Files beyond the caps stay in the folder for the next tick (they are not hashed now).
    """
    by_run: dict[int, list[tuple[Seen, ImageName]]] = defaultdict(list)
    for item in candidates:
        by_run[item[1].run].append(item)
    order = sorted(by_run, key=lambda run: (min(s.mtime_ns for s, _ in by_run[run]), run))
    chosen: dict[int, list[tuple[Seen, ImageName]]] = {}
    for run in order[:max_runs]:
        files = sorted(by_run[run], key=lambda x: (x[0].mtime_ns, x[1].plot_type, x[1].chunk, x[0].name))
        chosen[run] = sorted(files[:max_files_per_run], key=lambda x: (x[1].plot_type, x[1].chunk, x[0].name))
    return chosen


# ---- what a run carries --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileRef:
    """A file a run must ingest: its name in the incoming folder and the digest the sensor saw."""

    digest: str
    name: str

    def encode(self) -> str:
        return f"{self.digest} {self.name}"

    @classmethod
    def decode(cls, text: str) -> "FileRef":
        digest, sep, name = text.partition(" ")
        if not sep or len(digest) != 64 or not name:
            raise ValueError(f"not a file reference: {text[:100]!r}")
        return cls(digest=digest, name=name)


@dataclass(frozen=True)
class ReadyFile:
    seen: Seen
    name: ImageName
    digest: str

    @property
    def ref(self) -> FileRef:
        return FileRef(self.digest, self.seen.name)


@dataclass(frozen=True)
class RunPlan:
    """One run request: one run number, the files of its chunks, keyed by their names and digests."""

    run: int
    files: tuple[ReadyFile, ...]

    @property
    def run_key(self) -> str:
        """Same names and bytes → same key (Dagster runs them once); a corrected file → a new key."""
        joined = "\n".join(sorted(f"{f.seen.name}\0{f.digest}" for f in self.files))
        return f"ingest-{self.run}-{hashlib.sha256(joined.encode('utf-8', 'surrogateescape')).hexdigest()[:24]}"

    @property
    def chunks(self) -> list[tuple[str, int]]:
        return sorted({(f.name.plot_type, f.name.chunk) for f in self.files})

    @property
    def tags(self) -> dict[str, str]:
        chunks = ",".join(f"{pt}:{chunk}" for pt, chunk in self.chunks)
        if len(chunks) > TAG_LIMIT:
            chunks = chunks[: TAG_LIMIT - 1] + "…"
        return {"hydra/run": str(self.run), "hydra/chunks": chunks, "hydra/files": str(len(self.files)),
                "hydra/source": "sensor"}

    @property
    def file_refs(self) -> list[str]:
        return [f.ref.encode() for f in self.files]


def plan_runs(
    ready: Mapping[int, list[ReadyFile]], *, max_config_chars: int = MAX_FILES_CONFIG_CHARS
) -> tuple[list[RunPlan], list[ReadyFile]]:
    """One plan per run number; files beyond the config budget are returned to wait for the next tick."""
    plans, deferred = [], []
    for run, files in ready.items():
        taken, size = [], 2
        for item in files:
            cost = len(item.ref.encode()) + 4  # quotes, comma, space in the serialised config
            if taken and size + cost > max_config_chars:
                deferred.append(item)
                continue
            taken.append(item)
            size += cost
        if taken:
            plans.append(RunPlan(run, tuple(taken)))
    return plans, deferred


def fit_tick(
    plans: Iterable[RunPlan], *, cursor_chars: int, max_chars: int = MYSQL_TICK_CHARS
) -> tuple[list[RunPlan], list[ReadyFile]]:
    """The plans that fit in one stored tick together with the cursor; files beyond wait for the next tick.

    Without it a burst on MySQL storage (several runs of 40 kB of file list each) failed the tick with
    `Data too long for column 'tick_body'` on every tick, and nothing was ingested."""
    used = 1_500 + cursor_chars  # the tick's own fields: ids, names, log key, the partitions request
    fitted: list[RunPlan] = []
    deferred: list[ReadyFile] = []
    for plan in plans:
        room = max_chars - used - RUN_REQUEST_CHARS - len(json.dumps(plan.tags))
        taken: list[ReadyFile] = []
        for item in plan.files:
            cost = len(item.ref.encode()) + 4 + FINGERPRINT_CHARS  # its config entry and its cursor entry
            if cost > room:
                break
            taken.append(item)
            room -= cost
        deferred += plan.files[len(taken):]
        if taken:
            fitted.append(plan if len(taken) == len(plan.files) else RunPlan(plan.run, tuple(taken)))
            used = max_chars - room
    return fitted, deferred


# ---- cursor --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SensorCursor:
    """Fingerprints of files requested but still in the folder: small (10 characters each) and bounded.

    An entry lives only while its file does, so the cursor never grows past the backlog.
    """

    pending: frozenset[str] = frozenset()

    def encode(self) -> str:
        return json.dumps({"v": 1, "pending": "".join(sorted(self.pending))}, separators=(",", ":"))

    @classmethod
    def decode(cls, text: str | None) -> "SensorCursor":
        """A cursor from an earlier tick; anything unreadable starts afresh (run keys still prevent reruns)."""
        if not text:
            return cls()
        try:
            data = json.loads(text)
            packed = str(data.get("pending", ""))
        except (ValueError, AttributeError):
            return cls()
        n = FINGERPRINT_CHARS
        return cls(frozenset(packed[i : i + n] for i in range(0, len(packed) - n + 1, n)))

    def advance(self, present: Iterable[str], requested: Iterable[str]) -> "SensorCursor":
        """Keep the entries whose files are still there, add the ones requested now."""
        still = self.pending & frozenset(present)
        return SensorCursor(still | frozenset(requested))
