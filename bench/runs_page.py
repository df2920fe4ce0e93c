"""Runs page benchmark: p50/p95 of the Runs page's reads at 100,000 runs on MariaDB (target p95 <= 100 ms).

    .venv/bin/python bench/runs_page.py                       # builds hydra_bench_runs once (minutes), then times
    .venv/bin/python bench/runs_page.py --runs 20000 --database hydra_bench_runs_small --repeat 20
    .venv/bin/python bench/runs_page.py --rebuild              # drop and build the database again

The database: `--runs` runs with conditions (target, beam energy, run type, trigger), 10 plot groups in 3
systems, each run flagged per group over 1-3 chunk ranges (5 % of runs Bad somewhere, 8 % Medium) and per
system; every run but the newest 300 signed off (a whole-run confirm per group, as a coordinator's daily
round leaves them), some overridden.  Bulk inserts; reused when it already holds the runs.

Every timed call is what the page calls when it searches: `HydraStore.runs_page` (a page of 50 runs and the
standing flags of those runs), `runs_count` (run ranges only, capped at 10,000) and `look_back_start` (flag
filters search the newest 2,000 runs unless "Run from" is given), a fresh session per call, the cache that
sessions share emptied first.  Also timed: one cell's details, and the Run page's flags strip.  "cpu ms" is
this process's CPU time per call (Python and the driver; the rest of the wall time is MariaDB and waiting
for a core on a shared machine).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import func, insert, select, text

from hydra_assets import catalog
from hydra_assets.db.engine import HydraDB
from hydra_assets.db.migrate import upgrade
from hydra_assets.db.models import FlagSignoff, Run, RunFlag, utcnow
from hydra_assets.settings import load_settings
from panel_app.config import PagesConfig
from panel_app.store import SHARED, HydraStore
from panel_app.views_data import RunsFilter

TARGET_MS = 100.0
SYSTEMS = {"Tracking": ["CDC", "FDC", "TRD"], "Calorimetry": ["BCAL", "FCAL", "CCAL"],
           "PID": ["TOF", "DIRC", "SC", "TAGGER"]}
UNSIGNED_NEWEST = 300
BATCH = 20_000


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def build(db: HydraDB, runs: int, seed: int = 16) -> None:
    """Users, plot groups and `runs` runs with flags and sign-offs, inserted in batches."""
    rng = random.Random(seed)

    def catalogue(s) -> None:  # type: ignore[no-untyped-def]
        catalog.ensure_roles(s)
        catalog.add_user(s, "coord", role="coordinator")
        for system, groups in SYSTEMS.items():
            for group in groups:
                catalog.add_plot_type(s, f"{group}_hits", ["Good", "Bad"], ["Bad"], groups=[group], super_group=system)

    db.write(catalogue)
    now = utcnow().replace(microsecond=0)
    first_run = 100_000
    run_rows, flag_rows, signoff_rows = [], [], []

    def flush(final: bool = False) -> None:
        with db.engine.begin() as connection:
            for table, rows in ((Run, run_rows), (RunFlag, flag_rows), (FlagSignoff, signoff_rows)):
                if rows and (final or len(rows) >= BATCH):
                    connection.execute(insert(table), rows)
                    rows.clear()

    for n in range(runs):
        number = first_run + n
        started = now - timedelta(minutes=20 * (runs - n))
        kind = rng.choices(["production", "calibration", "cosmics"], [0.85, 0.1, 0.05])[0]
        run_rows.append(dict(number=number, first_seen=started, last_seen=started + timedelta(minutes=18),
                             started_at=started, ended_at=started + timedelta(minutes=19),
                             conditions={"target": rng.choice(["LH2", "LD2", "Be", "C12"]),
                                         "beam_energy": rng.choice([11.6, 11.6, 11.6, 8.5, 5.7]),
                                         "run_type": kind, "trigger": rng.choice(["main", "ps", "random"])},
                             image_count=800, chunk_count=80, alarm_count=rng.choice([0, 0, 0, 1, 2])))
        computed_at = started + timedelta(minutes=25)
        worst_of: dict[str, str] = {}
        for system, groups in SYSTEMS.items():
            worst = "Good"
            for group in groups:
                roll = rng.random()
                if roll < 0.005:  # 5 % of runs have one Bad group, 8 % a Medium one (10 groups)
                    cut = rng.randrange(10, 70)
                    ranges = [(0, cut - 1, "Good"), (cut, 79, "Bad")]
                elif roll < 0.013:
                    ranges = [(0, 39, "Good"), (40, 59, "Medium"), (60, 79, "Good")]
                else:
                    ranges = [(0, 79, "Good")]
                for first, last, flag in ranges:
                    flag_rows.append(dict(run_number=number, scope="group", group_name=group, first_chunk=first,
                                          last_chunk=last, flag=flag, computed_at=computed_at,
                                          reasons=[] if flag == "Good" else [
                                              {"plot_type": f"{group}_hits", "flag": flag,
                                               "chunks": [[first, last]], "text": "bench"}]))
                    worst = {"Good": worst, "Medium": "Medium" if worst == "Good" else worst, "Bad": "Bad"}[flag]
                if n < runs - UNSIGNED_NEWEST:
                    override = ranges[-1][2] == "Bad" and rng.random() < 0.2
                    signoff_rows.append(dict(
                        run_number=number, scope="group", group_name=group, first_chunk=None, last_chunk=None,
                        action="override" if override else "confirm", previous_flag=ranges[-1][2],
                        flag="Medium" if override else max((r[2] for r in ranges), key=["Good", "Medium", "Bad"].index),
                        comment="bench", user_name="coord", signed_at=computed_at + timedelta(hours=8)))
            worst_of[system] = worst
        for system, worst in worst_of.items():
            flag_rows.append(dict(run_number=number, scope="super_group", group_name=system, first_chunk=0,
                                  last_chunk=79, flag=worst, computed_at=computed_at, reasons=[]))
        flush()
        if n and n % 20_000 == 0:
            print(f"  {n:,} runs inserted", flush=True)
    flush(final=True)


def prepare(server: str, database: str, runs: int, rebuild: bool) -> str:
    import pymysql

    connection = pymysql.connect(host="127.0.0.1", port=3306, user="root", autocommit=True)
    with connection.cursor() as cursor:
        if rebuild:
            cursor.execute(f"DROP DATABASE IF EXISTS `{database}`")
        cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    connection.close()
    url = f"{server}/{database}?charset=utf8mb4"
    upgrade(url)
    db = HydraDB(url)
    with db.read() as s:
        present = s.scalar(select(func.count()).select_from(Run)) or 0
    if present != runs:
        if present:
            db.dispose()
            return prepare(server, database, runs, True)
        print(f"building {database}: {runs:,} runs (bulk inserts) ...", flush=True)
        started = time.perf_counter()
        build(db, runs)
        with db.engine.begin() as connection:
            for table in ("runs", "run_flags", "flag_signoffs"):
                connection.execute(text(f"ANALYZE TABLE {table}"))
        print(f"built in {time.perf_counter() - started:.0f} s", flush=True)
    db.dispose()
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default="mysql+pymysql://root@127.0.0.1:3306")
    parser.add_argument("--database", default="hydra_bench_runs")
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()

    url = prepare(args.server, args.database, args.runs, args.rebuild)
    db = HydraDB(url)
    store = HydraStore(db, PagesConfig(settings=load_settings(db_url=url), sync_mlflow_alias=False), user="coord")
    with db.read() as s:
        counts = {t: s.scalar(text(f"SELECT COUNT(*) FROM {t}")) for t in ("runs", "run_flags", "flag_signoffs")}
        newest = s.scalar(select(func.max(Run.number)))
    print(f"database {args.database}: " + ", ".join(f"{n:,} {t}" for t, n in counts.items()))
    rng = random.Random(1)

    def search(make: Callable[[], RunsFilter], *, page: Callable[[], int] = lambda: 0) -> Callable[[], Any]:
        def call() -> Any:
            SHARED.clear()
            f = make()
            rows, _more = store.runs_page(f, limit=50, offset=page() * 50)
            store.runs_count(f, cap=10_000)
            store.look_back_start(f)
            return rows
        return call

    groups = [g for gs in SYSTEMS.values() for g in gs]
    cases: list[tuple[str, Callable[[], Any]]] = [
        ("first page (50 runs x 13 flag columns + count)", search(lambda: RunsFilter())),
        ("page 21 (after 20 x Next: runs below the 1,000th)", search(lambda: RunsFilter(run_max=newest - 1000))),
        ("run range (a week of runs)", search(lambda: RunsFilter(run_min=newest - 600, run_max=newest - 100))),
        ("flag Bad in one group", search(lambda: RunsFilter(flag="Bad", group=rng.choice(groups)))),
        ("flag Bad in any group", search(lambda: RunsFilter(flag="Bad"))),
        ("flag Medium in a system", search(lambda: RunsFilter(flag="Medium", scope="super_group",
                                                              group=rng.choice(list(SYSTEMS))))),
        ("condition run_type=calibration", search(lambda: RunsFilter(condition_key="run_type",
                                                                     condition_value="calibration"))),
        ("condition beam_energy=8.5 and target", search(lambda: RunsFilter(
            condition_key="beam_energy", condition_value="8.5"))),
        ("only runs needing sign-off", search(lambda: RunsFilter(needs_signoff=True))),
        ("flag Bad in one group, Run from 20,000 back", search(lambda: RunsFilter(
            flag="Bad", group=rng.choice(groups), run_min=newest - 20_000))),
        ("one cell's details", lambda: (SHARED.clear(), store.flag_cell(newest - rng.randrange(1000), "group",
                                                                        rng.choice(groups)))[1]),
        ("Run page flags strip (live run)", lambda: (SHARED.clear(), store.run_flags(newest))[1]),
    ]
    failed = []
    load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
    print(f"load average at start: {load} (on {len(__import__('os').sched_getaffinity(0))} cores)")
    print(f"{'read':48} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'cpu ms':>7}  rows")
    for name, call in cases:
        result = call()  # warm
        times, cpu = [], []
        for _ in range(args.repeat):
            started, used = time.perf_counter(), time.process_time()
            result = call()
            times.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - used) * 1000)
        p95 = percentile(times, 95)
        size = len(result) if hasattr(result, "__len__") else "-"
        print(f"{name:48} {statistics.median(times):8.1f} {p95:8.1f} {max(times):8.1f} {statistics.median(cpu):7.1f}"
              f"  {size}"
              f"{'' if p95 <= TARGET_MS else '  over target'}", flush=True)
        if p95 > TARGET_MS:
            failed.append(name)
    print(f"target p95 <= {TARGET_MS:.0f} ms: " + ("met by every read" if not failed else f"missed by {failed}"))
    db.dispose()


if __name__ == "__main__":
    main()
