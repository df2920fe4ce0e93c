"""Fault 3b (script, run by hand — it stops the shared MariaDB server, so never in CI): the Hydra database on
MariaDB, the real daemon ingesting; the server is shut down mid-run for `--outage` seconds and started again.
Prints how long after the restart every file was processed, and the counts (nothing lost, nothing doubled).

    .venv/bin/python tests/faults/mariadb_restart.py --files 400 --outage 20

The server is always started again on exit (start-stop-daemon --start --oknodo … /usr/sbin/mariadbd).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
START = ["start-stop-daemon", "--start", "--oknodo", "--background", "--exec", "/usr/sbin/mariadbd"]
STOP = ["mariadb-admin", "-uroot", "shutdown"]


def server_up() -> bool:
    return subprocess.run(["mariadb-admin", "-uroot", "ping"], capture_output=True).returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=400)
    parser.add_argument("--outage", type=float, default=20.0)
    parser.add_argument("--predictor", default="inprocess", choices=("inprocess", "auto"),
                        help="auto: the warm predictor service, as in production")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from conftest import fresh_mysql_database

    url, drop_database = fresh_mysql_database("mysql+pymysql://root@127.0.0.1:3306")
    from fault_support import Daemon, all_kept, counts, drop_many, runs_by_status, scratch_home, wait_until

    home = scratch_home("hydra-mariadb-restart-", db_url=url, collect_percent=0.0, predictor=args.predictor)
    root, settings, db = home.root, home.settings, home.db
    daemon = Daemon(home.dagster, root / "daemon.log", env={"HYDRA_PREDICTOR": args.predictor}).start()
    try:
        drop_many(settings.input_dir, args.files, runs=max(2, args.files // 100))
        wait_until(lambda: counts(db, settings.input_dir).registered > 0, 120)
        print(f"first images registered; shutting MariaDB down for {args.outage:.0f} s", flush=True)
        subprocess.run(STOP, check=True)
        time.sleep(args.outage)
        subprocess.run(START, check=True)
        wait_until(server_up, 60)
        restarted = time.monotonic()
        print("MariaDB is back", flush=True)

        try:
            took = wait_until(lambda: all_kept(db, settings.input_dir, args.files), 600, every=2.0)
            print(f"recovered {took:.0f} s after the restart")
        except TimeoutError:
            print("NOT recovered within 600 s")
        c = counts(db, settings.input_dir)
        print(f"counts: {c.as_dict()} duplicates={c.duplicates} runs={runs_by_status(daemon.home)} "
              f"({time.monotonic() - restarted:.0f} s after restart)")
        retried = daemon.tail(10**8).count("STEP_UP_FOR_RETRY")
        print(f"steps run again while the database was away: {retried}")
        return 0 if c.files_left == 0 and c.duplicates == 0 and c.keep_decisions == args.files else 1
    finally:
        daemon.stop()
        from hydra_assets.cli.up import stop_predictor

        stop_predictor(settings)  # this temporary home's service, if --predictor auto started one
        if not server_up():
            subprocess.run(START, check=False)
            wait_until(server_up, 60)
        db.dispose()
        drop_database()


if __name__ == "__main__":
    sys.exit(main())
