"""Drift benchmark: train on the first (nominal) runs, classify later runs whose conditions changed.

    .venv/bin/python bench/drift.py              # every demo plot type (~20 min on 2 shared cores; images reused)
    .venv/bin/python bench/drift.py --quick      # one plot type, few images, 2 epochs: a smoke run (~1 min)
    .venv/bin/python bench/drift.py --plot-types CDC_timing,TOF_multiplicity --save bench/results/drift-$(date +%F).txt

The experiment is `hydra simulate --drift realistic` (docs/simulate.md): runs 0-5 are nominal, later runs
cycle a gain shift, an occupancy change, a new beam/trigger setting (Good, other shape), a nominal run and a
degradation growing over five runs (Bad from severity 0.5). Per plot type:

1. training: the nominal runs' images (at most 300, Bad-rich so every failure mode is seen), imported with
   their simulated truth through `import_labeled_folder` (what `hydra label import` calls), trained with the
   `hydra train` defaults (training set, model, thresholds, activated);
2. classification of the later runs through `classify_files` (what `hydra classify` calls);
3. figures of Hydra and two statistical baselines on the same split: logistic regression on downsampled
   pixels, and a chi-square distance of each image's intensity profile to the training runs' Good images,
   each with a threshold chosen on training.

Novelty (`novelty`, `novelty_limit`, keep reason "novel") is read when the records carry it, "n/a"
otherwise. Nothing is asserted; the targets are printed with PASS/MISS beside the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FIRST_RUN = 200000
DEFAULT_PLOT_TYPES = "all"
TARGET_FALSE_ALARMS = 0.02
TARGET_RECALL = 0.95
BASELINE_FALSE_ALARMS = 0.01  # the baselines' threshold: this share of the training Good images above it


@dataclass(frozen=True)
class Scenario:
    """How many images the benchmark makes: training runs x chunks, test runs x chunks."""

    train_chunks: int = 50  # per nominal run: 6 x 50 = 300 labeled images
    train_bad_fraction: float = 0.35
    test_runs: int = 10  # one cycle of conditions after the nominal runs
    test_chunks: int = 20
    test_bad_fraction: float = 0.1
    epochs: int | None = None  # None: the topology's (the `hydra train` default)


QUICK = Scenario(train_chunks=12, test_runs=10, test_chunks=4, epochs=2)


# ---- images with truth ------------------------------------------------------------------------------


def generate(folder: Path, plot_type: str, runs: range, chunks: int, bad_fraction: float, seed: int,
             *, by_label: bool) -> list[dict]:
    """Images of `runs` x `chunks` with `--drift realistic` into `folder` (by label for import); their records.

    Reuses an earlier benchmark's images when the folder's records.json exists.
    """
    from hydra_assets.simulate.drift import run_condition
    from hydra_assets.simulate.experiment import generate_image, plan_chunk

    manifest = folder / "records.json"
    if manifest.is_file():
        return json.loads(manifest.read_text())
    records = []
    for run in runs:
        condition = run_condition("realistic", plot_type, run, first_run=FIRST_RUN, seed=seed)
        for chunk in range(chunks):
            ((_, failure, image_seed),) = plan_chunk(run=run, chunk=chunk, plot_types=[plot_type],
                                                    bad_fraction=bad_fraction, seed=seed)
            png, record = generate_image(plot_type, run=run, chunk=chunk, failure=failure, seed=image_seed,
                                         condition=condition)
            target = folder / record["label"] if by_label else folder
            target.mkdir(parents=True, exist_ok=True)
            (target / record["file"]).write_bytes(png)
            records.append({**record, "path": str(target / record["file"])})
    manifest.write_text(json.dumps(records))
    return records


# ---- statistical baselines (pure numpy / scikit-learn) ------------------------------------------------


def pixels(paths: list[str], size: tuple[int, int]) -> np.ndarray:
    """RGB images scaled to `size` (width, height), as floats in 0..1: (n, height, width, 3)."""
    from PIL import Image

    out = []
    for path in paths:
        with Image.open(path) as image:
            out.append(np.asarray(image.convert("RGB").resize(size, Image.Resampling.BOX), dtype=np.float32) / 255)
    return np.stack(out)


def downsampled(images: np.ndarray) -> np.ndarray:
    """One feature row per image: its grey levels."""
    return images.mean(axis=3).reshape(len(images), -1)


def profiles(images: np.ndarray) -> np.ndarray:
    """Intensity profile per image: each colour's ink summed along columns and along rows, each part to sum 1."""
    ink = 1.0 - images
    parts = [ink[..., c].sum(axis=axis) for c in range(3) for axis in (1, 2)]
    return np.concatenate([p / np.maximum(p.sum(axis=1, keepdims=True), 1e-12) for p in parts], axis=1)


