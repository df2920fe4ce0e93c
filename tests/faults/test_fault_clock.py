"""Fault 6 — clocks and mtimes: files with old or future modification times, and files moved in with their
mtimes preserved (`mv`, `rsync -t`) after the sensor has already ticked past them, are all ingested."""

from __future__ import annotations

import os
import shutil
import time

import dagster as dg
import pytest
from sqlalchemy import func, select
from test_ingest_support import PLOT, activate, home, model_files, png_bytes, run_request, tick  # noqa: F401

from hydra_assets.db.models import Image, Inference

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("home")]
DAY = 86_400.0


def place(folder, name, data, mtime):
    """Write `name` via a temporary name and set its mtime (what a writer with a wrong clock does)."""
    partial = folder / f".{name}.tmp"
    partial.write_bytes(data)
    os.utime(partial, (mtime, mtime))
    os.replace(partial, folder / name)


def drain(instance, cursor, *, ticks=6):
    """Tick and run every request until a tick requests nothing; returns the last cursor and the ticks."""
    for n in range(ticks):
        result = tick(instance, cursor)
        cursor = result.cursor
        if not result.run_requests:
            return cursor, n
        for request in result.run_requests:
            assert run_request(instance, request).success
    raise AssertionError("the sensor kept requesting runs")


def test_old_future_and_moved_in_files_are_all_ingested(home, sqlite_db, model_files, tmp_path):
    activate(sqlite_db, model_files["good"])
    instance = dg.DagsterInstance.ephemeral()
    now = time.time()
    names = {
        "ancient (1970)": (f"{PLOT}-100-0001.png", 1.0),
        "a year old": (f"{PLOT}-100-0002.png", now - 365 * DAY),
        "one hour in the future": (f"{PLOT}-100-0003.png", now + 3600),
        "a day in the future": (f"{PLOT}-100-0004.png", now + DAY),
        "year 2100": (f"{PLOT}-100-0005.png", 4_102_444_800.0),
    }
    for i, (name, mtime) in enumerate(names.values()):
        place(home.input_dir, name, png_bytes(i), mtime)
    cursor, _ = drain(instance, None)

    # After the sensor has ticked (its cursor is in place), files arrive by `mv` with old mtimes, older than
    # anything it has seen — an mtime high-water mark would skip them.
    staging = tmp_path / "staging"
    staging.mkdir()
    moved = []
    for i in range(3):
        name = f"{PLOT}-101-{i + 1:04d}.png"
        place(staging, name, png_bytes(100 + i), now - 30 * DAY - i)
        shutil.move(staging / name, home.input_dir / name)  # rename: mtime preserved
        moved.append(name)
    copied = f"{PLOT}-101-0009.png"  # `cp -p` / `rsync -t`: new inode, old mtime
    place(staging, "x.png", png_bytes(200), now - 7 * DAY)
    shutil.copy2(staging / "x.png", home.input_dir / copied)
    cursor, _ = drain(instance, cursor)

    leftovers = sorted(p.name for p in home.input_dir.iterdir())
    assert leftovers == [], f"files never ingested: {leftovers}"
    expected = {n for n, _ in names.values()} | set(moved) | {copied}
    with sqlite_db.read() as s:
        registered = set(s.scalars(select(Image.file_name).where(Image.status == "registered")))
        assert s.scalar(select(func.count()).select_from(Image).where(Image.status == "quarantined")) == 0
        assert s.scalar(select(func.count(Inference.id))) == len(expected)
    assert registered == expected


def test_future_mtime_does_not_wait_forever_even_without_a_trailer(tmp_path):
    """The age rule alone (a file whose end cannot prove it complete): a future mtime falls back to ctime."""
    import re

    from hydra_assets.ingest.scan import list_incoming, triage
    from hydra_assets.settings import DEFAULT_FILE_PATTERN

    place(tmp_path, f"{PLOT}-7-0001.png", b"not checked here", time.time() + 10 * DAY)
    (seen,) = list_incoming(tmp_path)
    now = time.time_ns()
    assert seen.age_s(now) >= 0
    later = now + 5 * 10**9  # the next tick, 5 s on
    sorted_out = triage([seen], now_ns=later, min_age_s=1.0, regex=re.compile(DEFAULT_FILE_PATTERN),
                        plot_types={PLOT: True}, complete=lambda _path: False)
    assert [c[0].name for c in sorted_out.candidates] == [seen.name] and sorted_out.waiting == 0
