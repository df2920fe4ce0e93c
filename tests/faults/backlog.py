"""Fault 5 (script, run by hand) — backlog: the daemon is stopped while N files (default 10,000) arrive;
the real `dagster-daemon run` is then started.  Prints how long until everything is processed, every tick's
duration (none may reach Dagster's 60 s sensor timeout) and the counts that show nothing lost or doubled.

    .venv/bin/python tests/faults/backlog.py --files 10000 --runs 50
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=50, help="run numbers the files are spread over")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--keep", action="store_true", help="keep the temporary home")
    args = parser.parse_args()

    from fault_support import (
        Daemon,
        counts,
        drop_many,
        runs_by_status,
        runs_settled,
        scratch_home,
        sensor_ticks,
        wait_until,
    )

    home = scratch_home("hydra-backlog-")
    root, settings, db, dhome = home.root, home.settings, home.db, home.dagster

    started = time.monotonic()
    drop_many(settings.input_dir, args.files, runs=args.runs)
    print(f"{args.files} files dropped over {args.runs} run numbers in {time.monotonic() - started:.0f} s "
          "(daemon stopped)", flush=True)
    daemon = Daemon(dhome, root / "daemon.log").start()
    started = time.monotonic()
    try:
        def done() -> bool:
            c = counts(db, settings.input_dir)
            print(f"  t={time.monotonic() - started:5.0f}s left={c.files_left} registered={c.registered} "
                  f"inferences={c.inferences} decisions={c.keep_decisions} runs={runs_by_status(dhome)}", flush=True)
            return c.files_left == 0 and c.keep_decisions >= args.files and runs_settled(dhome)

        wait_until(done, args.timeout, every=15.0, alive=lambda: daemon.process.poll() is None)
    finally:
        daemon.stop()
    elapsed = time.monotonic() - started
    ticks = sensor_ticks(dhome)
    durations = sorted(t.end_timestamp - t.timestamp for t in ticks if t.end_timestamp)
    failed = [t for t in ticks if t.status.value == "FAILURE"]
    c = counts(db, settings.input_dir)
    print(f"\nprocessed {args.files} files in {elapsed:.0f} s ({args.files / elapsed:.1f} files/s)")
    print(f"counts: {c.as_dict()} duplicates={c.duplicates} runs={runs_by_status(dhome)}")
    if durations:
        print(f"ticks: {len(ticks)}, failed {len(failed)}, duration median {durations[len(durations) // 2]:.2f} s, "
              f"max {durations[-1]:.2f} s (limit 60 s)")
    ok = (c.files_left == 0 and c.registered == c.distinct_files == c.inferences == c.keep_decisions == args.files
          and not failed and (not durations or durations[-1] < 60))
    print("OK" if ok else "FAILED", f"(home: {root})" if args.keep else "")
    db.dispose()
    if not args.keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