def chi2_distance(profile: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Chi-square distance of each profile row to the reference profile."""
    return 0.5 * (((profile - reference) ** 2) / np.maximum(profile + reference, 1e-12)).sum(axis=1)


def threshold_for(good_scores: np.ndarray, false_alarms: float = BASELINE_FALSE_ALARMS) -> float:
    """The score above which only `false_alarms` of the training Good images lie."""
    return float(np.quantile(good_scores, 1.0 - false_alarms)) if len(good_scores) else float("inf")


def profile_baseline(train: np.ndarray, train_bad: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, float]:
    """Chi-square distance to the mean Good training profile: test scores and the training threshold."""
    reference = train[~train_bad].mean(axis=0)
    return chi2_distance(test, reference), threshold_for(chi2_distance(train[~train_bad], reference))


def logistic_baseline(train: np.ndarray, train_bad: np.ndarray, runs: np.ndarray, test: np.ndarray
                      ) -> tuple[np.ndarray, float]:
    """Logistic regression Bad vs Good; the threshold from run-held-out (grouped) predictions on training."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def model():  # type: ignore[no-untyped-def]
        return make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=2000, class_weight="balanced"))

    folds = min(3, len(np.unique(runs)))
    if folds >= 2 and 0 < train_bad.sum() < len(train_bad):
        held_out = cross_val_predict(model(), train, train_bad, groups=runs, cv=GroupKFold(folds),
                                     method="predict_proba")[:, 1]
    else:
        held_out = np.zeros(len(train))
    fitted = model().fit(train, train_bad)
    return fitted.predict_proba(test)[:, 1], threshold_for(held_out[~train_bad])


# ---- figures ---------------------------------------------------------------------------------------------


def auc(truth: np.ndarray, score: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(truth, score)) if 0 < truth.sum() < len(truth) else None


def share(mask: np.ndarray, of: np.ndarray) -> float | None:
    return float(mask[of].mean()) if of.any() else None


def figures(truth_bad: np.ndarray, changed_good: np.ndarray, score: np.ndarray, alarm: np.ndarray,
            confirmed: np.ndarray | None = None, novel: np.ndarray | None = None) -> dict:
    """Bad recall and false alarms of confirmed alarms, share confirmed, AUC, novelty shares."""
    good = ~truth_bad
    out = {
        "bad_recall": share(alarm, truth_bad),
        "false_alarms": share(alarm, good),
        "false_alarms_changed": share(alarm, changed_good),
        "auc": auc(truth_bad, score),
        "confirmed": None if confirmed is None else float(confirmed.mean()),
        "novel_changed_good": None if novel is None else share(novel, changed_good),
        "unconfirmed_changed_good": None if confirmed is None else share(~confirmed, changed_good),
        "novel_nominal_good": None if novel is None else share(novel, good & ~changed_good),
        "recall_with_novel": None if novel is None else share(alarm | novel, truth_bad),
    }
    return out


def hydra_arrays(records: list[dict], bad_labels: list[str]) -> dict[str, np.ndarray | None]:
    """Score, confirmed alarm, confirmed and novel flags from `classify` records (novel None without novelty)."""
    score = np.array([sum(r["weights"].get(b, 0.0) for b in bad_labels) for r in records])
    confirmed = np.array([bool(r["confirmed"]) for r in records])
    alarm = confirmed & np.array([r["label"] in bad_labels for r in records])
    has_novelty = any(r.get("novelty") is not None for r in records)
    novel = None
    if has_novelty:
        novel = np.array([r.get("keep_reason") == "novel" or (
            r.get("novelty") is not None and r.get("novelty_limit") is not None and r["novelty"] > r["novelty_limit"])
            for r in records])
    return {"score": score, "alarm": alarm, "confirmed": confirmed, "novel": novel}


