"""What a chunk costs on Celery workers against the single-machine default, on the real daemon.

    .venv/bin/python bench/distributed.py [--files 20] [--runs 5]

Both sides: Dagster's storage and the Hydra database on fresh MariaDB databases, the real `dagster-daemon`,
the same tiny constant model, `--runs` run numbers of `--files` files dropped one run at a time (each waits
for the previous to be classified; the first is a warm-up and not counted).
- in_process: the shipped single-machine set-up (in-process executor, warm predictor service);
- celery: HYDRA_EXECUTOR=celery and two `hydra worker` processes (their pool process is the warm one).
Prints, per side, the median run (RUN_START -> RUN_SUCCESS), the median time inside the steps, and the
orchestration per step = (run − steps) / steps: what handing each step to a worker costs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import pytest  # noqa: E402  (MonkeyPatch: the site's environment, undone at the end)

from tests.distributed_support import Worker, make_site  # noqa: E402
from tests.faults.fault_support import Daemon, all_kept, drop_many, runs_settled, wait_until  # noqa: E402


def run_figures(dagster_home: Path, skip: set[str]) -> list[tuple[float, float, int]]:
    """(run seconds, seconds inside steps, steps) of every successful run not in `skip`."""
    import dagster as dg

    figures = []
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        for run in instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS])):
            if run.run_id in skip:
                continue
            stats = instance.get_run_stats(run.run_id)
            steps = [s for s in instance.get_run_step_stats(run.run_id) if s.end_time and s.start_time]
            figures.append((stats.end_time - stats.start_time, sum(s.end_time - s.start_time for s in steps),
                            len(steps)))
    return figures


def side(executor: str, *, files: int, runs: int, mysql_server: str) -> dict[str, float]:
    monkeypatch = pytest.MonkeyPatch()
    root = Path(tempfile.mkdtemp(prefix=f"bench-distributed-{executor}-"))
    site = make_site(root, mysql_server, monkeypatch)
    workers: list[Worker] = []
    predictor = "inprocess" if executor == "celery" else "auto"
    monkeypatch.setenv("HYDRA_EXECUTOR", executor)
    monkeypatch.setenv("HYDRA_PREDICTOR", predictor)
    site.env.update(HYDRA_EXECUTOR=executor, HYDRA_PREDICTOR=predictor)
    daemon = Daemon(site.dagster_home, root / "daemon.log", env=site.env)
    daemon.env["HYDRA_PREDICTOR"] = predictor  # child_env() says inprocess; the single machine has a service
    try:
        if executor == "celery":
            import dagster as dg

            from hydra_assets.distributed import record_deployment_version

            with dg.DagsterInstance.from_config(str(site.dagster_home)) as instance:
                record_deployment_version(instance.run_storage)
            workers = [Worker(site, n).start() for n in (1, 2)]
            wait_until(lambda: all(w.ready() for w in workers), 180, every=0.5)
        daemon.start()
        from hydra_assets.db.engine import HydraDB

        db = HydraDB(site.env["HYDRA_DB_URL"])
        warm_up: set[str] = set()
        for number in range(runs):
            drop_many(site.incoming, files, runs=1, first_run=130000 + number, seed=number)
            wait_until(lambda n=number: all_kept(db, site.incoming, files * (n + 1)), 600, every=0.5)
            wait_until(lambda: runs_settled(site.dagster_home), 120, every=0.5)
            if number == 0:
                warm_up = {r[0] for r in _run_ids(site.dagster_home)}
        db.dispose()
        figures = run_figures(site.dagster_home, warm_up)
    finally:
        daemon.stop()
        for worker in workers:
            worker.stop()
        if executor != "celery":
            from hydra_assets.cli.up import stop_predictor
            from hydra_assets.settings import load_settings

            stop_predictor(load_settings(), grace=5.0)
        site.close()
        monkeypatch.undo()
    run_s = statistics.median(f[0] for f in figures)
    step_s = statistics.median(f[1] for f in figures)
    steps = statistics.median(f[2] for f in figures)
    return {"runs": len(figures), "run_s": run_s, "steps_s": step_s, "steps": steps,
            "per_step_s": (run_s - step_s) / steps}


def _run_ids(dagster_home: Path) -> list[tuple[str]]:
    import dagster as dg

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        return [(r.run_id,) for r in instance.get_runs()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=20, help="files per run number")
    parser.add_argument("--runs", type=int, default=5, help="run numbers (the first is a warm-up)")
    parser.add_argument("--mysql", default="mysql+pymysql://root@127.0.0.1:3306")
    args = parser.parse_args()
    started = time.monotonic()
    results = {name: side(name, files=args.files, runs=args.runs, mysql_server=args.mysql)
               for name in ("in_process", "celery")}
    print(f"\n{args.files} files per run, {args.runs - 1} runs counted per side ({time.monotonic() - started:.0f} s)")
    print(f"{'executor':<11} {'runs':>4} {'run p50 s':>9} {'in steps s':>10} {'steps':>5} {'orchestration/step s':>20}")
    for name, r in results.items():
        print(f"{name:<11} {r['runs']:>4} {r['run_s']:>9.2f} {r['steps_s']:>10.2f} {r['steps']:>5.0f} "
              f"{r['per_step_s']:>20.2f}")
    extra = results["celery"]["run_s"] - results["in_process"]["run_s"]
    print(f"celery - in_process: {extra:+.2f} s per run, "
          f"{extra / results['celery']['steps']:+.2f} s per step")


if __name__ == "__main__":
    main()
