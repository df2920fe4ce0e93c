# Long module: one script per benchmark; its six parts share the home, image, process and timing helpers.
"""Ingestion benchmark: latency from file landed to classified, pipeline/model throughput, drain times.

    .venv/bin/python bench/ingest.py                 # all three parts, printing their figures
    .venv/bin/python bench/ingest.py --parts latency --chunks 24 --variant shipped
    .venv/bin/python bench/ingest.py --parts latency --chunks 8 --variant all   # compare set-ups
    .venv/bin/python bench/ingest.py --parts ratio --ratio-topologies compact,inceptionv3 --ratio-images 32
    .venv/bin/python bench/ingest.py --parts rate --rate 200 --minutes 10       # CMS-like sustained load

(a) latency: a fresh Hydra home, `dagster dev` (webserver, daemon, code server) with the repository's
    dagster.yaml, the sensor running; chunks of the six demo plot types (480x360 PNGs from
    `hydra simulate`'s renderer, compact models at 128x128) are written under a temporary name and renamed
    into the incoming folder every few seconds.  Latency = inference row's `classified_at` − rename time;
    the breakdown per chunk comes from Dagster's run and event records and Hydra's stage timings.
(b) throughput ratio: the chunk job (dg.materialize, in this process, model warm) on N images vs the bare
    Keras model on the same N preprocessed images, in the same process.
(c) drain: with the daemon running, a Hall-B-like chunk (81 plot types x 1 image) and a burst of 1,000
    images of one run, timed from the last rename to the last inference row.
(d) handoff: what Predict pays for a chunk's model inputs when it decodes the stored images again, takes
    the inputs the Feeder kept on disk, or takes them from memory; and what keeping them costs the Feeder.
(e) profile (printed with ratio too): the whole chunk job on N images, per stage, per run and per image.
(f) rate: R images/s into the running daemon for M minutes: backlog per minute, slope, p50/p95 latency.

Everything runs in a temporary folder; processes started here are stopped by their ids at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEMO_SIZE = (128, 128)

# Dagster set-ups compared by --variant: changes to the repository's dagster.yaml and environment.
VARIANTS: dict[str, dict] = {
    "shipped": {},  # dagster.yaml as in the repository
    "default-launcher": {"drop": ["run_launcher"]},  # a spawned interpreter per run
    "queue-defaults": {"coordinator": {}},  # QueuedRunCoordinator defaults: 5 s, no threads
    "no-queue": {"replace": {"run_coordinator": {"module": "dagster._core.run_coordinator",
                                                 "class": "DefaultRunCoordinator"}}},  # sensor daemon launches
    "multiprocess": {"env": {"HYDRA_EXECUTOR": "multiprocess"}},  # a process per step
    "no-predictor-service": {"env": {"HYDRA_PREDICTOR": "inprocess"}},  # TensorFlow + model in every run
}


def variant_yaml(variant: str) -> str:
    import yaml

    spec = VARIANTS[variant]
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    for key in spec.get("drop", []):
        config.pop(key, None)
    if "coordinator" in spec:
        config["run_coordinator"]["config"] = spec["coordinator"]
    config.update(spec.get("replace", {}))
    return yaml.safe_dump(config)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = (len(ordered) - 1) * q
    lo, hi = int(index), min(int(index) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (index - lo)


def epoch(moment: datetime) -> float:
    return moment.replace(tzinfo=UTC).timestamp()


# ---- images -----------------------------------------------------------------------------------------------


class ImagePool:
    """Realistic plots rendered once; each drop gets unique bytes via a PNG text chunk (same pixels)."""

    def __init__(self, variants: int = 3) -> None:
        from hydra_assets.simulate.experiment import PLOT_TYPE_NAMES, generate_image

        self.names = list(PLOT_TYPE_NAMES)
        self.pngs: list[bytes] = []
        for i, name in enumerate(self.names):
            for v in range(variants):
                label = "Bad" if v == variants - 1 else None
                try:
                    data, _ = generate_image(name, run=1, chunk=v, label=label, seed=1000 * i + v)
                except Exception:  # a plot type without a "Bad" failure mode
                    data, _ = generate_image(name, run=1, chunk=v, seed=1000 * i + v)
                self.pngs.append(data)
        self.counter = 0

    def unique(self, index: int) -> bytes:
        self.counter += 1
        data = self.pngs[index % len(self.pngs)]
        text = b"Comment\0bench " + str(self.counter).encode()
        chunk = struct.pack(">I", len(text)) + b"tEXt" + text + struct.pack(">I", zlib.crc32(b"tEXt" + text))
        return data[:-12] + chunk + data[-12:]  # before IEND


def write_atomically(folder: Path, name: str, data: bytes) -> float:
    """Write under a temporary name, rename; returns the rename time."""
    temporary = folder / f".{name}.bench.tmp"
    temporary.write_bytes(data)
    os.replace(temporary, folder / name)
    return time.time()


# ---- a Hydra home --------------------------------------------------------------------------------------------


def make_home(root: Path, plot_types: list[str], *, topology: str = "compact", size=DEMO_SIZE, env=None):
    """Initialise a home with `plot_types`, each with an (untrained) active model of `topology`."""
    os.environ["HYDRA_HOME"] = str(root)
    for key in ("HYDRA_DB_URL", "DAGSTER_HOME", "HYDRA_INPUT_DIR", "MLFLOW_TRACKING_URI"):
        os.environ.pop(key, None)
    os.environ.update(env or {})
    import numpy as np

    from hydra_assets import catalog
    from hydra_assets.db.engine import HydraDB
    from hydra_assets.home import initialise
    from hydra_assets.ml.active import register_local_model
    from hydra_assets.ml.topologies import build_model
    from hydra_assets.settings import load_settings

    config = load_settings()
    initialise(config)
    db = HydraDB(config.db_url)
    model_path = root / f"{topology}.keras"
    if not model_path.exists():
        model = build_model(topology, (*size, 3), 2)
        # Untrained, but leaning Good like a trained model on a healthy detector (most plots Good, few
        # Bad with GradCAM): the bias shifts the softmax, the convolutions still do all their work.
        logits = model.get_layer("logits")
        kernel, bias = logits.get_weights()
        logits.set_weights([kernel, bias + np.array([2.5, 0.0], dtype=bias.dtype)])
        model.save(model_path)
    for name in plot_types:
        db.write(lambda s, n=name: catalog.add_plot_type(s, n, "Good,Bad", "Bad", collect_percent=5.0,
                                                         topology=topology, input_size=size))
        register_local_model(db, name, model_path, ["Good", "Bad"], topology=topology, input_size=size)
    return config, db


def add_plot_types(config, db, names: list[str], topology: str = "compact", size=DEMO_SIZE) -> None:
    from hydra_assets import catalog
    from hydra_assets.ml.active import register_local_model

    model_path = config.home / f"{topology}.keras"
    for name in names:
        db.write(lambda s, n=name: catalog.add_plot_type(s, n, "Good,Bad", "Bad", collect_percent=5.0,
                                                         topology=topology, input_size=size))
        register_local_model(db, name, model_path, ["Good", "Bad"], topology=topology, input_size=size)


# ---- dagster dev -----------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def dagster_dev(config, variant: str) -> Iterator[subprocess.Popen]:
    """`dagster dev` on the home's DAGSTER_HOME with the variant's dagster.yaml; stopped by its process group."""
    spec = VARIANTS[variant]
    dagster_home = config.dagster_home
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text(variant_yaml(variant))
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "HYDRA_HOME": str(config.home), **spec.get("env", {})}
    out = (config.home / f"dagster-dev-{variant}.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "dagster", "dev", "-m", "hydra_assets.definitions", "-p", str(free_port()),
         "-h", "127.0.0.1"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        out.close()


def stop_predictor(config) -> None:
    """Stop every predictor service this home started (one per code version: colleagues' commits during a
    run change it), by the pids their log names and only if their command line names this home."""
    import re

    log_path = config.home / "run" / "predictor.log"
    pids = {int(p) for p in re.findall(r"pid (\d+) ready", log_path.read_text())} if log_path.exists() else set()
    for pid in sorted(pids):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "hydra_assets.ingest.predictor" in cmdline and str(config.home) in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
                log(f"stopped predictor service pid {pid}")


def wait_for_sensor(db, timeout: float = 240.0) -> float:
    from hydra_assets.db.models import Heartbeat

    started = time.time()
    while time.time() - started < timeout:
        with db.read() as s:
            beat = s.get(Heartbeat, "sensor")
            if beat is not None and epoch(beat.beat_at) > started:
                return time.time() - started
        time.sleep(0.5)
    raise RuntimeError("the sensor never ticked; see the dagster dev log in the bench home")


def wait_classified(db, names: set[str], run: int, timeout: float) -> dict[str, float]:
    """File name -> time its inference row was first seen (polled every 0.1 s), once all of `names` have one."""
    from sqlalchemy import select

    from hydra_assets.db.models import Image, Inference

    deadline = time.time() + timeout
    found: dict[str, float] = {}
    while time.time() < deadline:
        with db.read() as s:
            rows = s.execute(select(Image.file_name, Inference.classified_at).join(Inference, Inference.image_id == Image.id)
                             .where(Image.run_number == run, Image.file_name.in_(list(names - set(found)))))
            now = time.time()  # when the row is visible to a reader, not when it was stamped
            for name, _when in rows:
                found.setdefault(name, now)
        if len(found) == len(names):
            return found
        time.sleep(0.1)
    raise TimeoutError(f"{len(names) - len(found)} of {len(names)} images of run {run} not classified in {timeout:.0f} s")


# ---- (a) latency -------------------------------------------------------------------------------------------------


@dataclass
class ChunkTiming:
    chunk: int
    landed: float
    classified: dict[str, float]
    parts: dict[str, float] = field(default_factory=dict)

    @property
    def image_latencies(self) -> list[float]:
        return [t - self.landed for t in self.classified.values()]


def dagster_breakdown(instance, run: int, chunk: int, landed: float, classified: float) -> dict[str, float]:
    """Where the time between landing and classification went, from Dagster's records for the chunk's run."""
    from dagster import DagsterEventType
    from dagster._core.storage.dagster_run import RunsFilter

    records = [r for r in instance.get_run_records(RunsFilter(tags={"hydra/run": str(run)}))
               if any(part.rsplit(":", 1)[-1] == str(chunk)
                      for part in r.dagster_run.tags.get("hydra/chunks", "").split(","))]
    if not records:
        return {}
    record = max(records, key=lambda r: r.create_timestamp)  # a chunk split over two ticks: the later run
    run_id = record.dagster_run.run_id
    events: dict[str, float] = {}
    steps: dict[str, dict[str, float]] = defaultdict(dict)
    metadata: dict[str, float] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None:
            continue
        kind = event.event_type
        if kind in (DagsterEventType.RUN_STARTING, DagsterEventType.RUN_START, DagsterEventType.RUN_SUCCESS):
            events.setdefault(kind.value, entry.timestamp)
        elif kind in (DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS):
            steps[event.step_key][kind.value] = entry.timestamp
        elif kind == DagsterEventType.ASSET_MATERIALIZATION and event.step_key == "inference":
            for key, value in event.event_specific_data.materialization.metadata.items():
                if key.endswith("_ms"):
                    metadata[key] = float(value.value)
    created = record.create_timestamp.timestamp()
    parts = {"sensor wait + tick": created - landed}
    if "PIPELINE_STARTING" in events or "RUN_STARTING" in events:
        starting = events.get("PIPELINE_STARTING", events.get("RUN_STARTING"))
        parts["queue (dequeue)"] = starting - created
        start = events.get("PIPELINE_START", events.get("RUN_START"))
        if start:
            parts["launch + process + imports"] = start - starting
    image_step, inference_step = steps.get("image", {}), steps.get("inference", {})
    first_step = image_step.get("STEP_START")
    start = events.get("PIPELINE_START", events.get("RUN_START"))
    if start and first_step:
        parts["run set-up (resources)"] = first_step - start
    if image_step.get("STEP_START") and image_step.get("STEP_SUCCESS"):
        parts["feeder step"] = image_step["STEP_SUCCESS"] - image_step["STEP_START"]
    if inference_step.get("STEP_START") and image_step.get("STEP_SUCCESS"):
        parts["between steps"] = inference_step["STEP_START"] - image_step["STEP_SUCCESS"]
    if inference_step.get("STEP_START"):
        predict_total = classified - inference_step["STEP_START"]
        parts["predict step to row"] = predict_total
        parts["  model load (cache)"] = metadata.get("load_ms", 0.0) / 1000
        parts["  inference + gradcam"] = (metadata.get("infer_ms", 0.0) + metadata.get("gradcam_ms", 0.0)) / 1000
        parts["  predictor connect/IPC, DB"] = predict_total - parts["  model load (cache)"] - parts["  inference + gradcam"]
    return parts


def measure_latency(config, db, pool: ImagePool, *, chunks: int, interval: float, run: int,
                    warmup: int = 2) -> tuple[list[ChunkTiming], float]:
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(config.dagster_home))
    names = pool.names
    results: list[ChunkTiming] = []
    cold = float("nan")
    for number in range(warmup + chunks):
        files = {f"{name}-{run}-{number:04d}.png": i * 3 + number % 3 for i, name in enumerate(names)}
        landed = 0.0
        for file_name, index in files.items():
            landed = write_atomically(config.input_dir, file_name, pool.unique(index))
        classified = wait_classified(db, set(files), run, timeout=300)
        latest = max(classified.values())
        if number < warmup:
            if number == 0:
                cold = latest - landed
            log(f"warm-up chunk {number}: {latest - landed:.1f} s")
            continue
        timing = ChunkTiming(number, landed, classified)
        timing.parts = dagster_breakdown(instance, run, number, landed, latest)
        results.append(timing)
        log(f"chunk {number}: {latest - landed:.2f} s (max over {len(files)} images)")
        time.sleep(max(0.0, interval - (time.time() - landed)))
    instance.dispose()
    return results, cold


def report_latency(variant: str, results: list[ChunkTiming], cold: float) -> dict:
    per_image = [x for r in results for x in r.image_latencies]
    per_chunk = [max(r.image_latencies) for r in results]
    summary = {
        "variant": variant, "chunks": len(results), "images": len(per_image), "cold_start_s": round(cold, 2),
        "image_p50_s": round(pct(per_image, 0.5), 2), "image_p95_s": round(pct(per_image, 0.95), 2),
        "chunk_p50_s": round(pct(per_chunk, 0.5), 2), "chunk_p95_s": round(pct(per_chunk, 0.95), 2),
        "max_s": round(max(per_chunk), 2) if per_chunk else None,
    }
    print(f"\n== (a) latency, file renamed -> inference row [{variant}] ==")
    print(f"  {len(results)} chunks x {len(per_image) // max(len(results), 1)} images; first (cold) chunk "
          f"{cold:.1f} s")
    print(f"  per image: p50 {summary['image_p50_s']:.2f} s   p95 {summary['image_p95_s']:.2f} s")
    print(f"  per chunk (last image): p50 {summary['chunk_p50_s']:.2f} s   p95 {summary['chunk_p95_s']:.2f} s   "
          f"max {summary['max_s']:.2f} s")
    keys: list[str] = []
    for r in results:
        keys += [k for k in r.parts if k not in keys]
    if keys:
        print("  breakdown per chunk (median / p95, seconds):")
        for key in keys:
            values = [r.parts[key] for r in results if key in r.parts]
            print(f"    {key:<32} {statistics.median(values):6.2f} / {pct(values, 0.95):6.2f}")
        summary["breakdown_median_s"] = {k: round(statistics.median([r.parts[k] for r in results if k in r.parts]), 3)
                                         for k in keys}
    return summary


# ---- (b) throughput ratio ------------------------------------------------------------------------------------------


def measure_ratio(root: Path, pool: ImagePool, *, topology: str, size, n: int, reps: int) -> dict:
    """Chunk job vs bare model on the same n images, same process, warm model."""
    import dagster as dg
    import numpy as np

    from hydra_assets.assets.ingest import INGEST_ASSETS
    from hydra_assets.images import file_digest, load_rgb
    from hydra_assets.ingest.classifier import predict_weights
    from hydra_assets.ingest.scan import FileRef
    from hydra_assets.ml.active import load_active_model
    from hydra_assets.resources.hydra import HydraResource
    from hydra_assets.resources.predictor import PredictorResource

    plot = "RATIO_" + topology
    config, db = make_home(root, [plot], topology=topology, size=size, env={"HYDRA_MIN_FILE_AGE_SECONDS": "0"})
    active = load_active_model(db, config, plot)
    instance = dg.DagsterInstance.ephemeral()
    resources = {"hydra": HydraResource(), "predictor": PredictorResource(mode="inprocess")}
    job_times, bare_times, details = [], [], []
    for rep in range(reps + 1):  # the first round warms imports, tracing and caches
        run = 500 + rep
        refs, paths = [], []
        for chunk in range(n):
            name = f"{plot}-{run}-{chunk:04d}.png"
            write_atomically(config.input_dir, name, pool.unique(chunk))
            paths.append(config.input_dir / name)
            refs.append(FileRef(file_digest(config.input_dir / name), name).encode())
        batch = np.stack([load_rgb(p, active.input_size) for p in paths])
        instance.add_dynamic_partitions("run_number", [str(run)])
        started = time.perf_counter()
        result = dg.materialize(INGEST_ASSETS, partition_key=str(run), instance=instance, resources=resources,
                                run_config={"ops": {"image": {"config": {"files": refs}}}},
                                tags={"hydra/source": "bench"})
        job = time.perf_counter() - started
        bares = []
        for _ in range(3):  # the fastest way to run the bare model: its traced graph, median of three
            started = time.perf_counter()
            predict_weights(active, batch)
            bares.append(time.perf_counter() - started)
        bare = statistics.median(bares)
        meta = {}
        for event in result.get_asset_materialization_events():
            for key, value in event.materialization.metadata.items():
                if key.endswith("_ms"):
                    meta[key] = float(value.value)
        if rep == 0:
            continue
        job_times.append(job)
        bare_times.append(bare)
        details.append(meta)
    job, bare = statistics.median(job_times), statistics.median(bare_times)
    feeder = statistics.median(d.get("feeder_ms", 0) for d in details) / 1000
    predict = statistics.median(d.get("predict_ms", 0) for d in details) / 1000
    infer = statistics.median(d.get("infer_ms", 0) for d in details) / 1000
    keeper = statistics.median(d.get("keeper_ms", 0) for d in details) / 1000
    gradcam = statistics.median(d.get("gradcam_ms", 0) for d in details) / 1000
    predict_db = statistics.median(d.get("db_ms", 0) for d in details) / 1000
    prepare = statistics.median(d.get("prepare_ms", 0) for d in details) / 1000
    summary = {
        "topology": topology, "input": f"{size[0]}x{size[1]}", "images": n,
        "bare_images_per_s": round(n / bare, 1), "job_images_per_s": round(n / job, 1),
        "ratio": round(bare / job, 3), "job_s": round(job, 3), "bare_s": round(bare, 3),
        "feeder_s": round(feeder, 3), "predict_s": round(predict, 3), "model_in_job_s": round(infer, 3),
        "keeper_s": round(keeper, 3), "dagster_overhead_s": round(job - feeder - predict - keeper, 3),
        "gradcam_s": round(gradcam, 3), "predict_db_s": round(predict_db, 3), "predict_prepare_s": round(prepare, 3),
        "ratio_without_gradcam": round(bare / (job - gradcam), 3),
        # the same comparison inside one job run: the model's own time over the job's (no run-to-run noise)
        "ratio_in_run": round(infer / job, 3),
    }
    load = os.getloadavg()
    summary["load"] = load
    print(f"\n== (b) throughput: chunk job vs bare Keras model, {n} images, {topology} {size[0]}x{size[1]} "
          f"(load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}) ==")
    print(f"  bare model      {summary['bare_images_per_s']:8.1f} images/s  ({bare:.3f} s)")
    print(f"  chunk job       {summary['job_images_per_s']:8.1f} images/s  ({job:.3f} s)")
    print(f"  ratio           {summary['ratio']:.3f}")
    print(f"  job breakdown   feeder {feeder:.3f} s | predict {predict:.3f} s (inputs {prepare:.3f} s, model {infer:.3f} s, "
          f"GradCAM {gradcam:.3f} s, DB {predict_db:.3f} s) | keeper {keeper:.3f} s | Dagster {summary['dagster_overhead_s']:.3f} s")
    print(f"  ratio without GradCAM of the Bad ones: {summary['ratio_without_gradcam']:.3f}")
    print(f"  in-run ratio (model time inside the job / job time): {summary['ratio_in_run']:.3f}")
    instance.dispose()
    db.dispose()
    os.environ.pop("HYDRA_MIN_FILE_AGE_SECONDS", None)
    return summary


# ---- (e) per-stage profile ---------------------------------------------------------------------------------------------


JOB_STEPS = ("image", "inference", "reference_score", "keep", "run_flags", "challenger_inference")
OWN_MS = {"image": ("feeder_ms",), "inference": ("predict_ms",), "reference_score": ("reference_ms",),
          "keep": ("keeper_ms",), "run_flags": ("read_ms", "rules_ms", "write_ms"),
          "challenger_inference": ("challenger_ms",)}


def micro_costs(config, paths: list[Path], size) -> dict[str, float]:
    """What each file operation of the Feeder costs per image, one at a time on one core (ms/image)."""
    import numpy as np
    from PIL import Image as PILImage

    from hydra_assets.images import file_digest, rgb_pixels, store_file
    from hydra_assets.ingest.model_inputs import to_uint8
    from hydra_assets.ingest.reference_grids import image_grid

    costs: dict[str, float] = defaultdict(float)
    scratch = config.home / "micro"
    for i, path in enumerate(paths):
        t = time.perf_counter()
        file_digest(path)
        costs["hash (sha256)"] += time.perf_counter() - t
        t = time.perf_counter()
        with PILImage.open(path) as probe:
            probe.verify()
        costs["verify (PNG checksums)"] += time.perf_counter() - t
        t = time.perf_counter()
        with PILImage.open(path) as full:
            full.load()
            costs["decode"] += time.perf_counter() - (t1 := t)
            t = time.perf_counter()
            pixels = to_uint8(rgb_pixels(full, size))
            costs["resize to the model input"] += time.perf_counter() - t
            t = time.perf_counter()
            image_grid(full)
            costs["reference grid"] += time.perf_counter() - t
        del t1
        t = time.perf_counter()
        store_file(path, scratch, f"copy/{i}.png")
        costs["file: copy + fsync"] += time.perf_counter() - t
        t = time.perf_counter()
        os.link(path, scratch / f"link-{i}.png")
        costs["file: hard link"] += time.perf_counter() - t
        t = time.perf_counter()
        (scratch / f"copy/{i}.png").unlink()
        costs["file: unlink"] += time.perf_counter() - t
        t = time.perf_counter()
        (scratch / f"input-{i}.rgb").write_bytes(np.ascontiguousarray(pixels).tobytes())
        costs["file: keep model input"] += time.perf_counter() - t
    shutil.rmtree(scratch, ignore_errors=True)
    return {k: v * 1000 / max(len(paths), 1) for k, v in costs.items()}


def run_events(instance, run_id: str) -> tuple[dict[str, float], dict[str, dict[str, float]], int]:
    """Run-level event times, per-step start/end times, and how many events the run wrote."""
    from dagster import DagsterEventType

    events: dict[str, float] = {}
    steps: dict[str, dict[str, float]] = defaultdict(dict)
    count = 0
    for entry in instance.all_logs(run_id):
        count += 1
        event = entry.dagster_event
        if event is None:
            continue
        kind = event.event_type
        if kind in (DagsterEventType.RUN_START, DagsterEventType.RUN_SUCCESS, DagsterEventType.RUN_FAILURE):
            events.setdefault(kind.value, entry.timestamp)
        elif kind in (DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS):
            steps[event.step_key][kind.value] = entry.timestamp
    return events, steps, count


def measure_profile(root: Path, pool: ImagePool, *, topology: str, size, n: int, reps: int) -> dict:
    """Where the chunk job's time goes, per run and per image: the whole job (image → inference →
    reference_score → keep → run_flags, challenger_inference) on `n` images of one run number, in this
    process on a Dagster instance with SQLite storage (event log writes as in production), model warm;
    next to it the bare model on the same images, and the Feeder's file operations one at a time."""
    import dagster as dg
    import numpy as np

    from hydra_assets.assets.challenger import CHALLENGER_ASSETS
    from hydra_assets.assets.flags import FLAG_ASSETS
    from hydra_assets.assets.ingest import INGEST_ASSETS
    from hydra_assets.assets.reference import REFERENCE_ASSETS
    from hydra_assets.images import file_digest, load_rgb
    from hydra_assets.ingest.classifier import predict_weights
    from hydra_assets.ingest.scan import FileRef
    from hydra_assets.ml.active import load_active_model
    from hydra_assets.resources.hydra import HydraResource
    from hydra_assets.resources.predictor import PredictorResource

    plot = "PROFILE_" + topology
    config, db = make_home(root, [plot], topology=topology, size=size, env={"HYDRA_MIN_FILE_AGE_SECONDS": "0"})
    active = load_active_model(db, config, plot)
    instance = dg.DagsterInstance.local_temp(str(root / "dagster"))
    assets = [*INGEST_ASSETS, *REFERENCE_ASSETS, *FLAG_ASSETS, *CHALLENGER_ASSETS]
    resources = {"hydra": HydraResource(), "predictor": PredictorResource(mode="inprocess")}
    rounds: list[dict[str, float]] = []
    micro: dict[str, list[float]] = defaultdict(list)
    for rep in range(reps + 1):  # the first round warms imports, tracing and caches
        run = 700 + rep
        refs, paths = [], []
        for chunk in range(n):
            name = f"{plot}-{run}-{chunk:04d}.png"
            write_atomically(config.input_dir, name, pool.unique(chunk))
            paths.append(config.input_dir / name)
            refs.append(FileRef(file_digest(config.input_dir / name), name).encode())
        for key, value in micro_costs(config, paths, active.input_size).items():
            micro[key].append(value)
        batch = np.stack([load_rgb(p, active.input_size) for p in paths])
        instance.add_dynamic_partitions("run_number", [str(run)])
        started = time.time()
        result = dg.materialize(assets, partition_key=str(run), instance=instance, resources=resources,
                                run_config={"ops": {"image": {"config": {"files": refs}}}},
                                tags={"hydra/source": "bench"})
        ended = time.time()
        bares = []
        for _ in range(3):
            t = time.perf_counter()
            predict_weights(active, batch)
            bares.append(time.perf_counter() - t)
        if rep == 0:
            continue
        meta: dict[str, dict[str, float]] = defaultdict(dict)
        for event in result.get_asset_materialization_events():
            step = event.step_key
            for key, value in event.materialization.metadata.items():
                if key.endswith("_ms"):
                    meta[step][key] = float(value.value)
        events, steps, count = run_events(instance, result.run_id)
        r: dict[str, float] = {"job": ended - started, "bare model": statistics.median(bares), "events": count}
        first = min(v["STEP_START"] for v in steps.values())
        last = max(v["STEP_SUCCESS"] for v in steps.values())
        r["Dagster: run start (call -> first step)"] = first - started
        r["Dagster: run end (last step -> return)"] = ended - last
        order = sorted(steps, key=lambda k: steps[k]["STEP_START"])
        gaps = sum(steps[b]["STEP_START"] - steps[a]["STEP_SUCCESS"] for a, b in zip(order, order[1:], strict=False))
        r["Dagster: between steps"] = gaps
        for step in JOB_STEPS:
            if step not in steps:
                continue
            span = steps[step]["STEP_SUCCESS"] - steps[step]["STEP_START"]
            own = sum(meta[step].get(k, 0.0) for k in OWN_MS[step]) / 1000
            r[f"step {step}"] = span
            r[f"step {step}: own work"] = own
            r[f"step {step}: Dagster events, checks, stage timings"] = span - own
        feeder, predict = meta.get("image", {}), meta.get("inference", {})
        for key, value in feeder.items():
            if key.startswith("feeder_") and key != "feeder_ms":
                r[f"  feeder {key[7:-3]}"] = value / 1000
        for key in ("prepare", "load", "infer", "novelty", "gradcam", "db"):
            r[f"  predict {key}"] = predict.get(f"{key}_ms", 0.0) / 1000
        flags = meta.get("run_flags", {})
        for key in ("read", "rules", "write"):
            r[f"  flags {key}"] = flags.get(f"{key}_ms", 0.0) / 1000
        rounds.append(r)
    med = {k: statistics.median(r.get(k, 0.0) for r in rounds) for k in rounds[0]}
    micro_ms = {k: statistics.median(v) for k, v in micro.items()}
    job, bare = med["job"], med["bare model"]
    load = os.getloadavg()
    print(f"\n== (e) profile: the whole chunk job on {n} images of one run, {topology} "
          f"{size[0]}x{size[1]}, median of {reps} (load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}) ==")
    print(f"  bare model {n / bare:8.1f} images/s ({bare:.3f} s) | chunk job {n / job:8.1f} images/s ({job:.3f} s) "
          f"| ratio {bare / job:.3f} | {med['events']:.0f} Dagster events")
    print(f"  {'stage':<58} {'per run':>10} {'per image':>11} {'share':>6}")
    for key, value in med.items():
        if key in ("job", "bare model", "events"):
            continue
        print(f"  {key:<58} {value * 1000:8.1f} ms {value * 1000 / n:8.3f} ms {value / job:6.1%}")
    print("  the Feeder's file operations one at a time, one core (ms per image):")
    for key, value in micro_ms.items():
        print(f"    {key:<40} {value:7.3f} ms")
    instance.dispose()
    db.dispose()
    os.environ.pop("HYDRA_MIN_FILE_AGE_SECONDS", None)
    return {"topology": topology, "images": n, "reps": reps, "load": load, "ratio": round(bare / job, 3),
            "job_s": round(job, 3), "bare_s": round(bare, 3),
            "stages_ms": {k: round(v * 1000, 2) for k, v in med.items() if k not in ("job", "bare model", "events")},
            "events": med["events"], "micro_ms_per_image": {k: round(v, 3) for k, v in micro_ms.items()}}