def fmt(value: float | None) -> str:
    return "  n/a" if value is None else f"{value:5.3f}"


def verdict(ok: bool | None) -> str:
    return "n/a " if ok is None else ("PASS" if ok else "MISS")


# ---- Hydra: import, train, classify -----------------------------------------------------------------


def open_home(work: Path):  # type: ignore[no-untyped-def]
    from hydra_assets.db.engine import HydraDB
    from hydra_assets.db.migrate import upgrade
    from hydra_assets.settings import load_settings
    from hydra_assets.tracking import TrackingService, ensure_tracking_store

    home = work / f"home-{int(time.time())}"
    os.environ["HYDRA_HOME"] = str(home)
    for key in ("HYDRA_DB_URL", "MLFLOW_TRACKING_URI", "HYDRA_MODELS_DIR", "DAGSTER_HOME"):
        os.environ.pop(key, None)
    config = load_settings()
    config.ensure_folders()
    upgrade(config.db_url)
    ensure_tracking_store(config)
    return config, HydraDB(config.db_url), TrackingService.from_settings(config)


def train_hydra(db, config, tracking, spec, folder: Path, epochs: int | None) -> dict:  # type: ignore[no-untyped-def]
    """`hydra label import` + `hydra train` defaults (activating the new version); the training's figures."""
    from hydra_assets import catalog
    from hydra_assets.label_import import import_labeled_folder
    from hydra_assets.ml.model_step import TrainOptions, train_model_step
    from hydra_assets.ml.registry import ensure_cli_user
    from hydra_assets.ml.thresholds_step import thresholds_step
    from hydra_assets.ml.training_set import TrainingSetOptions, create_training_set

    db.write(lambda s: catalog.add_plot_type(s, spec.name, list(spec.labels), list(spec.bad)))
    import_labeled_folder(db, config, folder, spec.name)
    started = time.perf_counter()
    training_set = create_training_set(db, config, tracking, spec.name, TrainingSetOptions())
    model = train_model_step(db, config, tracking, spec.name, TrainOptions(epochs=epochs), created_by="bench")
    chosen = thresholds_step(db, config, tracking, spec.name, activate="always",
                             user=ensure_cli_user(db))
    return {"n_train": training_set.n_train, "n_validation": training_set.n_validation, "epochs": model.epochs,
            "seconds": time.perf_counter() - started, "thresholds": chosen.thresholds,
            "validation": {k: chosen.validation.get(k) for k in ("split", "n_runs", "bad_recall", "unconfirmed_rate")
                           if isinstance(chosen.validation, dict)}}


def commits() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=Path(__file__).parents[1]).stdout

    head = git("log", "-1", "--format=%h %s").strip()[:100]
    dirty = sorted({line[3:].split("/")[0] + "/" + line[3:].split("/")[1] if "/" in line[3:] else line[3:]
                    for line in git("status", "--porcelain", "--untracked-files=no").splitlines()})
    return head + (f"  (uncommitted changes in: {', '.join(dirty)})" if dirty else "")


# ---- main ------------------------------------------------------------------------------------------


