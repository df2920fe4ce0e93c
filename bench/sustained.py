"""Sustained load: 5x the Hall B rate — a set of 81 images (one chunk of every plot type) every minute
instead of every 3-5 minutes — into the real `dagster-daemon run` for 30 minutes.  Prints, every minute,
the backlog (files waiting in the incoming folder, runs queued) and the resident memory of the daemon's
process tree (daemon, code server, run workers, predictor), then the slopes of both over the second half.

    .venv/bin/python bench/sustained.py                 # 30 min, 81 images/min, 9 plot types x 9 chunks
    .venv/bin/python bench/sustained.py --minutes 5     # a quick look

For a CMS-like rate (e.g. 200 images/s of 480x360 PNGs over 46 plot types) with the backlog's slope and
p50/p95 file -> classified: `bench/ingest.py --parts rate --rate 200 --minutes 10`.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "faults"), str(REPO / "tests")]


def tree_rss_mb(pgid: int) -> float:
    """Resident memory of every process in the process group (the daemon was started in its own session)."""
    total = 0
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:  # field 5 of stat: pgrp
                total += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")  # field 24: rss pages
        except (OSError, ValueError, IndexError):
            continue
    return total / 2**20


def pid_rss_mb(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[21]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope (per minute) of (minute, value) points."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((x - mx) ** 2 for x, _ in points) or 1.0
    return sum((x - mx) * (y - my) for x, y in points) / den


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--per-minute", type=int, default=81, help="images per set, one set per minute")
    parser.add_argument("--plot-types", type=int, default=9)
    args = parser.parse_args()

    from fault_support import Daemon, counts, runs_by_status, scratch_home
    from test_ingest_support import drop, png_bytes

    names = [f"PT{i:02d}" for i in range(args.plot_types)]
    # the warm predictor service, as in production
    home = scratch_home("hydra-sustained-", plot_types=tuple(names), predictor=os.environ.get("HYDRA_PREDICTOR", "auto"))
    root, settings, db = home.root, home.settings, home.db
    daemon = Daemon(home.dagster, root / "daemon.log",
                    env={"HYDRA_PREDICTOR": os.environ["HYDRA_PREDICTOR"]}).start()
    stop = threading.Event()
    dropped = [0]

    def feeder() -> None:
        run, chunk = 130000, 0
        per_type = max(1, args.per_minute // len(names))
        while not stop.is_set():
            minute_started = time.monotonic()
            for name in names:
                for _ in range(per_type):
                    chunk += 1
                    drop(settings.input_dir, f"{name}-{run}-{chunk:04d}.png", png_bytes(chunk, size=(64, 48)), age=0)
                    dropped[0] += 1
            if chunk >= 900:
                run, chunk = run + 1, 0
            stop.wait(max(0.0, 60.0 - (time.monotonic() - minute_started)))

    thread = threading.Thread(target=feeder, daemon=True)
    started = time.monotonic()
    thread.start()
    samples: list[tuple[float, int, int, float]] = []
    print(" min  dropped  processed  backlog  queued  rss_mb", flush=True)
    try:
        while time.monotonic() - started < args.minutes * 60:
            time.sleep(60 - (time.monotonic() - started) % 60)
            minute = (time.monotonic() - started) / 60
            c = counts(db, settings.input_dir)
            runs = runs_by_status(daemon.home)
            queued = runs.get("QUEUED", 0) + runs.get("STARTED", 0) + runs.get("STARTING", 0)
            from hydra_assets.cli.up import predictor_pids

            rss = tree_rss_mb(daemon.pid) + sum(pid_rss_mb(pid) for pid in predictor_pids(settings))
            samples.append((minute, c.files_left, queued, rss))
            print(f"{minute:4.0f} {dropped[0]:8d} {c.keep_decisions:10d} {c.files_left:8d} {queued:7d} {rss:7.0f}",
                  flush=True)
    finally:
        stop.set()
        daemon.stop()
        from hydra_assets.cli.up import stop_predictor

        stop_predictor(settings)  # the predictor service of this temporary home only

    half = [s for s in samples if s[0] >= args.minutes / 2]
    c = counts(db, settings.input_dir)
    print(f"\ndropped {dropped[0]}, processed {c.keep_decisions}, duplicates {c.duplicates}, "
          f"failed runs {runs_by_status(daemon.home).get('FAILURE', 0)}")
    print(f"second half: backlog slope {slope([(m, b) for m, b, _, _ in half]):+.1f} files/min, "
          f"memory slope {slope([(m, r) for m, _, _, r in half]):+.1f} MB/min, "
          f"max backlog {max((b for _, b, _, _ in samples), default=0)} files")
    print(f"home: {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