# ---- (d) Feeder -> Predict hand-off -------------------------------------------------------------------------------------


def measure_handoff(root: Path, pool: ImagePool, *, sizes: list[int], reps: int) -> list[dict]:
    """What Predict pays for a chunk's model inputs, and what the Feeder pays to keep them.

    Only the work that differs between the ways of handing the inputs over, on the same stored 480x360 PNGs
    at the demo models' 128x128, median of `reps` rounds: Predict decoding the stored images again; taking
    the inputs the Feeder kept on disk (`model_inputs`, any executor); taking them from a dict in memory
    (one process only: the in-process executor).  The Feeder's side: resizing the pixels it decodes anyway
    for its check, and writing them.  No model and no Dagster, so the figures hold still on a busy machine.
    """
    os.environ["HYDRA_HOME"] = str(root)
    for key in ("HYDRA_DB_URL", "DAGSTER_HOME", "HYDRA_INPUT_DIR", "MLFLOW_TRACKING_URI"):
        os.environ.pop(key, None)
    from hydra_assets import catalog
    from hydra_assets.db.engine import HydraDB
    from hydra_assets.home import initialise
    from hydra_assets.images import check_image, file_digest
    from hydra_assets.ingest.feeder import feed_files
    from hydra_assets.ingest.model_inputs import keep_inputs, prepare, take_inputs, to_uint8
    from hydra_assets.ingest.scan import FileRef
    from hydra_assets.settings import load_settings

    config = load_settings(min_file_age_seconds=0)
    initialise(config)
    db = HydraDB(config.db_url)
    db.write(lambda s: catalog.add_plot_type(s, "HANDOFF", "Good,Bad", "Bad", collect_percent=5.0,
                                             input_size=DEMO_SIZE))
    refs = []
    for i in range(max(sizes)):
        name = f"HANDOFF-700-{i:04d}.png"
        write_atomically(config.input_dir, name, pool.unique(i))
        refs.append(FileRef(file_digest(config.input_dir / name), name))
    fed = feed_files(db, config, 700, refs).registered  # no Dagster run id: nothing kept
    db.dispose()
    summaries = []
    for n in sizes:
        stored = [(image.digest, image.stored) for image in fed[:n]]
        digests = [digest for digest, _ in stored]
        times: dict[str, list[float]] = defaultdict(list)
        for rep in range(reps + 1):  # the first round warms the page cache
            round_: dict[str, float] = {}
            started = time.perf_counter()
            decoded = {digest: prepare(path, DEMO_SIZE) for digest, path in stored}
            round_["predict: decode the stored images"] = time.perf_counter() - started
            started = time.perf_counter()
            for _, path in stored:
                check_image(path, max_pixels=config.max_image_pixels)
            checked = time.perf_counter() - started
            started = time.perf_counter()
            for _, path in stored:
                to_uint8(check_image(path, max_pixels=config.max_image_pixels, pixels_at=DEMO_SIZE).pixels)
            round_["feeder: resize while checking"] = max(0.0, time.perf_counter() - started - checked)
            started = time.perf_counter()
            keep_inputs(config, decoded)
            round_["feeder: write the kept inputs"] = time.perf_counter() - started
            started = time.perf_counter()
            taken = take_inputs(config, digests, DEMO_SIZE)
            round_["predict: take the kept inputs (disk)"] = time.perf_counter() - started
            assert len(taken) == len(set(digests))
            memory = dict(decoded)
            started = time.perf_counter()
            _ = {digest: memory.pop(digest) for digest in digests}
            round_["predict: take from memory (one process)"] = time.perf_counter() - started
            if rep:
                for key, value in round_.items():
                    times[key].append(value)
        medians = {key: statistics.median(values) for key, values in times.items()}
        disk = (medians["feeder: resize while checking"] + medians["feeder: write the kept inputs"]
                + medians["predict: take the kept inputs (disk)"])
        memory = medians["feeder: resize while checking"] + medians["predict: take from memory (one process)"]
        summary = {"images": n, "reps": reps, **{k: round(v * 1000, 2) for k, v in medians.items()},
                   "chunk_ms_decode_again": round(medians["predict: decode the stored images"] * 1000, 2),
                   "chunk_ms_disk_handoff": round(disk * 1000, 2), "chunk_ms_memory_handoff": round(memory * 1000, 2)}
        print(f"\n== (d) Feeder -> Predict hand-off, {n} stored 480x360 PNGs -> {DEMO_SIZE[0]}x{DEMO_SIZE[1]} inputs, "
              f"median of {reps} ==")
        for key, value in medians.items():
            print(f"  {key:<42} {value * 1000:8.2f} ms  ({value * 1000 / n:.3f} ms/image)")
        print(f"  per chunk: decode again {summary['chunk_ms_decode_again']:.2f} ms | kept on disk "
              f"{summary['chunk_ms_disk_handoff']:.2f} ms | in memory {summary['chunk_ms_memory_handoff']:.2f} ms")
        summaries.append(summary)
    return summaries


