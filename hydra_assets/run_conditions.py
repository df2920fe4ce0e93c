"""Run conditions (beam energy, target, trigger, run type, any key/value) imported from CSV, JSON or a URL.

What experiments keep in a Run Conditions Database reaches Hydra in the general form: rows of `run` plus any
keys.  Each row is merged into `runs.conditions` (a flat JSON object of key -> text, number or boolean, which
the Runs page shows and filters on); `start`/`end` times go to `runs.started_at`/`ended_at`.  A malformed
row or value is reported with its line (CSV) or item (JSON) and skipped, and the rest is imported.

Runs not seen yet are created (default): conditions often arrive before the first image of a run, and the
Runs page then shows the run with its conditions and no images.  `unknown="skip"` leaves them out and
lists them instead.
"""

from __future__ import annotations

import csv
import io
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hydra_assets.db.engine import HydraDB
from hydra_assets.db.models import Run, utcnow
from hydra_assets.ingest.health import write_resolving_conflicts

Scalar = str | int | float | bool
RUN_KEYS = ("run", "run_number", "runnumber")
START_KEYS = ("start", "started_at", "start_time", "run_start")
END_KEYS = ("end", "ended_at", "end_time", "run_end", "stop", "stop_time")
MAX_KEY, MAX_TEXT = 64, 500
MAX_BYTES = 50_000_000  # a conditions source larger than this is refused, not read into memory
BATCH = 1000  # runs per transaction
UNKNOWN = ("create", "skip")
INT_RE = re.compile(r"^[+-]?\d+$")


class RunConditionsError(ValueError):
    """The source as a whole cannot be read (missing file, URL that times out, not CSV or JSON)."""


@dataclass
class ConditionRow:
    """One run's conditions as read, with where it was found (for messages)."""

    where: str
    run: int
    conditions: dict[str, Scalar] = field(default_factory=dict)
    started_at: datetime | None = None
    ended_at: datetime | None = None


@dataclass
class ImportReport:
    """What an import did: runs updated, runs created (or skipped when unknown), and every problem by line."""

    source: str
    rows: int = 0
    updated: list[int] = field(default_factory=list)
    created: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{self.source}: {self.rows} row(s) read", f"{len(self.updated)} run(s) updated"]
        if self.created:
            parts.append(f"{len(self.created)} run(s) not seen yet created ({_runs(self.created)})")
        if self.skipped:
            parts.append(f"{len(self.skipped)} unknown run(s) skipped ({_runs(self.skipped)})")
        if self.problems:
            parts.append(f"{len(self.problems)} problem(s)")
        return ", ".join(parts)


def _runs(numbers: list[int], shown: int = 10) -> str:
    listed = ", ".join(str(n) for n in numbers[:shown])
    return listed + (f", … {len(numbers) - shown} more" if len(numbers) > shown else "")