def run_plot_type(db, config, tracking, spec, scenario: Scenario, work: Path, seed: int) -> dict:  # type: ignore[no-untyped-def]
    from hydra_assets.ingest.offline import classify_files
    from hydra_assets.simulate import content, drift
    from hydra_assets.simulate.drift import NOMINAL_RUNS

    # another simulator (its content or its conditions) makes other images: key the reused folder by its source
    scheme = zlib.crc32(b"".join(Path(m.__file__).read_bytes() for m in (content, drift)))  # type: ignore[arg-type]
    key = f"{spec.name}-s{seed}-{scenario.train_chunks}x{scenario.test_runs}x{scenario.test_chunks}-{scheme:08x}"
    started = time.perf_counter()
    train = generate(work / "data" / key / "train", spec.name, range(FIRST_RUN, FIRST_RUN + NOMINAL_RUNS),
                     scenario.train_chunks, scenario.train_bad_fraction, seed, by_label=True)
    test_first = FIRST_RUN + NOMINAL_RUNS
    test = generate(work / "data" / key / "test", spec.name, range(test_first, test_first + scenario.test_runs),
                    scenario.test_chunks, scenario.test_bad_fraction, seed, by_label=False)
    made = time.perf_counter() - started
    training = train_hydra(db, config, tracking, spec, work / "data" / key / "train", scenario.epochs)
    started = time.perf_counter()
    records = classify_files(db, config, spec.name, [Path(r["path"]) for r in test])
    classified = time.perf_counter() - started

    bad_labels = list(spec.bad)
    truth_bad = np.array([r["label"] in bad_labels for r in test])
    changed_good = np.array([r["label"] == "Good" and r["condition"] != "nominal" for r in test])
    hydra = hydra_arrays(records, bad_labels)
    result = {"hydra": figures(truth_bad, changed_good, hydra["score"], hydra["alarm"], hydra["confirmed"],
                               hydra["novel"])}

    train_bad = np.array([r["label"] in bad_labels for r in train])
    train_runs = np.array([r["run"] for r in train])
    train_images = pixels([r["path"] for r in train], (120, 90))
    test_images = pixels([r["path"] for r in test], (120, 90))
    score, cut = logistic_baseline(downsampled(train_images[:, ::2, ::2]), train_bad, train_runs,
                                   downsampled(test_images[:, ::2, ::2]))
    result["logistic"] = figures(truth_bad, changed_good, score, score >= cut)
    score, cut = profile_baseline(profiles(train_images), train_bad, profiles(test_images))
    result["profile_chi2"] = figures(truth_bad, changed_good, score, score >= cut)

    per_condition = {}
    conditions = [r["condition"] for r in test]
    for name in dict.fromkeys(conditions):
        at = np.array([c == name for c in conditions])
        per_condition[name] = {
            "images": int(at.sum()), "bad": int(truth_bad[at].sum()),
            "alarms_on_good": int((hydra["alarm"] & at & ~truth_bad).sum()),
            "caught_bad": int(((hydra["alarm"] | (hydra["novel"] if hydra["novel"] is not None else False))
                               & at & truth_bad).sum()),
            "novel": None if hydra["novel"] is None else int((hydra["novel"] & at).sum()),
            "unconfirmed": int((~hydra["confirmed"] & at).sum()),
        }
    return {"train_images": len(train), "train_bad": int(train_bad.sum()), "test_images": len(test),
            "test_bad": int(truth_bad.sum()), "changed_good": int(changed_good.sum()), "training": training,
            "seconds": {"images": round(made, 1), "train": round(training["seconds"], 1),
                        "classify": round(classified, 1)},
            "figures": result, "per_condition": per_condition}


