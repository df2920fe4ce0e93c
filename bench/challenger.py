"""What a challenger costs the live chunk job, and whether the Keeper (alarms) waits for it.

    .venv/bin/python bench/challenger.py                       # 6 chunks of 16 images, 128 px, compact models
    .venv/bin/python bench/challenger.py --chunks 10 --images 32

A fresh Hydra home in a temporary folder, one plot type with two compact models (random weights) at the
demo's 128x128 input: version 1 active, version 2 the challenger for the second half of the chunks.  Each
chunk is dropped in the incoming folder, seen by the sensor and run as the chunk job in this process (the
in-process executor, as shipped).  Printed per phase (median over chunks): time from the run's start to
the Keeper's end (what alarms wait for), the whole run, the challenger step, and the challenger's and the
active version's forward pass per image; what the step costs in a fresh process (as every Dagster run is),
with the challenger loaded there or scored by the warm predictor service; its cost without a challenger;
and how long the running comparison takes over many images.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PLOT = "BENCH_plot"
SIZE = (128, 128)


def png(seed: int) -> bytes:
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 255, (360, 480, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def step_times(instance, run_id: str) -> dict[str, tuple[float, float]]:  # type: ignore[no-untyped-def]
    """step key -> (start, end) timestamps from the run's event log."""
    starts, ends = {}, {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None:
            continue
        if event.event_type_value == "STEP_START":
            starts[event.step_key] = entry.timestamp
        elif event.event_type_value == "STEP_SUCCESS":
            ends[event.step_key] = entry.timestamp
    return {k: (starts[k], ends[k]) for k in ends}


def comparison_time(db, n: int) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    """Seconds `running_comparison` takes over `n` images (live + challenger rows, a third labeled), and its runs."""
    from sqlalchemy import insert, select

    from hydra_assets import catalog
    from hydra_assets.challenger import running_comparison
    from hydra_assets.db.models import Image, Inference, Label, Model, ShadowInference, utcnow

    name = "BENCH_scale"
    db.write(lambda s: catalog.add_plot_type(s, name, "Good,Bad", "Bad", input_size=SIZE))

    def models(s):  # type: ignore[no-untyped-def]
        pid = catalog.get_plot_type(s, name).id
        rows = [Model(plot_type_id=pid, mlflow_name=f"hydra-{name}", mlflow_version=str(v), model_uri="/none",
                      topology="compact", input_height=SIZE[0], input_width=SIZE[1], label_names=["Good", "Bad"],
                      active=v == 1, challenger=v == 2) for v in (1, 2)]
        s.add_all(rows)
        s.flush()
        good, bad = (s.scalar(select(Label.id).where(Label.plot_type_id == pid, Label.name == x)) for x in ("Good", "Bad"))
        return pid, rows[0].id, rows[1].id, good, bad

    pid, m1, m2, good, bad = db.write(models)
    now = utcnow()
    with db.engine.begin() as c:
        first = int(c.execute(select(Image.id).order_by(Image.id.desc()).limit(1)).scalar() or 0) + 1
        ids = range(first, first + n)
        where = [dict(plot_type_id=pid, run_number=5000 + k // 500, chunk=k % 500) for k in range(n)]
        c.execute(insert(Image), [dict(id=i, **w, digest=f"{i:064d}", file_name="x", stored_path="x", size_bytes=1,
                                       width=SIZE[1], height=SIZE[0],
                                       label_id=(bad if k % 7 == 0 else good) if k % 3 == 0 else None)
                                  for k, (i, w) in enumerate(zip(ids, where, strict=True))])
        c.execute(insert(Inference), [dict(image_id=i, **w, model_id=m1, model_key=f"hydra-{name}/1", status="classified",
                                           weights={}, top_label_id=good, top_weight=0.9, confirmed=True, is_bad=False,
                                           flagged=False, predict_ms=1.0, classified_at=now)
                                      for i, w in zip(ids, where, strict=True)])
        c.execute(insert(ShadowInference), [dict(image_id=i, **w, model_id=m2, model_key=f"hydra-{name}/2",
                                                 purpose="challenger", status="classified", weights={},
                                                 top_label_id=bad if k % 5 == 0 else good, top_weight=0.9,
                                                 confirmed=True, is_bad=k % 5 == 0, would_alarm=k % 5 == 0,
                                                 predict_ms=1.2, classified_at=now, dagster_run_id="")
                                            for k, (i, w) in enumerate(zip(ids, where, strict=True))])
    times = []
    for _ in range(3):
        started = time.perf_counter()
        with db.read() as s:
            report = running_comparison(s, name)
        times.append(time.perf_counter() - started)
    return statistics.median(times), len(report.runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=6, help="chunks per phase (without, then with a challenger)")
    parser.add_argument("--images", type=int, default=16, help="images per chunk")
    parser.add_argument("--comparison-images", type=int, default=100_000,
                        help="images of the running comparison's timing (0: skip)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="hydra-bench-challenger-"))
    os.environ["HYDRA_HOME"] = str(root)

    import dagster as dg
    from sqlalchemy import event, select

    from hydra_assets import catalog
    from hydra_assets.assets.challenger import CHALLENGER_ASSETS
    from hydra_assets.assets.flags import FLAG_ASSETS
    from hydra_assets.assets.ingest import INGEST_ASSETS
    from hydra_assets.assets.reference import REFERENCE_ASSETS
    from hydra_assets.challenger import challenger_chunk, set_challenger
    from hydra_assets.db.engine import HydraDB
    from hydra_assets.db.migrate import upgrade
    from hydra_assets.db.models import Inference, ShadowInference
    from hydra_assets.jobs.ingest import INGEST_CHUNK, ingest_chunk_job
    from hydra_assets.ml.active import register_local_model
    from hydra_assets.ml.registry import ensure_cli_user
    from hydra_assets.ml.topologies import build_model
    from hydra_assets.partitions import run_number
    from hydra_assets.resources.hydra import HydraResource
    from hydra_assets.resources.predictor import PredictorResource
    from hydra_assets.sensors.incoming import incoming_images
    from hydra_assets.settings import load_settings

    config = load_settings()
    config.ensure_folders()
    upgrade(config.db_url)
    db = HydraDB(config.db_url)
    db.write(lambda s: catalog.add_plot_type(s, PLOT, "Good,Bad", "Bad", collect_percent=0.0, input_size=SIZE))
    for version in (1, 2):
        path = root / f"model{version}.keras"
        build_model("compact", (*SIZE, 3), 2).save(path)
        register_local_model(db, PLOT, path, ["Good", "Bad"], activate=version == 1, input_size=SIZE)
    ensure_cli_user(db)
    resources = {"hydra": HydraResource(), "predictor": PredictorResource(mode="inprocess")}
    job = dg.Definitions(assets=[*INGEST_ASSETS, *REFERENCE_ASSETS, *FLAG_ASSETS, *CHALLENGER_ASSETS],
                         jobs=[ingest_chunk_job()], resources=resources).resolve_job_def(INGEST_CHUNK)
    instance = dg.DagsterInstance.ephemeral()
    cursor = None
    phases: dict[str, list[dict[str, float]]] = {"without a challenger": [], "with a challenger": []}
    chunk = 0
    for phase, chunks in phases.items():
        if phase == "with a challenger":
            set_challenger(db, config, PLOT, "2", "cli", sync_alias=False)
        for _ in range(args.chunks + 1):  # the first chunk of each phase warms up (model load, tracing)
            chunk += 1
            for k in range(args.images):
                name = f"{PLOT}-{1000 + chunk}-{k:04d}.png"
                staged = config.input_dir / f".{name}.tmp"
                staged.write_bytes(png(chunk * 1000 + k))
                stamp = time.time() - 30
                os.utime(staged, (stamp, stamp))
                os.replace(staged, config.input_dir / name)
            with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
                tick = incoming_images(context)
            cursor = tick.cursor
            for request in tick.run_requests or []:
                instance.add_dynamic_partitions(run_number.name, [request.partition_key])
                started = time.time()
                result = job.execute_in_process(partition_key=request.partition_key, run_config=request.run_config,
                                                tags=request.tags, instance=instance)
                ended = time.time()
                steps = step_times(instance, result.run_id)
                challenger = steps["challenger_inference"]
                chunks.append({"keep_done_s": steps["keep"][1] - started, "run_s": ended - started,
                               "challenger_s": challenger[1] - challenger[0],
                               "keep_before_challenger": float(steps["keep"][1] <= challenger[0])})
        chunks.pop(0)
    with db.read() as s:
        active_ms = [v for v in s.scalars(select(Inference.predict_ms)) if v is not None]
        shadow_ms = [v for v in s.scalars(select(ShadowInference.predict_ms)) if v is not None]
        shadow_rows = len(shadow_ms)

    print(f"{args.chunks} chunks of {args.images} images (480x360 PNG -> {SIZE[0]}x{SIZE[1]}) per phase, "
          "compact models, in-process executor; medians")
    for phase, chunks in phases.items():
        def med(key: str, chunks: list[dict[str, float]] = chunks) -> float:
            return statistics.median(c[key] for c in chunks)

        print(f"  {phase:<22} keep done after {med('keep_done_s'):6.3f} s · run {med('run_s'):6.3f} s · "
              f"challenger step {med('challenger_s') * 1000:7.1f} ms · keep ended before the challenger "
              f"started in {sum(c['keep_before_challenger'] for c in chunks):.0f}/{len(chunks)} runs")
    print(f"  forward pass per image: active {statistics.median(active_ms):.3f} ms, challenger "
          f"{statistics.median(shadow_ms):.3f} ms ({shadow_rows} shadow rows)")

    # A fresh process per chunk, as every Dagster run is: the challenger loaded in it (TensorFlow imported,
    # model loaded and traced every chunk), or scored by the warm predictor service as the asset does.
    # Hydra's modules are imported before the clock starts: the warm launcher's runs have them already.
    script = ("import sys, time; from hydra_assets.challenger import challenger_chunk; "
              "from hydra_assets.db.engine import HydraDB; from hydra_assets.settings import load_settings; "
              "from hydra_assets.ingest.predictor import ServiceClassifier; from hydra_assets.shadow import local_scorer; "
              "c = load_settings(); t = time.perf_counter(); "
              "s = ServiceClassifier(c).shadow_scorer if sys.argv[2] == 'service' else local_scorer; "
              "r = challenger_chunk(HydraDB(c.db_url), c, int(sys.argv[1]), None, scorer=s); "
              "print('RESULT', r.classified, sum(x.errors for x in r.counts.values()), (time.perf_counter() - t) * 1000, "
              "r.errors)")
    from hydra_assets.cli.up import stop_predictor
    from hydra_assets.ingest.predictor import ensure_service

    if ensure_service(config, wait_s=180) is None:
        sys.exit("the predictor service did not start; see <home>/run/predictor.log")
    fresh: dict[str, list[float]] = {"loaded in the run": [], "in the warm predictor service": []}
    run = 1002  # the first phase's runs: not classified by the challenger yet
    try:
        for where, times in fresh.items():
            for _ in range(max(1, min(3, args.chunks // 2))):  # both kinds within the first phase's runs
                done = subprocess.run([sys.executable, "-c", script, str(run),
                                       "service" if "service" in where else "local"], capture_output=True, text=True,
                                      check=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
                line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT"))
                classified, errors, ms = line.split()[1:4]
                assert int(classified) == args.images and int(errors) == 0, line
                times.append(float(ms))
                run += 1
    finally:
        stop_predictor(config)
    for where, times in fresh.items():
        print(f"  in a fresh process, the challenger {where}: {statistics.median(times):.0f} ms per chunk of "
              f"{args.images} images (median of {len(times)})")

    from hydra_assets.challenger import clear_challenger

    clear_challenger(db, config, PLOT, "cli", sync_alias=False)
    statements: list[str] = []
    event.listen(db.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    times = []
    for _ in range(50):
        t0 = time.perf_counter()
        challenger_chunk(db, config, 1001, None)
        times.append(time.perf_counter() - t0)
    print(f"  without any challenger the step's work is {len(statements) // 50} query, "
          f"{statistics.median(times) * 1000:.2f} ms (median of 50)")
    if args.comparison_images:
        seconds, runs = comparison_time(db, args.comparison_images)
        print(f"  the running comparison over {args.comparison_images:,} images ({runs} runs, SQLite): "
              f"{seconds:.2f} s (median of 3; the Library shares it for 30 s)")
    db.dispose()


if __name__ == "__main__":
    main()
