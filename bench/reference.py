"""Reference score benchmark: zero labels, the synthetic experiment with run-to-run drift.

    .venv/bin/python bench/reference.py                  # every demo plot type (~3-5 min on 2 shared cores)
    .venv/bin/python bench/reference.py --quick          # two plot types, fewer images
    .venv/bin/python bench/reference.py --save bench/results/reference-$(date +%F).txt

The experiment is `hydra simulate --drift realistic` (docs/simulate.md): runs 0-5 nominal, then a cycle of
a gain shift, an occupancy change, a new beam/trigger setting (Good, other shape), a nominal run and a
degradation growing over five runs (Bad from severity 0.5).  Per plot type, with no label at all:

- fixed reference: the 6 nominal runs (generated without failed chunks: the clean runs an expert picks);
- auto reference: for each later run, the newest earlier runs (up to `AUTO_RUNS`) that the auto rule would
  take.  The rule needs runs "confirmed Good"; here the simulated truth stands in for the classifier's
  confirmations (a run qualifies with at least 80 % Good images, its Bad images are left out), so these
  figures show what following the latest good runs gives, not how well a classifier confirms;
- the plot type's title band (title, run/chunk text, stats box: the top 22 % of the image) masked, as an
  expert does once with `hydra mask set T --region 0,0,1,0.22`; one line also gives the AUC without it.

Printed: ROC-AUC of the score (Bad vs Good) over all later images and per failure mode (that mode's Bad
images vs all Good), false alarms at the calibrated limit (the reference's own 1-in-100) on nominal Good
and on changed-condition Good, Bad recall at the limit, and the time per image of the score against the
compact classifier's (decode, resize, predict) on the same files: without the hand-off (decode, grid, score:
the step's fallback) and with it (the grid the Feeder kept read from `.reference-grids` and score: the normal
path), plus what the Feeder pays for the grid from the pixels it decoded anyway (grey, grid, write).
Nothing is asserted; the targets are printed with PASS/MISS beside the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.drift import FIRST_RUN, commits, generate

TITLE_BAND = [[0.0, 0.0, 1.0, 0.22]]
TARGET_AUC = 0.95
TARGET_TIME_SHARE = 0.10
AUTO_GOOD_SHARE = 0.8


@dataclass(frozen=True)
class Scenario:
    reference_chunks: int = 20  # per nominal run: 6 x 20 clean images
    test_runs: int = 20  # two cycles of conditions after the nominal runs
    test_chunks: int = 15
    test_bad_fraction: float = 0.15


QUICK = Scenario(reference_chunks=10, test_runs=10, test_chunks=8)


def grids_of(paths: list[str]) -> np.ndarray:
    from hydra_assets.references import read_image
    from hydra_assets.scores.reference import grey_grid

    return np.stack([grey_grid(read_image(p)[0]) for p in paths])


def auc(truth: np.ndarray, score: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(truth, score)) if 0 < truth.sum() < len(truth) else None


def share(flags: np.ndarray, where: np.ndarray) -> float | None:
    return float(flags[where].mean()) if where.any() else None


def fmt(value: float | None) -> str:
    return "  n/a" if value is None else f"{value:5.3f}"


def scored(reference: list[dict], test: list[dict], mask_regions: list | None, *, auto: bool,
           bad_labels: set[str], grids: dict[str, np.ndarray], auto_runs: int) -> tuple[np.ndarray, np.ndarray]:
    """(score / limit, limit) per test image against the fixed reference or the auto reference of its run."""
    from hydra_assets.masks import mask_array
    from hydra_assets.scores import reference as scoring

    mask = mask_array(*scoring.GRID, mask_regions) if mask_regions else None
    test_grids = np.stack([grids[r["path"]] for r in test])
    if not auto:
        profile = scoring.build(np.stack([grids[r["path"]] for r in reference]), image_size=(1, 1), mask=mask)
        return profile.scores(test_grids) / profile.limit, np.full(len(test), profile.limit)
    history = reference + test
    runs = sorted({r["run"] for r in history})
    by_run = {run: [r for r in history if r["run"] == run] for run in runs}
    good_runs = [run for run in runs
                 if np.mean([r["label"] not in bad_labels for r in by_run[run]]) >= AUTO_GOOD_SHARE]
    out, limits = np.zeros(len(test)), np.zeros(len(test))
    test_runs = np.array([r["run"] for r in test])
    for run in sorted(set(test_runs)):
        chosen = [q for q in good_runs if q < run][-auto_runs:]
        images = [r for q in chosen for r in by_run[q] if r["label"] not in bad_labels]
        profile = scoring.build(np.stack([grids[r["path"]] for r in images]), image_size=(1, 1), mask=mask)
        at = test_runs == run
        out[at] = profile.scores(test_grids[at]) / profile.limit
        limits[at] = profile.limit
    return out, limits


def _median_ms(work, items) -> float:  # type: ignore[no-untyped-def]
    """Median wall time of `work(item)` over the items, each timed on its own (shared cores are noisy)."""
    times = []
    for item in items:
        started = time.perf_counter()
        work(item)
        times.append((time.perf_counter() - started) * 1000)
    return float(np.median(times))


def time_per_image(paths: list[str], profile_images: list[str], input_size: tuple[int, int]) -> dict:
    """Median ms per image of each part: the reference step (decode, grid, score) and the compact classifier
    (decode and resize, forward one at a time, forward in a batch of 20) on the same files."""
    import tensorflow as tf

    from hydra_assets.images import load_rgb
    from hydra_assets.ml.fit import configure_tensorflow
    from hydra_assets.ml.topologies import build_model
    from hydra_assets.references import read_image
    from hydra_assets.scores import reference as scoring

    greys = [read_image(p)[0] for p in paths]
    profile = scoring.build(grids_of(profile_images), image_size=greys[0].shape)
    grids = [scoring.grey_grid(g)[None] for g in greys]
    figures = {"decode_ms": _median_ms(read_image, paths * 2),
               "grid_ms": _median_ms(scoring.grey_grid, greys * 2),
               "score_ms": _median_ms(profile.scores, grids * 5)}

    configure_tensorflow()
    model = build_model("compact", (*input_size, 3), 3)
    # as Predict calls it (ingest/classifier.py): a traced function, not Keras' predict loop
    spec = tf.TensorSpec((None, *input_size, 3), tf.float32)
    forward = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    inputs = [load_rgb(Path(p), input_size)[None] for p in paths]
    batch = np.concatenate(inputs[:20])
    forward(inputs[0]), forward(batch)  # tracing
    figures["input_ms"] = _median_ms(lambda p: load_rgb(Path(p), input_size), paths * 2)
    figures["forward_ms"] = _median_ms(lambda x: forward(x).numpy(), inputs * 2)
    figures["forward_batch_ms"] = _median_ms(lambda x: forward(x).numpy(), [batch] * 10) / len(batch)
    figures["step_ms"] = figures["decode_ms"] + figures["grid_ms"] + figures["score_ms"]
    figures["classifier_ms"] = figures["input_ms"] + figures["forward_ms"]
    figures.update(handoff_ms(paths, profile))
    return figures


def handoff_ms(paths: list[str], profile) -> dict:  # type: ignore[no-untyped-def]
    """The hand-off path (ingest/reference_grids.py) on the same files: in the Feeder, the grid from the image
    it decoded to verify it (grey levels and grid) and its file written; in the reference step, the file read
    (and removed) and the score."""
    from types import SimpleNamespace

    from PIL import Image as PILImage

    from hydra_assets.ingest.reference_grids import grids_dir, image_grid, keep_grid, take_grids

    decoded = []
    for p in paths:
        with PILImage.open(p) as image:
            image.load()
            decoded.append(image.copy())
    with tempfile.TemporaryDirectory() as folder:
        config = SimpleNamespace(images_dir=Path(folder))  # take_grids only reads images_dir
        store = grids_dir(config)  # type: ignore[arg-type]
        store.mkdir()
        grids = [image_grid(image) for image in decoded]
        names = [(f"{k:064x}", (image.height, image.width)) for k, image in enumerate(decoded)]
        out = {"feeder_grid_ms": _median_ms(image_grid, decoded * 2),
               "feeder_write_ms": _median_ms(lambda k: keep_grid(store, *names[k], grids[k]), range(len(names)))}
        taken: list = []
        out["take_ms"] = _median_ms(lambda k: taken.append(take_grids(config, dict([names[k]]))),  # type: ignore[arg-type]
                                    range(len(names)))
    assert all(len(t) == 1 for t in taken), "every kept grid is taken"
    out["handoff_step_ms"] = out["take_ms"] + _median_ms(profile.scores, [g[None] for g in grids] * 5)
    return out


def step_ms(name: str, reference: list[str], test: list[str], chunk: int = 20, rounds: int = 5) -> dict:
    """The pipeline step itself (`references.score_run_in`: the images' rows, the profile, scoring, the rows
    written; SQLite in a scratch home) per image of a chunk of `chunk` images, median over `rounds` chunks
    each way: fed by a pipeline run (the Feeder keeps the grids) and fed without one (the step decodes)."""
    import hashlib

    from hydra_assets import catalog
    from hydra_assets.db.engine import HydraDB
    from hydra_assets.home import initialise
    from hydra_assets.ingest.feeder import feed_files
    from hydra_assets.ingest.scan import FileRef
    from hydra_assets.references import choose_reference, score_run_in
    from hydra_assets.settings import load_settings

    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        config = load_settings(home=work, db_url=f"sqlite:///{work / 'hydra.db'}", images_dir=work / "images",
                               input_dir=work / "incoming")
        initialise(config)
        db = HydraDB(config.db_url)
        db.write(lambda s: catalog.add_plot_type(s, name, "Good,Bad", "Bad", collect_percent=0.0))

        def feed(run: int, paths: list[str], pipeline: bool) -> list[str]:
            refs = []
            for k, source in enumerate(paths):
                data = Path(source).read_bytes()
                refs.append(FileRef(hashlib.sha256(data).hexdigest(), f"{name}-{run}-{k:04d}.png"))
                config.input_dir.mkdir(parents=True, exist_ok=True)
                (config.input_dir / refs[-1].name).write_bytes(data)
            fed = feed_files(db, config, run, refs, dagster_run_id="bench" if pipeline else "").registered
            return [image.digest for image in fed]

        feed(1, reference, False)
        db.write(lambda s: choose_reference(s, config.images_dir, name, [1], by="bench", comment="bench"))
        per_image: dict[bool, list[float]] = {True: [], False: []}
        for k in range(rounds):
            for pipeline in (k % 2 == 0, k % 2 == 1):  # alternate which goes first
                run = 100 + 2 * k + int(pipeline)
                digests = feed(run, test[:chunk], pipeline)
                result = score_run_in(db, run, digests, config=config)
                assert result.scored == len(digests) and result.handed_over == (len(digests) if pipeline else 0)
                per_image[pipeline].append(result.duration_ms / len(digests))
        db.dispose()
    return {"step_handoff_ms": float(np.median(per_image[True])), "step_decode_ms": float(np.median(per_image[False])),
            "step_chunk": chunk}


def classifier_ms(paths: list[str], topology: str, input_size: tuple[int, int]) -> float:
    """Median ms per image of another topology (untrained: the time does not depend on the weights):
    decode and resize, then its forward pass one image at a time."""
    import tensorflow as tf

    from hydra_assets.images import load_rgb
    from hydra_assets.ml.topologies import build_model

    model = build_model(topology, (*input_size, 3), 3)
    spec = tf.TensorSpec((None, *input_size, 3), tf.float32)
    forward = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    forward(np.zeros((1, *input_size, 3), dtype=np.float32))
    return _median_ms(lambda p: forward(load_rgb(Path(p), input_size)[None]).numpy(), paths)


def run_plot_type(spec, scenario: Scenario, work: Path, seed: int, auto_runs: int) -> dict:  # type: ignore[no-untyped-def]
    from hydra_assets.simulate import content, drift
    from hydra_assets.simulate.drift import NOMINAL_RUNS

    scheme = zlib.crc32(b"".join(Path(m.__file__).read_bytes() for m in (content, drift)))  # type: ignore[arg-type]
    key = (f"{spec.name}-s{seed}-{scenario.reference_chunks}x{scenario.test_runs}x{scenario.test_chunks}"
           f"-{scenario.test_bad_fraction}-{scheme:08x}")
    started = time.perf_counter()
    reference = generate(work / "data" / key / "reference", spec.name, range(FIRST_RUN, FIRST_RUN + NOMINAL_RUNS),
                         scenario.reference_chunks, 0.0, seed, by_label=False)
    first = FIRST_RUN + NOMINAL_RUNS
    test = generate(work / "data" / key / "test", spec.name, range(first, first + scenario.test_runs),
                    scenario.test_chunks, scenario.test_bad_fraction, seed, by_label=False)
    made = time.perf_counter() - started
    started = time.perf_counter()
    grids = dict(zip([r["path"] for r in reference + test], grids_of([r["path"] for r in reference + test]),
                     strict=True))
    bad_labels = set(spec.bad)
    truth_bad = np.array([r["label"] in bad_labels for r in test])
    changed = np.array([r["label"] == "Good" and r["condition"] != "nominal" for r in test])
    nominal_good = ~truth_bad & ~changed
    modes = np.array([r["failure"] or (r["condition"] if r["label"] in bad_labels else "") for r in test])
    figures: dict = {}
    for name, auto, regions in (("fixed", False, TITLE_BAND), ("auto", True, TITLE_BAND),
                                ("fixed, no mask", False, None)):
        ratio, _ = scored(reference, test, regions, auto=auto, bad_labels=bad_labels, grids=grids,
                          auto_runs=auto_runs)
        flagged = ratio > 1.0
        figures[name] = {
            "auc": auc(truth_bad, ratio),
            "auc_nominal": auc(truth_bad[truth_bad | nominal_good], ratio[truth_bad | nominal_good]),
            "per_mode": {m: auc(truth_bad[(modes == m) | ~truth_bad], ratio[(modes == m) | ~truth_bad])
                         for m in sorted(set(modes) - {""})},
            "bad_recall": share(flagged, truth_bad),
            "fa_nominal": share(flagged, nominal_good),
            "fa_changed": share(flagged, changed),
            "fa_by_condition": {c: share(flagged, changed & np.array([r["condition"] == c for r in test]))
                                for c in sorted({r["condition"] for r in test} - {"nominal"})},
            "ratio": ratio.tolist(),
        }
    scoring_s = time.perf_counter() - started
    timing = time_per_image([r["path"] for r in test[:40]], [r["path"] for r in reference], (128, 128))
    timing.update(step_ms(spec.name, [r["path"] for r in reference], [r["path"] for r in test
                                                                      if r["label"] not in bad_labels]))
    return {"reference_images": len(reference), "test_images": len(test), "test_bad": int(truth_bad.sum()),
            "changed_good": int(changed.sum()), "nominal_good": int(nominal_good.sum()),
            "truth_bad": truth_bad.tolist(), "figures": figures, "timing": timing,
            "paths": [r["path"] for r in test[:20]],
            "seconds": {"images": round(made, 1), "scoring": round(scoring_s, 1)}}


def report(name: str, row: dict) -> list[str]:
    t = row["timing"]
    lines = [f"== {name}: reference {row['reference_images']} clean nominal images; {row['test_images']} later "
             f"images ({row['test_bad']} Bad, {row['changed_good']} changed-condition Good, {row['nominal_good']} "
             f"nominal Good) ==",
             f"   {'reference':<15} {'AUC':>6} {'AUC nom.':>8} {'Bad recall':>10} {'FA nom.Good':>11} "
             f"{'FA chg.Good':>11}  false alarms by condition"]
    for method, f in row["figures"].items():
        lines.append(f"   {method:<15} {fmt(f['auc']):>6} {fmt(f['auc_nominal']):>8} {fmt(f['bad_recall']):>10} "
                     f"{fmt(f['fa_nominal']):>11} "
                     f"{fmt(f['fa_changed']):>11}  "
                     + " ".join(f"{c} {fmt(v).strip()}" for c, v in f["fa_by_condition"].items()))
    for method in ("fixed", "auto"):
        lines.append(f"   AUC per failure mode ({method}): " + ", ".join(
            f"{m} {fmt(v).strip()}" for m, v in row["figures"][method]["per_mode"].items()))
    lines.append(f"   time per image (ms): reference step {t['step_ms']:.2f} = decode {t['decode_ms']:.2f} + grid "
                 f"{t['grid_ms']:.2f} + score {t['score_ms']:.3f}; compact classifier {t['classifier_ms']:.2f} = "
                 f"decode and resize {t['input_ms']:.2f} + forward {t['forward_ms']:.2f} (in a batch of 20: "
                 f"{t['forward_batch_ms']:.2f}); step / classifier {t['step_ms'] / t['classifier_ms']:.0%}, "
                 f"grid and score / classifier {(t['grid_ms'] + t['score_ms']) / t['classifier_ms']:.0%}")
    lines.append(f"   with the Feeder's grid (normal path): reference step {t['handoff_step_ms']:.3f} = read grid "
                 f"{t['take_ms']:.3f} + score; step / classifier {t['handoff_step_ms'] / t['classifier_ms']:.1%}, "
                 f"/ forward alone {t['handoff_step_ms'] / t['forward_ms']:.1%}; the Feeder pays grey and grid "
                 f"{t['feeder_grid_ms']:.2f} + write {t['feeder_write_ms']:.3f}")
    lines.append(f"   the whole step (score_run_in: rows read, scored, written; SQLite), per image of a "
                 f"{t['step_chunk']}-image chunk: with the Feeder's grids {t['step_handoff_ms']:.2f} "
                 f"({t['step_handoff_ms'] / t['classifier_ms']:.1%} of the classifier), decoding "
                 f"{t['step_decode_ms']:.2f} ({t['step_decode_ms'] / t['classifier_ms']:.0%})")
    return lines


def main() -> None:
    from hydra_assets.references import AUTO_RUNS
    from hydra_assets.simulate import DEMO_PLOT_TYPES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot-types", default="all", help="Comma-separated or `all`.")
    parser.add_argument("--quick", action="store_true", help="CDC_timing and BCAL_eta_phi, fewer images.")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--auto-runs", type=int, default=AUTO_RUNS, help="Runs the auto reference takes.")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "hydra-bench-reference",
                        help="Images are kept here and reused.")
    parser.add_argument("--topologies", default="",
                        help="Also time these topologies' classifier per image, e.g. inceptionv3 (the production "
                             "default; 299x299), against the reference step of the first plot type.")
    parser.add_argument("--save", type=Path, default=None, help="Also write the printed figures to this file.")
    parser.add_argument("--json", type=Path, default=None, help="Also write every figure to this JSON file.")
    args = parser.parse_args()
    scenario = QUICK if args.quick else Scenario()
    specs = {p.name: p for p in DEMO_PLOT_TYPES}
    chosen = "CDC_timing,BCAL_eta_phi" if args.quick and args.plot_types == "all" else args.plot_types
    names = list(specs) if chosen.strip() == "all" else [n.strip() for n in chosen.split(",") if n.strip()]

    started = time.perf_counter()
    lines = [f"bench/reference.py {'--quick ' if args.quick else ''}seed {args.seed}, "
             f"{time.strftime('%Y-%m-%d %H:%M')} UTC",
             f"code: {commits()}",
             f"scenario: {scenario}; auto reference: the newest {args.auto_runs} earlier runs with >= "
             f"{AUTO_GOOD_SHARE:.0%} Good (truth standing in for confirmations); limit: quantile 0.99 of the "
             "reference's own leave-one-out scores; title band masked unless said",
             ""]
    print("\n".join(lines), flush=True)
    results = {}
    for name in names:
        results[name] = run_plot_type(specs[name], scenario, args.work, args.seed, args.auto_runs)
        printed = report(name, results[name])
        print("\n".join(printed) + "\n", flush=True)
        lines += printed + [""]

    summary = []
    for method in ("fixed", "auto", "fixed, no mask"):
        aucs = [r["figures"][method]["auc"] for r in results.values() if r["figures"][method]["auc"] is not None]
        nominal = [r["figures"][method]["auc_nominal"] for r in results.values()
                   if r["figures"][method]["auc_nominal"] is not None]
        ratio = np.concatenate([r["figures"][method]["ratio"] for r in results.values()])
        truth = np.concatenate([r["truth_bad"] for r in results.values()])
        pooled = auc(truth, ratio)
        mean = float(np.mean(aucs)) if aucs else None
        summary.append(f"overall ({method}): mean AUC over plot types {fmt(mean)} (Bad vs nominal Good only: "
                       f"{fmt(float(np.mean(nominal)) if nominal else None)}), pooled AUC of score/limit "
                       f"{fmt(pooled)}; target >= {TARGET_AUC}: "
                       f"{'PASS' if pooled is not None and pooled >= TARGET_AUC else 'MISS'}")
    timing = [r["timing"] for r in results.values()]
    step = float(np.median([t["step_ms"] / t["classifier_ms"] for t in timing]))
    alone = float(np.median([(t["grid_ms"] + t["score_ms"]) / t["classifier_ms"] for t in timing]))
    summary.append(f"time (median over plot types): without the Feeder's grid (the fallback) the reference step "
                   f"takes {step:.0%} of the compact classifier's time per image, most of it decoding the PNG "
                   f"again; grid and score alone "
                   f"{alone:.0%}; target <= {TARGET_TIME_SHARE:.0%}: step {'PASS' if step <= TARGET_TIME_SHARE else 'MISS'}"
                   f", grid and score {'PASS' if alone <= TARGET_TIME_SHARE else 'MISS'}")
    handed = float(np.median([t["handoff_step_ms"] / t["classifier_ms"] for t in timing]))
    forward = float(np.median([t["handoff_step_ms"] / t["forward_ms"] for t in timing]))
    summary.append(f"time with the Feeder's grid (the normal path, ingest/reference_grids.py): the reference step "
                   f"takes {handed:.1%} of the compact classifier's time per image (decode, resize, forward), "
                   f"{forward:.1%} of its forward pass alone (Predict's normal path: its input handed over too); "
                   f"target <= {TARGET_TIME_SHARE:.0%}: {'PASS' if handed <= TARGET_TIME_SHARE else 'MISS'} "
                   f"(vs forward alone: {'PASS' if forward <= TARGET_TIME_SHARE else 'MISS'})")
    whole = float(np.median([t["step_handoff_ms"] / t["classifier_ms"] for t in timing]))
    summary.append(f"time of the whole step with its database work (score_run_in, SQLite, 20-image chunks): "
                   f"{whole:.1%} of the compact classifier's time per image with the Feeder's grids, "
                   f"{float(np.median([t['step_decode_ms'] / t['classifier_ms'] for t in timing])):.0%} decoding; "
                   f"target <= {TARGET_TIME_SHARE:.0%}: {'PASS' if whole <= TARGET_TIME_SHARE else 'MISS'}")
    first = next(iter(results.values()))
    for topology in [t.strip() for t in args.topologies.split(",") if t.strip()]:
        size = {"inceptionv3": (299, 299), "vgg16": (224, 224)}.get(topology, (128, 128))
        ms = classifier_ms(first["paths"], topology, size)
        summary.append(f"time: {topology} {size[0]}x{size[1]} classifies in {ms:.1f} ms per image (decode, resize, "
                       f"forward one at a time); the reference step ({first['timing']['step_ms']:.2f} ms) is "
                       f"{first['timing']['step_ms'] / ms:.1%} of it")
    summary.append(f"total {time.perf_counter() - started:.0f} s")
    print("\n".join(summary))
    lines += summary
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text("\n".join(lines) + "\n")
    if args.json:
        args.json.write_text(json.dumps({k: {**v, "figures": {m: {kk: vv for kk, vv in f.items() if kk != "ratio"}
                                                              for m, f in v["figures"].items()}}
                                         for k, v in results.items()}, indent=1, default=str))


if __name__ == "__main__":
    main()
