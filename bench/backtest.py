"""Backtest over 10,000 stored images: time, Dagster runs, and the same result when rerun (issue 15).

A scratch Hydra home gets N tiny stored images (32x32 PNG, bulk-inserted) over R runs of one plot type, a
tenth of them labeled by a hidden rule, and two small compact models fitted briefly on the labeled
images: the "active" one (a tenth of the labels, one epoch) and a candidate (all of them, three epochs).  The backtest then runs exactly as `hydra model backtest T V --runs A-B
--wait` does: one Dagster run of `backtest_model` per run-number partition, in this process, against the
home's Dagster instance.  Neither version has live inferences here, so both are classified in shadow
(2 x N classifications).  Then:
- the same backtest's partitions are executed again: no new shadow row;
- a second backtest of the same version and runs: no new shadow row, the same report;
- with --daemon, a third version through a Dagster daemon started on the scratch home (`hydra model backtest`
  without --wait: an asset backfill the daemon runs, one run per run number); the active side is reused.

    .venv/bin/python bench/backtest.py [--images 10000] [--runs 50] [--save bench/results/backtest-DATE.txt]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sqlalchemy import select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PLOT = "BENCH_backtest"
SIZE = (32, 32)
FIRST_RUN = 5000


def png(pixels: np.ndarray) -> bytes:
    from PIL import Image as PILImage

    out = io.BytesIO()
    PILImage.fromarray(pixels).save(out, format="PNG", compress_level=1)
    return out.getvalue()


def tiny_model(path: Path, seed: int, x: np.ndarray, y: np.ndarray, epochs: int) -> Path:
    """A compact model fitted briefly on labeled images (the two versions differ in data and epochs)."""
    import keras

    from hydra_assets.ml.topologies import build_model

    keras.utils.set_random_seed(seed)
    model = build_model("compact", (*SIZE, 3), 2)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(x.astype(np.float32) / 255.0, y, epochs=epochs, batch_size=32, verbose=0)
    model.save(path)
    return path


def build_home(work: Path, n_images: int, n_runs: int, seed: int):  # type: ignore[no-untyped-def]
    """A scratch home with the images, labels and both model versions; returns (settings, db, active, candidate)."""
    from sqlalchemy import insert

    from hydra_assets import catalog
    from hydra_assets.db.engine import HydraDB
    from hydra_assets.db.models import Image
    from hydra_assets.home import initialise
    from hydra_assets.ml.active import register_local_model
    from hydra_assets.ml.registry import ensure_cli_user
    from hydra_assets.settings import load_settings

    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    config = load_settings(home=work, db_url=f"sqlite:///{work / 'hydra.db'}", images_dir=work / "images",
                           kept_dir=work / "kept", gradcam_dir=work / "gradcam", input_dir=work / "incoming",
                           models_dir=work / "models", mlflow_tracking_uri=f"sqlite:///{work / 'mlflow.db'}",
                           mlflow_artifact_root=work / "mlartifacts", dagster_home=work / "dagster")
    initialise(config)  # folders, schema, roles, and the Dagster home's dagster.yaml as `hydra init` writes it
    db = HydraDB(config.db_url)
    ensure_cli_user(db)
    db.write(lambda s: catalog.add_plot_type(s, PLOT, "Good,Bad", "Bad", collect_percent=0.0, input_size=SIZE))
    rng = np.random.default_rng(seed)
    per_run = n_images // n_runs
    with db.read() as s:
        plot = catalog.get_plot_type(s, PLOT)
        label_ids = {lab.name: lab.id for lab in catalog.labels_of(s, plot)}
        plot_id = plot.id
    rows, train_x, train_y = [], [], []
    for run in range(FIRST_RUN, FIRST_RUN + n_runs):
        folder = config.images_dir / PLOT / str(run)
        folder.mkdir(parents=True, exist_ok=True)
        for chunk in range(1, per_run + 1):
            bright = rng.random() < 0.3  # the hidden truth: bright plots are Bad
            base = rng.integers(120, 255) if bright else rng.integers(0, 120)
            pixels = np.clip(rng.normal(base, 30, (*SIZE, 3)), 0, 255).astype(np.uint8)
            data = png(pixels)
            path = folder / f"{chunk:05d}.png"
            path.write_bytes(data)
            labeled = rng.random() < 0.1
            if labeled:
                train_x.append(pixels)
                train_y.append(int(bright))
            rows.append(dict(plot_type_id=plot_id, run_number=run, chunk=chunk,
                             digest=hashlib.sha256(data).hexdigest(), file_name=path.name, stored_path=str(path),
                             size_bytes=len(data), width=SIZE[1], height=SIZE[0], status="registered",
                             label_id=label_ids["Bad" if bright else "Good"] if labeled else None))
    db.write(lambda s: s.execute(insert(Image), rows))
    models = work / "model-files"
    models.mkdir()
    x, y = np.stack(train_x), np.array(train_y)
    few = slice(0, max(len(y) // 10, 8))  # the active version saw a tenth of the labels, one epoch
    active = register_local_model(db, PLOT, tiny_model(models / "active.keras", seed, x[few], y[few], 1),
                                  ["Good", "Bad"], input_size=SIZE, created_by="bench")
    candidate = register_local_model(db, PLOT, tiny_model(models / "candidate.keras", seed + 1, x, y, 3),
                                     ["Good", "Bad"], activate=False, input_size=SIZE, created_by="bench")
    third = register_local_model(db, PLOT, tiny_model(models / "third.keras", seed + 2, x, y, 2), ["Good", "Bad"],
                                 activate=False, input_size=SIZE, created_by="bench")
    return config, db, active, candidate, third, len(rows)


def shadow_rows(db) -> int:  # type: ignore[no-untyped-def]
    from sqlalchemy import func, select

    from hydra_assets.db.models import ShadowInference

    with db.read() as s:
        return int(s.scalar(select(func.count(ShadowInference.id))))


def _ours(home: Path) -> list[int]:
    """Processes started for this scratch home (their environment names it): the daemon and its workers."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                if f"HYDRA_HOME={home}".encode() in (proc / "environ").read_bytes().split(b"\0"):
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def through_daemon(config, db, version, runs: str, say, timeout: float = 1200.0) -> None:  # type: ignore[no-untyped-def]
    """`hydra model backtest` (no --wait) with a Dagster daemon running: an asset backfill, one run per run."""
    import dagster as dg
    from dagster import RunsFilter

    from hydra_assets.db.models import Backtest
    from hydra_assets.jobs.backtest import daemon_running

    env = {k: v for k, v in os.environ.items() if not k.startswith("HYDRA_") and k not in ("DAGSTER_HOME",
                                                                                          "MLFLOW_TRACKING_URI")}
    env.update(DAGSTER_HOME=str(config.dagster_home), HYDRA_HOME=str(config.home), PYTHONUNBUFFERED="1")
    venv = Path(sys.executable).parent
    log = (config.home / "daemon.log").open("w")
    daemon = subprocess.Popen([str(venv / "dagster-daemon"), "run", "-m", "hydra_assets.definitions"],
                              cwd=config.home, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    instance = dg.DagsterInstance.from_config(str(config.dagster_home))
    try:
        deadline = time.monotonic() + 180
        while not daemon_running(instance):
            if time.monotonic() > deadline or daemon.poll() is not None:
                say(f"the Dagster daemon did not start (see {config.home / 'daemon.log'})")
                return
            time.sleep(2)
        t0 = time.perf_counter()
        done = subprocess.run([str(venv / "hydra"), "model", "backtest", PLOT, version.mlflow_version, "--runs", runs],
                              env=env, capture_output=True, text=True, timeout=300)
        said = [line for line in done.stdout.splitlines() if "backfill" in line]
        say(f"through the daemon: {said[0] if said else done.stdout.strip() or done.stderr.strip()}")
        with db.read() as s:
            backtest_id = s.scalar(select(Backtest.id).where(Backtest.candidate_model_id == version.id)
                                   .order_by(Backtest.id.desc()))
        status = "requested"
        deadline = time.monotonic() + timeout
        while status not in ("done", "failed") and time.monotonic() < deadline:
            time.sleep(2)
            with db.read() as s:
                row = s.get(Backtest, backtest_id)
                status, backfill_id, n_images = row.status, row.dagster_backfill_id, row.n_images
        seconds = time.perf_counter() - t0
        deadline = time.monotonic() + 120  # the last run wrote the report; let the runs and the backfill end
        while backfill_id and time.monotonic() < deadline:
            backfill = instance.get_backfill(backfill_id)
            dagster_runs = instance.get_runs(RunsFilter(tags={"dagster/backfill": backfill_id}))
            if backfill and backfill.status.value != "REQUESTED" and all(r.is_finished for r in dagster_runs):
                break
            time.sleep(2)
        backfill = instance.get_backfill(backfill_id) if backfill_id else None
        dagster_runs = instance.get_runs(RunsFilter(tags={"dagster/backfill": backfill_id})) if backfill_id else []
        ok = sum(r.status == dg.DagsterRunStatus.SUCCESS for r in dagster_runs)
        records = instance.get_run_records(RunsFilter(tags={"dagster/backfill": backfill_id})) if backfill_id else []
        took = sorted(r.end_time - r.start_time for r in records if r.start_time and r.end_time)
        say(f"through the daemon: backtest {backtest_id} of {version.key} over {n_images} images {status} "
            f"{seconds:.1f} s after asking; Dagster backfill {backfill_id} "
            f"({backfill.status.value if backfill else '?'}): {len(dagster_runs)} runs, {ok} succeeded, "
            f"each {took[len(took) // 2] if took else 0:.1f} s (median) from start to end")
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
        for pid in _ours(config.home):  # workers the daemon's launcher started in their own sessions
            os.kill(pid, signal.SIGTERM)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "hydra-bench-backtest")
    parser.add_argument("--save", type=Path, default=None, help="Also write the printed figures to this file.")
    parser.add_argument("--daemon", action="store_true",
                        help="Also backtest a third version through a Dagster daemon started on the scratch home: "
                             "`hydra model backtest` adds the asset backfill, the daemon runs it.")
    args = parser.parse_args()

    import dagster as dg
    from dagster import RunsFilter

    from hydra_assets.backtest import describe_backtest, report_lines, request_backtest
    from hydra_assets.db.models import Backtest
    from hydra_assets.jobs.backtest import TAG, run_in_process

    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    say(f"bench/backtest.py --images {args.images} --runs {args.runs} seed {args.seed}, "
        f"{time.strftime('%Y-%m-%d %H:%M')} UTC")
    started = time.perf_counter()
    config, db, active, candidate, third, n = build_home(args.work, args.images, args.runs, args.seed)
    say(f"scratch home {args.work}: {n} stored images ({SIZE[0]}x{SIZE[1]} PNG) in {args.runs} runs, "
        f"active {active.key}, candidate {candidate.key} (compact, fitted briefly); built in "
        f"{time.perf_counter() - started:.1f} s")
    runs = f"{FIRST_RUN}-{FIRST_RUN + args.runs - 1}"
    instance = dg.DagsterInstance.from_config(str(config.dagster_home))

    def backtest(label: str) -> tuple[int, dict, float, int]:
        request = request_backtest(db, config, PLOT, candidate.mlflow_version, runs, "cli")
        before = shadow_rows(db)
        t0 = time.perf_counter()
        result = run_in_process(instance, config, request.id, request.runs)
        seconds = time.perf_counter() - t0
        dagster_runs = instance.get_runs_count(RunsFilter(tags={TAG: str(request.id)}))
        with db.read() as s:
            shown = describe_backtest(s, s.get(Backtest, request.id))
        new = shadow_rows(db) - before
        say(f"{label}: backtest {request.id} over {request.n_images} images: {seconds:.1f} s "
            f"({1000 * seconds / request.n_images:.2f} ms per image), {dagster_runs} Dagster runs of backtest_model "
            f"(tag {TAG}={request.id}, {len(result.failed)} failed), status {shown['status']}, "
            f"{new} new shadow rows")
        return request.id, shown["report"], seconds, new

    first_id, first, first_s, first_new = backtest("first backtest")
    for line in report_lines(first)[:3] + report_lines(first)[-3:]:
        say("    " + line)

    t0 = time.perf_counter()
    request_runs = sorted({r["run"] for r in first["per_run"]})
    before = shadow_rows(db)
    rerun = run_in_process(instance, config, first_id, request_runs)
    say(f"the same backtest's {len(rerun.run_ids)} partitions executed again: {time.perf_counter() - t0:.1f} s, "
        f"{shadow_rows(db) - before} new shadow rows")

    second_id, second, second_s, second_new = backtest("second backtest, same version and runs")
    same = {**first, "backtest_id": 0} == {**second, "backtest_id": 0}
    say(f"reports of backtests {first_id} and {second_id} identical (but for their id): {same}; "
        f"new shadow rows {second_new}")
    say(f"figures: {n}-image backtest {first_s:.1f} s with {2 * n} classifications (candidate + active, "
        f"no live inferences here), rerun {second_s:.1f} s, idempotent: {same and second_new == 0}")
    if args.daemon:
        through_daemon(config, db, third, runs, say)
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