# ---- (c) drain ---------------------------------------------------------------------------------------------------------


def drop_many(config, pool: ImagePool, names: list[str], run: int, chunks: range) -> tuple[set[str], float]:
    files = set()
    landed = 0.0
    for chunk in chunks:
        for i, name in enumerate(names):
            file_name = f"{name}-{run}-{chunk:04d}.png"
            landed = write_atomically(config.input_dir, file_name, pool.unique(i + chunk))
            files.add(file_name)
    return files, landed


def burst_runs(config, run: int, landed: float) -> list[dict]:
    """The chunk jobs of run number `run`: files, and when each was created, started and ended (s after `landed`)."""
    import dagster as dg
    from dagster._core.storage.dagster_run import RunsFilter

    rows = []
    with dg.DagsterInstance.from_config(str(config.dagster_home)) as instance:
        for record in instance.get_run_records(RunsFilter(tags={"hydra/run": str(run)})):
            tags = record.dagster_run.tags
            rows.append({"files": int(tags.get("hydra/files", 0)),
                         "created": round(record.create_timestamp.timestamp() - landed, 1),
                         "started": round((record.start_time or landed) - landed, 1),
                         "ended": round((record.end_time or landed) - landed, 1)})
    return sorted(rows, key=lambda r: r["created"])