def report(name: str, row: dict) -> list[str]:
    """The printed lines of one plot type."""
    lines = [f"== {name}: trained on {row['train_images']} images of the nominal runs ({row['train_bad']} bad; "
             f"{row['training']['n_train']} train / {row['training']['n_validation']} validation, "
             f"{row['training']['epochs']} epochs, {row['seconds']['train']:.0f} s); "
             f"classified {row['test_images']} later images ({row['test_bad']} bad, {row['changed_good']} "
             f"changed-condition Good) ==",
             f"   thresholds {json.dumps({k: round(v, 3) for k, v in row['training']['thresholds'].items()})}"
             f"  validation {json.dumps(row['training']['validation'], default=str)}",
             f"   {'method':<14} {'Bad recall':>10} {'false al.':>9} {'FA chg.Good':>11} {'confirmed':>9} "
             f"{'AUC':>6} {'novel chg.Good':>14} {'unconf chg.Good':>15} {'novel nom.Good':>14} "
             f"{'recall+novel':>12}"]
    for method, f in row["figures"].items():
        lines.append(f"   {method:<14} {fmt(f['bad_recall']):>10} {fmt(f['false_alarms']):>9} "
                     f"{fmt(f['false_alarms_changed']):>11} {fmt(f['confirmed']):>9} {fmt(f['auc']):>6} "
                     f"{fmt(f['novel_changed_good']):>14} {fmt(f['unconfirmed_changed_good']):>15} "
                     f"{fmt(f['novel_nominal_good']):>14} {fmt(f['recall_with_novel']):>12}")
    h = row["figures"]["hydra"]
    baseline_auc = max((f["auc"] for m, f in row["figures"].items() if m != "hydra" and f["auc"] is not None),
                       default=None)
    recall = h["recall_with_novel"] if h["recall_with_novel"] is not None else h["bad_recall"]
    lines += [
        f"   target: confirmed false alarms <= {TARGET_FALSE_ALARMS:.2f}: {fmt(h['false_alarms'])} "
        f"{verdict(None if h['false_alarms'] is None else h['false_alarms'] <= TARGET_FALSE_ALARMS)}",
        f"   target: Bad recall (novel-unconfirmed Bad caught) >= {TARGET_RECALL:.2f}: {fmt(recall)} "
        f"{verdict(None if recall is None else recall >= TARGET_RECALL)}"
        + ("" if h["recall_with_novel"] is not None else "  (no novelty in the records: confirmed alarms only)"),
        f"   target: AUC >= best baseline's {fmt(baseline_auc)}: {fmt(h['auc'])} "
        f"{verdict(None if h['auc'] is None or baseline_auc is None else h['auc'] >= baseline_auc)}",
        "   per condition (Hydra): " + "; ".join(
            f"{c} {v['images']} img/{v['bad']} bad: {v['alarms_on_good']} FA, {v['caught_bad']} caught, "
            f"{'n/a' if v['novel'] is None else v['novel']} novel, {v['unconfirmed']} unconf."
            for c, v in row["per_condition"].items()),
    ]
    return lines


def main() -> None:
    from hydra_assets.ml.fit import configure_tensorflow
    from hydra_assets.simulate import DEMO_PLOT_TYPES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot-types", default=None, help=f"Comma-separated or `all`. Default: {DEFAULT_PLOT_TYPES} "
                        "(--quick: CDC_timing).")
    parser.add_argument("--quick", action="store_true", help="A smoke run: few images, 2 epochs.")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "hydra-bench-drift",
                        help="Images are kept here and reused; a fresh Hydra home is made inside.")
    parser.add_argument("--save", type=Path, default=None, help="Also write the printed figures to this file.")
    parser.add_argument("--json", type=Path, default=None, help="Also write every figure to this JSON file.")
    args = parser.parse_args()
    scenario = QUICK if args.quick else Scenario()
    chosen = args.plot_types or ("CDC_timing" if args.quick else DEFAULT_PLOT_TYPES)
    specs = {p.name: p for p in DEMO_PLOT_TYPES}
    names = list(specs) if chosen.strip() == "all" else [n.strip() for n in chosen.split(",") if n.strip()]
    configure_tensorflow()
    config, db, tracking = open_home(args.work)

    started = time.perf_counter()
    lines = [f"bench/drift.py {'--quick ' if args.quick else ''}seed {args.seed}, {time.strftime('%Y-%m-%d %H:%M')} UTC",
             f"code: {commits()}",
             f"scenario: {scenario}; baselines' threshold: {BASELINE_FALSE_ALARMS:.0%} of training Good above it",
             "columns: Bad recall / false alarms of confirmed alarms (baselines: score >= threshold) on all later "
             "images, false alarms on changed-condition Good, share confirmed, ROC-AUC of the bad weight, novel "
             "and unconfirmed shares on changed-condition and nominal Good, Bad recall counting novel Bad as caught",
             ""]
    print("\n".join(lines), flush=True)
    results = {}
    for name in names:
        results[name] = run_plot_type(db, config, tracking, specs[name], scenario, args.work, args.seed)
        printed = report(name, results[name])
        print("\n".join(printed) + "\n", flush=True)
        lines += printed + [""]
    lines.append(f"total {time.perf_counter() - started:.0f} s; Hydra home {os.environ['HYDRA_HOME']}")
    print(lines[-1])
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text("\n".join(lines) + "\n")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
