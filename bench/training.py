"""Training benchmark on the synthetic experiment: acceptance figures, balanced vs unbalanced, thresholds, GradCAM.

    .venv/bin/python bench/training.py                    # every demo plot type, defaults (~15-25 min on 2 cores)
    .venv/bin/python bench/training.py --plot-types CDC_timing,FDC_occupancy --no-compare

Per plot type it labels a pool of at most 300 synthetic images (Good 150, Bad 100, NoData 50 by default —
more Good than trouble, as in a real experiment), trains with the default settings (balanced sampling,
compact topology, 128 px, the topology's epochs), and judges the model at its chosen thresholds on a
*held-out* set generated with other seeds and run numbers, which the training never saw.  It prints:

1. threshold selection time over 1 M predictions;
2. per plot type: Bad recall at the threshold on the held-out set (acceptance: >= 0.95), per-label F1;
3. balanced vs unbalanced (all images) training sets: training time and held-out per-label F1;
4. GradCAM quality: the fraction of held-out localized-defect Bad images whose heatmap peak falls in the
   defect box recorded by the simulator.

Nothing is asserted: the figures are for people (and the issue's acceptance table).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hydra_assets import catalog
from hydra_assets.db.engine import HydraDB
from hydra_assets.db.migrate import upgrade
from hydra_assets.settings import load_settings

POOL = {"Good": 150, "Bad": 100, "NoData": 50}
HELD_OUT = 60  # per label
TRAIN_RUN, HELD_OUT_RUN = 5000, 9000


def threshold_timing(n: int = 1_000_000, labels: int = 3) -> dict[str, float]:
    from hydra_assets.ml.thresholds import select_thresholds

    rng = np.random.default_rng(0)
    truth = rng.integers(0, labels, n)
    logits = rng.normal(size=(n, labels)) + 2.5 * np.eye(labels)[truth]
    weights = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(np.float32)
    start = time.perf_counter()
    chosen = select_thresholds(weights, truth, [f"L{k}" for k in range(labels)], bad_labels=["L1"])
    seconds = time.perf_counter() - start
    return {"predictions": n, "labels": labels, "seconds": round(seconds, 3),
            "seconds_per_label": round(seconds / labels, 3), "f1_L1": round(chosen["L1"].f1 or 0, 4)}


def generate(folder: Path, plot_type: str, counts: dict[str, int], *, first_run: int, seed: int) -> list[dict]:
    """folder/<label>/<file>.png of one plot type, reusing files from an earlier bench run; returns records."""
    from hydra_assets.simulate import generate_image

    manifest = folder / "records.json"
    if manifest.is_file():
        return json.loads(manifest.read_text())
    records, index = [], 0
    for label, count in counts.items():
        (folder / label).mkdir(parents=True, exist_ok=True)
        for _ in range(count):
            run, chunk = first_run + index // 100, index % 100
            png, record = generate_image(plot_type, run=run, chunk=chunk, label=label if label != "Good" else None,
                                         seed=seed * 1_000_003 + index)
            (folder / label / record["file"]).write_bytes(png)
            records.append({**record, "path": str(folder / label / record["file"])})
            index += 1
    manifest.write_text(json.dumps(records))
    return records


def held_out_metrics(active, records: list[dict], bad: list[str]) -> dict:
    """Per-label precision/recall/F1 at the model's thresholds, and GradCAM-in-box, on held-out images."""
    from hydra_assets.ml.fit import load_images, predict
    from hydra_assets.ml.gradcam import gradcam_batch, peak_in_box
    from hydra_assets.ml.thresholds import evaluate_at_thresholds

    names = active.label_names
    images = load_images([r["path"] for r in records], active.input_size)
    weights = predict(active.keras_model, images, active.input_size)
    truth = np.array([names.index(r["label"]) for r in records])
    per_label = evaluate_at_thresholds(weights, truth, names, active.thresholds)
    boxed = [k for k, r in enumerate(records) if r["label"] == "Bad" and r["defect_box"]]
    inside = 0
    if boxed and "Bad" in names:
        heat = np.concatenate([gradcam_batch(active.keras_model, images[boxed[i:i + 32]], names.index("Bad"))
                               for i in range(0, len(boxed), 32)])
        h, w = active.input_size
        scale = (w / records[0]["width"], h / records[0]["height"])
        inside = sum(peak_in_box(heat[j], records[k]["defect_box"], scale=scale) for j, k in enumerate(boxed))
    # any bad label: a Bad or NoData image flagged by some bad label at its threshold
    flagged = np.zeros(len(records), dtype=bool)
    for name in bad:
        if name in names:
            flagged |= weights[:, names.index(name)] >= active.thresholds[name]
    is_bad = np.isin(truth, [names.index(n) for n in bad if n in names])
    return {
        "per_label": per_label,
        "bad_recall": per_label.get("Bad", {}).get("recall"),
        "any_bad_recall": float(flagged[is_bad].mean()) if is_bad.any() else None,
        "gradcam_boxed": len(boxed),
        "gradcam_in_box": inside / len(boxed) if boxed else None,
    }


