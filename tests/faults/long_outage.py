"""Fault 3c (script, run by hand): a database outage longer than the steps wait for it.

The Hydra database (MariaDB) is reached through `RestartableProxy`, taken down for `--outage` seconds while
`HYDRA_DB_OUTAGE_SECONDS` is only `--budget`: every run caught by it fails, and so do Dagster's run retries.
Nobody helps afterwards: the sensor submits the chunks again (hydra_assets/ingest/resubmit.py, first after
60 s).  Prints when everything was done, the counts and how many resubmissions it took.

    .venv/bin/python tests/faults/long_outage.py --outage 45 --budget 3
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=60)
    parser.add_argument("--outage", type=float, default=45.0)
    parser.add_argument("--budget", type=float, default=3.0, help="HYDRA_DB_OUTAGE_SECONDS for the steps")
    args = parser.parse_args()
    os.environ["HYDRA_DB_OUTAGE_SECONDS"] = str(args.budget)
    from conftest import fresh_mysql_database
    from fault_support import (
        Daemon,
        RestartableProxy,
        all_kept,
        counts,
        drop_many,
        runs_by_status,
        scratch_home,
        wait_until,
    )

    server_url, drop_database = fresh_mysql_database("mysql+pymysql://root@127.0.0.1:3306")
    proxy = RestartableProxy().up()
    home = scratch_home("hydra-long-outage-", db_url=proxy.url(server_url), collect_percent=0.0)
    folder = home.settings.input_dir
    daemon = Daemon(home.dagster, home.root / "daemon.log", env={"HYDRA_DB_OUTAGE_SECONDS": str(args.budget)}).start()
    try:
        drop_many(folder, args.files, runs=3)
        wait_until(lambda: counts(home.db, folder).registered > 0, 240)
        print(f"before: {counts(home.db, folder).as_dict()}", flush=True)
        proxy.down()
        time.sleep(args.outage)
        proxy.up()
        print(f"database back after {args.outage:.0f} s; runs {runs_by_status(home.dagster)}", flush=True)

        took = wait_until(lambda: all_kept(home.db, folder, args.files), 900, every=2.0)
        c = counts(home.db, folder)
        resubmitted = daemon.tail(10**8).count("submitting the chunk of failed run")
        print(f"done {took:.0f} s after the database was back: {c.as_dict()} duplicates={c.duplicates} "
              f"runs={runs_by_status(home.dagster)} resubmissions={resubmitted}")
        return 0 if c.duplicates == 0 and c.keep_decisions == args.files else 1
    finally:
        daemon.stop()
        proxy.down()
        home.db.dispose()
        drop_database()


if __name__ == "__main__":
    sys.exit(main())