# ---- reading a source -------------------------------------------------------------------------------


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def read_source(source: str, *, timeout: float = 10.0) -> tuple[str, str]:
    """(text, "csv" | "json") of a file or an http(s) URL answering JSON; RunConditionsError says why not."""
    if is_url(source):
        request = urllib.request.Request(source, headers={"Accept": "application/json",
                                                          "User-Agent": "hydra-dqm-run-conditions"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                data = response.read(MAX_BYTES + 1)
        except urllib.error.HTTPError as error:
            raise RunConditionsError(f"{source} answered HTTP {error.code} {error.reason}") from error
        except urllib.error.URLError as error:
            if isinstance(error.reason, TimeoutError):
                raise RunConditionsError(f"{source} gave no answer within {timeout:g} s") from error
            raise RunConditionsError(f"{source} unreachable: {error.reason}") from error
        except TimeoutError as error:
            raise RunConditionsError(f"{source} gave no answer within {timeout:g} s") from error
        except OSError as error:
            raise RunConditionsError(f"{source} unreachable: {error}") from error
        if len(data) > MAX_BYTES:
            raise RunConditionsError(f"{source} answered more than {MAX_BYTES // 1_000_000} MB")
        return data.decode("utf-8-sig", errors="replace"), "json"
    path = Path(source).expanduser()
    try:
        if path.stat().st_size > MAX_BYTES:
            raise RunConditionsError(f"{path} is larger than {MAX_BYTES // 1_000_000} MB")
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except FileNotFoundError as error:
        raise RunConditionsError(f"{path} does not exist") from error
    except IsADirectoryError as error:
        raise RunConditionsError(f"{path} is a folder, not a CSV or JSON file") from error
    except OSError as error:
        raise RunConditionsError(f"cannot read {path}: {error.strerror}") from error
    suffix = path.suffix.lower()
    if suffix in (".json", ".csv"):
        return text, suffix[1:]
    return text, "json" if text.lstrip()[:1] in ("[", "{") else "csv"


def parse(text: str, fmt: str) -> tuple[list[ConditionRow], list[str]]:
    """Rows and problems of a CSV or JSON text."""
    if fmt == "csv":
        return parse_csv(text)
    if fmt == "json":
        return parse_json(text)
    raise RunConditionsError(f"unknown format {fmt!r} (csv or json)")


def parse_csv(text: str) -> tuple[list[ConditionRow], list[str]]:
    """A header line naming `run` and any keys, then one run per line; empty cells set nothing."""
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise RunConditionsError("the CSV is empty: expected a header line with a 'run' column")
    try:
        dialect: Any = csv.Sniffer().sniff(lines[0], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    header = [h.strip() for h in next(reader)]
    if not any(h.lower() in RUN_KEYS for h in header):
        raise RunConditionsError(f"the CSV header has no 'run' column (it has: {', '.join(header)})")
    rows, problems = [], []
    for cells in reader:
        where = f"line {reader.line_num}"
        if not any(c.strip() for c in cells):
            continue
        if len(cells) > len(header):
            problems.append(f"{where}: {len(cells)} values for {len(header)} columns (row skipped)")
            continue
        record = {key: _csv_value(cell) for key, cell in zip(header, cells, strict=False) if cell.strip()}
        row = _row(where, record, problems)
        if row is not None:
            rows.append(row)
    return rows, problems


def _csv_value(cell: str) -> Scalar:
    text = cell.strip()
    if INT_RE.match(text):
        return int(text)
    try:
        number = float(text)
    except ValueError:
        return text
    return number if number == number and abs(number) != float("inf") else text  # NaN and inf stay text


def parse_json(text: str) -> tuple[list[ConditionRow], list[str]]:
    """A list of objects with `run`, {run: {…}}, or {"runs": [...]}."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise RunConditionsError(f"not valid JSON: {error.msg} at line {error.lineno} column {error.colno}") \
            from error
    if isinstance(data, dict) and isinstance(data.get("runs"), list):
        data = data["runs"]
    items: Iterable[tuple[str, Any]]
    if isinstance(data, list):
        items = ((f"item {i}", item) for i, item in enumerate(data, start=1))
    elif isinstance(data, dict):
        items = ((f"run {key}", {"run": key, **value} if isinstance(value, dict) else value)
                 for key, value in data.items())
    else:
        raise RunConditionsError("expected a list of runs, {run: {...}} or {\"runs\": [...]}")
    rows, problems = [], []
    for where, item in items:
        if not isinstance(item, dict):
            problems.append(f"{where}: not an object of run conditions (skipped)")
            continue
        row = _row(where, item, problems)
        if row is not None:
            rows.append(row)
    return rows, problems


def _row(where: str, record: dict[str, Any], problems: list[str]) -> ConditionRow | None:
    """One checked row; its bad values are reported and left out, a bad run number skips the row."""
    run_key = next((k for k in record if k.strip().lower() in RUN_KEYS), None)
    if run_key is None:
        problems.append(f"{where}: no run number (row skipped)")
        return None
    run = parse_run(record[run_key])
    if run is None:
        problems.append(f"{where}: run {record[run_key]!r} is not a run number (row skipped)")
        return None
    row = ConditionRow(where=where, run=run)
    for raw_key, value in record.items():
        if raw_key == run_key:
            continue
        key = str(raw_key).strip()
        lower = key.lower()
        if not key or len(key) > MAX_KEY:
            problems.append(f"{where}: run {run}: key {key[:80]!r} must have 1 to {MAX_KEY} characters (skipped)")
        elif value is None:
            continue
        elif lower in START_KEYS or lower in END_KEYS:
            moment = parse_time(value)
            if moment is None:
                problems.append(f"{where}: run {run}: {key} {value!r} is not a time (ISO 8601 or Unix seconds)")
            elif lower in START_KEYS:
                row.started_at = moment
            else:
                row.ended_at = moment
        elif isinstance(value, bool | int | float) and not (isinstance(value, float) and value != value):
            row.conditions[key] = value
        elif isinstance(value, str):
            if len(value) > MAX_TEXT:
                problems.append(f"{where}: run {run}: value of {key!r} is longer than {MAX_TEXT} characters (skipped)")
            else:
                row.conditions[key] = value.strip()
        else:
            problems.append(f"{where}: run {run}: value of {key!r} is not a single text, number or true/false "
                            "(skipped)")
    if row.started_at and row.ended_at and row.ended_at < row.started_at:
        problems.append(f"{where}: run {run}: ends ({row.ended_at:%Y-%m-%d %H:%M:%S}) before it starts "
                        f"({row.started_at:%Y-%m-%d %H:%M:%S}); times not imported")
        row.started_at = row.ended_at = None
    return row


def parse_run(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    if isinstance(value, str) and INT_RE.match(value.strip()) and int(value) >= 0:
        return int(value)
    return None


def parse_time(value: Any) -> datetime | None:
    """Naive UTC from ISO 8601 (a zone is converted, none means UTC) or Unix seconds (milliseconds too)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = value / 1000 if value > 1e11 else value
        try:
            return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if INT_RE.match(text):
        return parse_time(int(text))
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


# ---- storing -------------------------------------------------------------------------------------


def merge(session: Session, rows: list[ConditionRow], *, unknown: str = "create") -> dict[str, list[int]]:
    """Merge rows into their runs (new keys added, given keys replaced, the others kept); returns the runs
    updated, created and skipped."""
    numbers = {row.run for row in rows}
    runs = {run.number: run for run in session.scalars(select(Run).where(Run.number.in_(numbers)))}
    done: dict[str, list[int]] = {"updated": [], "created": [], "skipped": []}
    now = utcnow()
    for row in rows:
        run = runs.get(row.run)
        if run is None:
            if unknown == "skip":
                done["skipped"].append(row.run)
                continue
            first = row.started_at or now
            run = Run(number=row.run, first_seen=first, last_seen=first, image_count=0, conditions={})
            session.add(run)
            runs[row.run] = run
            done["created"].append(row.run)
        else:
            done["updated"].append(row.run)
        run.conditions = {**(run.conditions or {}), **row.conditions}  # a new dict: the JSON column is saved
        if row.started_at:
            run.started_at = row.started_at
        if row.ended_at:
            run.ended_at = row.ended_at
    session.flush()
    return done


def import_rows(db: HydraDB, rows: list[ConditionRow], report: ImportReport, *, unknown: str = "create") -> None:
    """Merge in transactions of `BATCH` runs; a run the pipeline creates at the same moment (its first image)
    makes that batch run again, finding the run."""
    if unknown not in UNKNOWN:
        raise RunConditionsError(f"unknown runs are 'create'd or 'skip'ped, not {unknown!r}")
    report.rows += len(rows)
    for start in range(0, len(rows), BATCH):
        batch = rows[start:start + BATCH]
        done = write_resolving_conflicts(db, lambda s, batch=batch: merge(s, batch, unknown=unknown),
                                         what="import run conditions")
        report.updated += done["updated"]
        report.created += done["created"]
        report.skipped += done["skipped"]
    created = set(report.created)  # a run listed twice is counted once; one created here is not "updated"
    report.created = list(dict.fromkeys(report.created))
    report.updated = [n for n in dict.fromkeys(report.updated) if n not in created]
    report.skipped = list(dict.fromkeys(report.skipped))


def import_conditions(db: HydraDB, source: str, *, unknown: str = "create", timeout: float = 10.0,
                      fmt: str | None = None) -> ImportReport:
    """Read a file or URL and merge its rows; raises RunConditionsError only when nothing can be read."""
    text, detected = read_source(source, timeout=timeout)
    rows, problems = parse(text, fmt or detected)
    report = ImportReport(source=source, problems=problems)
    import_rows(db, rows, report, unknown=unknown)
    return report


def file_signature(path: Path) -> dict[str, int] | None:
    """What the sensor compares between ticks: modification time and size (None when the file is missing)."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return {"mtime_ns": stat.st_mtime_ns, "size": stat.st_size}


def file_changed(cursor: str | None, signature: dict[str, int] | None, now_ns: int, min_age_s: float) -> bool:
    """Import when the file exists, differs from the last import, and has not been written for `min_age_s`."""
    if signature is None:
        return False
    if now_ns - signature["mtime_ns"] < min_age_s * 1e9:
        return False  # still being written: the next tick imports it whole
    try:
        last = json.loads(cursor) if cursor else None
    except json.JSONDecodeError:
        last = None
    return last != signature