def train_once(db, config, tracking, plot_type: str, sampling: str, epochs: int | None):
    from hydra_assets.ml.active import load_model_version
    from hydra_assets.ml.model_step import TrainOptions, train_model_step
    from hydra_assets.ml.thresholds_step import thresholds_step
    from hydra_assets.ml.training_set import TrainingSetOptions, create_training_set

    started = time.perf_counter()
    ts = create_training_set(db, config, tracking, plot_type, TrainingSetOptions(sampling=sampling))
    model = train_model_step(db, config, tracking, plot_type, TrainOptions(epochs=epochs), created_by="bench")
    thresholds = thresholds_step(db, config, tracking, plot_type, activate="never")
    total = time.perf_counter() - started
    return ts, model, thresholds, load_model_version(db, config, model.model_id), total


def fmt(value: float | None, digits: int = 3) -> str:
    return "  -  " if value is None else f"{value:.{digits}f}"


def main() -> None:
    from hydra_assets.ml.fit import configure_tensorflow
    from hydra_assets.simulate import DEMO_PLOT_TYPES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot-types", default=",".join(p.name for p in DEMO_PLOT_TYPES))
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "hydra-bench-training",
                        help="Generated images are kept here and reused; the Hydra home is made fresh inside.")
    parser.add_argument("--epochs", type=int, default=None, help="Default: the topology's.")
    parser.add_argument("--size", type=int, default=128, help="Model input (pixels per side).")
    parser.add_argument("--no-compare", action="store_true", help="Skip the balanced vs unbalanced comparison.")
    parser.add_argument("--json", type=Path, default=None, help="Also write every figure to this JSON file.")
    args = parser.parse_args()
    configure_tensorflow()

    print("== threshold selection over 1 M predictions ==")
    timing = threshold_timing()
    print(f"   {timing['predictions']:,} predictions x {timing['labels']} labels: {timing['seconds']} s "
          f"({timing['seconds_per_label']} s per label)\n", flush=True)

    home = args.work / f"home-{int(time.time())}"
    os.environ["HYDRA_HOME"] = str(home)
    for key in ("HYDRA_DB_URL", "MLFLOW_TRACKING_URI", "HYDRA_MODELS_DIR", "DAGSTER_HOME"):
        os.environ.pop(key, None)
    config = load_settings()
    config.ensure_folders()
    upgrade(config.db_url)
    db = HydraDB(config.db_url)
    from hydra_assets.label_import import import_labeled_folder
    from hydra_assets.tracking import TrackingService, ensure_tracking_store

    ensure_tracking_store(config)
    tracking = TrackingService.from_settings(config)
    specs = {p.name: p for p in DEMO_PLOT_TYPES}
    results: dict[str, dict] = {"threshold_timing": timing, "plot_types": {}}
    for name in [n.strip() for n in args.plot_types.split(",") if n.strip()]:
        spec = specs[name]
        db.write(lambda s, spec=spec: catalog.add_plot_type(s, spec.name, list(spec.labels), list(spec.bad),
                                                            input_size=(args.size, args.size)))
        started = time.perf_counter()
        pool = generate(args.work / "data" / name / "train", name, POOL, first_run=TRAIN_RUN, seed=11)
        held = generate(args.work / "data" / name / "held_out", name, dict.fromkeys(spec.labels, HELD_OUT),
                        first_run=HELD_OUT_RUN, seed=97)
        import_labeled_folder(db, config, args.work / "data" / name / "train", name)
        print(f"== {name}: {len(pool)} labeled {dict(POOL)}, {len(held)} held out "
              f"(images ready in {time.perf_counter() - started:.0f} s) ==", flush=True)
        row: dict = {}
        for sampling in ("balanced",) if args.no_compare else ("balanced", "all"):
            ts, model, thresholds, active, total = train_once(db, config, tracking, name, sampling, args.epochs)
            metrics = held_out_metrics(active, held, list(spec.bad))
            row[sampling] = {"n_train": ts.n_train, "n_validation": ts.n_validation, "epochs": model.epochs,
                             "training_seconds": round(model.training_seconds, 1), "step_seconds": round(total, 1),
                             "thresholds": thresholds.thresholds,
                             "validation_bad_recall": thresholds.validation["bad_recall"], **metrics}
            f1 = "  ".join(f"{k} F1={fmt(v['f1'])}" for k, v in metrics["per_label"].items())
            print(f"   {sampling:<8} train={ts.n_train:<3} val={ts.n_validation:<3} epochs={model.epochs} "
                  f"fit={model.training_seconds:5.1f}s  held-out Bad recall={fmt(metrics['bad_recall'])} "
                  f"(any bad label {fmt(metrics['any_bad_recall'])})  {f1}  "
                  f"GradCAM in box={fmt(metrics['gradcam_in_box'])} of {metrics['gradcam_boxed']}", flush=True)
        results["plot_types"][name] = row

    print("\n== acceptance: held-out Bad recall at the chosen thresholds (default settings, <= 300 labels) ==")
    for name, row in results["plot_types"].items():
        recall = row["balanced"]["bad_recall"]
        verdict = "ok" if recall is not None and recall >= 0.95 else "BELOW 0.95"
        print(f"   {name:<18} Bad recall {fmt(recall)}  {verdict}   "
              f"GradCAM peak in defect box {fmt(row['balanced']['gradcam_in_box'])}")
    if not args.no_compare:
        print("\n== balanced vs unbalanced (all) training sets ==")
        print(f"   {'plot type':<18} {'sampling':<9} {'n_train':>7} {'fit s':>6}  per-label held-out F1")
        for name, row in results["plot_types"].items():
            for sampling in ("balanced", "all"):
                r = row[sampling]
                f1 = "  ".join(f"{k}={fmt(v['f1'])}" for k, v in r["per_label"].items())
                print(f"   {name:<18} {sampling:<9} {r['n_train']:>7} {r['training_seconds']:>6}  {f1}")
    boxed = [(r["balanced"]["gradcam_in_box"], r["balanced"]["gradcam_boxed"]) for r in results["plot_types"].values()
             if r["balanced"]["gradcam_boxed"]]
    if boxed:
        overall = sum(f * n for f, n in boxed) / sum(n for _, n in boxed)
        print(f"\n== GradCAM: heatmap peak inside the defect box for {overall:.3f} of "
              f"{sum(n for _, n in boxed)} held-out localized Bad images ==")
        results["gradcam_in_box_overall"] = overall
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    print(f"\nHydra home with the MLflow store: {home}  (mlflow ui --backend-store-uri {config.mlflow_tracking_uri})")


if __name__ == "__main__":
    main()