def measure_drain(config, db, pool: ImagePool, *, burst: int) -> dict:
    hall_b = [f"HB_{i:02d}" for i in range(81)]
    add_plot_types(config, db, hall_b)
    summary: dict[str, object] = {}
    # A Hall-B chunk: the first loads 81 models into the predictor; then steady state.
    times = []
    for chunk in range(4):
        files, landed = drop_many(config, pool, hall_b, 9000, range(chunk, chunk + 1))
        done = wait_classified(db, files, 9000, timeout=900)
        took = max(done.values()) - landed
        log(f"Hall-B chunk {chunk}: 81 images drained in {took:.1f} s" + (" (first: loads 81 models)" if not chunk else ""))
        if chunk:
            times.append(took)
        time.sleep(2)
    summary["hallb_chunk_81_images_s"] = {"first": None, "median": round(statistics.median(times), 2),
                                          "max": round(max(times), 2)}
    # A burst of `burst` images of one run.
    per_chunk = len(hall_b)
    chunks = range(100, 100 + (burst + per_chunk - 1) // per_chunk)
    files, landed = drop_many(config, pool, hall_b, 9001, chunks)
    files = set(sorted(files)[:burst])
    for extra in sorted(set(f.name for f in config.input_dir.iterdir() if f.name.endswith(".png")) - files):
        if "-9001-" in extra:
            (config.input_dir / extra).unlink(missing_ok=True)  # exactly `burst` images
    started = time.time()
    done = wait_classified(db, files, 9001, timeout=1800)
    drain = max(done.values()) - landed
    summary["burst_runs"] = burst_runs(config, 9001, landed)
    summary["burst"] = {"images": len(files), "drain_s": round(drain, 1),
                        "images_per_s": round(len(files) / drain, 1),
                        "first_classified_after_s": round(min(done.values()) - landed, 1),
                        "wall_s": round(time.time() - started, 1)}
    load = os.getloadavg()
    summary["load"] = load
    print(f"\n== (c) drain with the daemon running (load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}) ==")
    print(f"  Hall-B chunk (81 plot types x 1 image): median {summary['hallb_chunk_81_images_s']['median']:.1f} s, "
          f"max {summary['hallb_chunk_81_images_s']['max']:.1f} s (steady state, 3 chunks)")
    for row in summary["burst_runs"]:
        print(f"    run of {row['files']:4d} files: created +{row['created']:5.1f} s, started +{row['started']:5.1f} s, "
              f"ended +{row['ended']:5.1f} s ({row['ended'] - row['started']:.1f} s)")
    print(f"  burst of {len(files)} images (one run): drained in {drain:.1f} s "
          f"({len(files) / drain:.1f} images/s; first classified after {summary['burst']['first_classified_after_s']} s)")
    return summary


# ---- (f) sustained rate -----------------------------------------------------------------------------------------------


def measure_rate(config, db, pool: ImagePool, *, rate: float, minutes: float, plot_types: int,
                 lumisection_s: float = 23.0, run: int = 131000, drain_s: float = 300.0, first: bool = True) -> dict:
    """A CMS-like sustained load into the running daemon: every `lumisection_s`, `rate` x `lumisection_s`
    images (`plot_types` plot types x as many chunks as that takes), written one second's share at a time.
    Every minute: dropped, classified, backlog (dropped, not yet classified), load; at the end the
    backlog's slope and p50/p95 file -> classified (the moment the inference row is visible)."""
    import threading

    from sqlalchemy import select

    from hydra_assets.db.models import Image, Inference

    names = [f"CMS_{i:04d}" for i in range(plot_types)]
    if first:
        add_plot_types(config, db, names)
    warm_up = {f"{name}-{run - 1}-00000.png" for name in names}  # the predictor loads every model once
    for i, file_name in enumerate(sorted(warm_up)):
        write_atomically(config.input_dir, file_name, pool.unique(i))
    begun = time.time()
    wait_classified(db, warm_up, run - 1, timeout=900)
    log(f"warm-up: one image of each of the {plot_types} plot types classified after {time.time() - begun:.1f} s")
    landed: dict[str, float] = {}
    classified: dict[str, float] = {}
    stop = threading.Event()
    errors: list[str] = []

    def writer() -> None:
        per_second = rate
        owed, chunk, index, second = 0.0, 0, 0, 0
        begun = time.monotonic()
        while not stop.is_set():
            owed += per_second
            while owed >= 1 and not stop.is_set():
                name = names[index % plot_types]
                if index % plot_types == plot_types - 1:
                    chunk += 1
                file_name = f"{name}-{run}-{chunk:05d}.png"
                landed[file_name] = write_atomically(config.input_dir, file_name, pool.unique(index))
                index += 1
                owed -= 1
            second += 1
            stop.wait(max(0.0, begun + second - time.monotonic()))

    def poller() -> None:
        last = 0
        while not stop.is_set() or len(classified) < len(landed):
            try:
                with db.read() as s:
                    rows = s.execute(select(Inference.id, Image.file_name).join(Image, Image.id == Inference.image_id)
                                     .where(Inference.id > last, Image.run_number == run).order_by(Inference.id)).all()
                    s.rollback()
            except Exception as error:  # a busy database: poll again
                errors.append(str(error)[:200])
                rows = []
            now = time.time()
            for inference_id, file_name in rows:
                classified.setdefault(file_name, now)
                last = max(last, inference_id)
            if stop.is_set() and time.time() > drain_deadline[0]:
                return
            time.sleep(0.5)

    drain_deadline = [float("inf")]
    threads = [threading.Thread(target=writer, daemon=True), threading.Thread(target=poller, daemon=True)]
    started = time.time()
    for thread in threads:
        thread.start()
    samples: list[tuple[float, int, int, float]] = []
    print(f"\n== (f) sustained rate: {rate:.0f} images/s ({plot_types} plot types x "
          f"{rate * lumisection_s / plot_types:.0f} chunks per {lumisection_s:.0f}-s lumisection), {minutes:.0f} min ==")
    print("   min  dropped  classified  backlog  load1", flush=True)
    try:
        for minute in range(1, int(minutes) + 1):
            time.sleep(max(0.0, started + 60 * minute - time.time()))
            dropped, done = len(landed), len(classified)
            load = os.getloadavg()[0]
            samples.append((minute, dropped, dropped - done, load))
            print(f"  {minute:4d} {dropped:8d} {done:11d} {dropped - done:8d} {load:6.2f}", flush=True)
    finally:
        stop.set()
        threads[0].join()
    fed_s = time.time() - started
    drain_deadline[0] = time.time() + drain_s
    threads[1].join(timeout=drain_s + 30)
    leftover = [p for p in config.input_dir.iterdir() if f"-{run}-" in p.name]
    for path in leftover:  # not drained in time: out of the way of the next rate
        path.unlink(missing_ok=True)
    latencies = [classified[name] - landed[name] for name in landed if name in classified]
    import statistics as st

    def slope(points: list[tuple[float, float]]) -> float:
        if len(points) < 2:
            return 0.0
        mx, my = st.fmean(x for x, _ in points), st.fmean(y for _, y in points)
        den = sum((x - mx) ** 2 for x, _ in points) or 1.0
        return sum((x - mx) * (y - my) for x, y in points) / den

    half = [(m, b) for m, _, b, _ in samples if m > minutes / 2] or [(m, b) for m, _, b, _ in samples]
    summary = {
        "rate_asked": rate, "minutes": minutes, "plot_types": plot_types, "dropped": len(landed),
        "achieved_drop_rate": round(len(landed) / fed_s, 1),
        "classified": len(classified), "classified_rate_while_feeding": round(
            sum(1 for n in landed if n in classified and classified[n] <= started + fed_s) / fed_s, 1),
        "backlog_slope_per_min": round(slope([(m, b) for m, _, b, _ in samples]), 1),
        "backlog_slope_second_half_per_min": round(slope(half), 1),
        "backlog_end": samples[-1][2] if samples else None,
        "drained_after_s": round(max(classified.values()) - started - fed_s, 1) if len(classified) == len(landed)
        else None,
        "latency_p50_s": round(pct(latencies, 0.5), 2), "latency_p95_s": round(pct(latencies, 0.95), 2),
        "latency_max_s": round(max(latencies), 2) if latencies else None,
        "load_mean": round(st.fmean(load for *_, load in samples), 2) if samples else None,
        "poll_errors": len(errors),
    }
    print(f"  dropped {summary['dropped']} ({summary['achieved_drop_rate']} images/s), classified while feeding "
          f"{summary['classified_rate_while_feeding']} images/s; backlog slope {summary['backlog_slope_per_min']:+.1f} "
          f"images/min (second half {summary['backlog_slope_second_half_per_min']:+.1f}), at the end "
          f"{summary['backlog_end']}, drained {summary['drained_after_s']} s after the last file")
    print(f"  file -> classified: p50 {summary['latency_p50_s']} s, p95 {summary['latency_p95_s']} s, "
          f"max {summary['latency_max_s']} s; load average (1 min) mean {summary['load_mean']}")
    return summary


# ---- main -----------------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="latency,ratio,drain,handoff",
                        help="comma list of latency, ratio, drain, handoff, profile (printed with ratio too), rate")
    parser.add_argument("--variant", default="shipped", help=f"{', '.join(VARIANTS)} or all")
    parser.add_argument("--chunks", type=int, default=24, help="measured chunks per latency variant (>= 20)")
    parser.add_argument("--interval", type=float, default=8.0, help="seconds between chunks")
    parser.add_argument("--ratio-images", type=int, default=81)
    parser.add_argument("--ratio-reps", type=int, default=3)
    parser.add_argument("--profile-images", type=int, default=200, help="images of the profile's chunk job")
    parser.add_argument("--ratio-topologies", default="compact", help="e.g. compact,inceptionv3")
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--rate", type=lambda text: [float(v) for v in text.split(",")], default=[200.0],
                        help="images/s of the sustained part (rate); a comma list runs one after the other")
    parser.add_argument("--minutes", type=lambda text: [float(v) for v in text.split(",")], default=[10.0],
                        help="minutes of each rate")
    parser.add_argument("--rate-drain", type=float, default=300.0, help="seconds to wait for the backlog to drain")
    parser.add_argument("--rate-plot-types", type=int, default=46, help="plot types of the sustained part")
    parser.add_argument("--handoff-images", type=lambda text: [int(v) for v in text.split(",")], default=[6, 81],
                        help="chunk sizes of the hand-off part, e.g. 6,81")
    parser.add_argument("--handoff-reps", type=int, default=15)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    root = Path(tempfile.mkdtemp(prefix="hydra-bench-"))
    log(f"bench folder {root} on {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    figures: dict[str, object] = {"cores": os.cpu_count(), "load_at_start": os.getloadavg()}
    pool = ImagePool()
    try:
        if "ratio" in parts:
            sizes = {"compact": DEMO_SIZE, "vgg16": (128, 128), "inceptionv3": (299, 299)}
            figures["ratio"] = [measure_ratio(root / f"ratio-{t}", pool, topology=t, size=sizes[t],
                                              n=args.ratio_images, reps=args.ratio_reps)
                                for t in args.ratio_topologies.split(",")]
        if "profile" in parts or "ratio" in parts:
            figures["profile"] = measure_profile(root / "profile", pool, topology="compact", size=DEMO_SIZE,
                                                 n=args.profile_images, reps=args.ratio_reps)
        if "handoff" in parts:
            figures["handoff"] = measure_handoff(root / "handoff", pool, sizes=args.handoff_images,
                                                 reps=args.handoff_reps)
        if "latency" in parts or "drain" in parts or "rate" in parts:
            variants = list(VARIANTS) if args.variant == "all" else args.variant.split(",")
            figures["latency"] = []
            for index, variant in enumerate(variants):
                home = root / f"live-{variant}"
                config, db = make_home(home, pool.names)
                with contextlib.ExitStack() as stack:
                    stack.callback(stop_predictor, config)  # also when interrupted
                    stack.enter_context(dagster_dev(config, variant))
                    log(f"[{variant}] dagster dev starting; sensor ticked after {wait_for_sensor(db):.1f} s")
                    if "latency" in parts:
                        results, cold = measure_latency(config, db, pool, chunks=args.chunks,
                                                        interval=args.interval, run=121264)
                        figures["latency"].append(report_latency(variant, results, cold))
                    if "drain" in parts and index == 0:
                        figures["drain"] = measure_drain(config, db, pool, burst=args.burst)
                    if "rate" in parts and index == 0:
                        figures["rate"] = [
                            measure_rate(config, db, pool, rate=rate, minutes=minutes, plot_types=args.rate_plot_types,
                                         run=131000 + 10 * step, drain_s=args.rate_drain, first=step == 0)
                            for step, (rate, minutes) in enumerate(zip(args.rate, args.minutes, strict=True))]
                db.dispose()
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2, default=str))
        print("\n" + json.dumps(figures, indent=2, default=str))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
