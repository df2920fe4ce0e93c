"""Long module: the labeling-loop benchmark (issue 15): which queue makes the expert's labels count most.

    .venv/bin/python bench/loop.py                 # 2 plot types, 6 rounds (22 min at load 7-10 on 2 cores)
    .venv/bin/python bench/loop.py --tiny          # a smoke run on a few tiny images (~2 min on busy cores)
    .venv/bin/python bench/loop.py --save bench/results/loop-$(date +%F).txt

The experiment is bench/drift.py's (`hydra simulate --drift realistic`, docs/simulate.md): runs 0-5 nominal,
then the cycle of changed conditions.  A simulated expert answers every question from the simulated truth.

1. start: 40 labeled images per label (Good, Bad, NoData) from the nominal runs; a model is trained;
2. the *pool*: the images of the next cycle of runs (runs 6-15), arriving in run and chunk order, unlabeled;
3. each round, per strategy, the expert labels `per_round` pool images the strategy offers, the model is
   retrained on everything labeled so far, and judged on the *later runs* (runs 16-25, the next cycle of the
   same conditions, never labeled): Bad recall counting novel Bad as caught, false alarms on Good (confirmed
   Bad on a Good image), the share of Good images called novel (sent to the expert), ROC-AUC;
4. strategies, all over the same candidates — the Labeler's queue: the unlabeled pool images the keep rule
   keeps with the round's model (confirmed Bad, novel, unlike the reference, unconfirmed, and the plot
   type's collect % of the rest; `rules.keep_reason`): `arrival` — today's order (priority, then oldest
   first); and the ranked queues of `hydra_assets/scores/queues.py`: `uncertain` (top-two margin), `novel`
   (novelty over its limit), `reference` (reference score over its limit; profile of the seed's Good
   images), `disagreement` (the previous round's model against the new one — a candidate against the
   active version; filled up with the most uncertain when fewer differ, and all uncertain in round 1).

Training is in-process with the plot types' training rule made small enough for the benchmark: compact
topology on `size` x `size` images, `epochs` epochs, thresholds chosen like `hydra train` (max F1 raised to
the 0.95 precision target) on out-of-fold predictions of a 2-fold cross-validation over runs, the novelty
limit calibrated on the training images (`scores/novelty.py`).  Everything is seeded.

Then the audit figure: `audit_chunks` images of each nominal run, 5 % of their labels flipped on purpose,
out-of-fold weights from a cross-validation over runs (`audit_folds` folds, as training does), ranked by
`hydra_assets/scores/label_audit.py` (cleanlab): how many flipped labels are among the first 100.

Nothing is asserted; targets are printed with PASS/MISS beside the figures.  Images are cached in --work.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FIRST_RUN = 200000
TARGET_FALSE_ALARMS = 0.02  # bench/drift.py's targets
TARGET_RECALL = 0.95
TARGET_LABEL_RATIO = 1 / 3  # ranked queues: at most a third of the labels arrival order needs
AUDIT_FIRST = 100
AUDIT_TARGET = 0.80
PRECISION_TARGET = 0.95  # the plot types' default
STRATEGIES = ("arrival", "uncertain", "novel", "reference", "disagreement")


@dataclass(frozen=True)
class Setup:
    """What the benchmark makes and trains (printed with the figures)."""

    plot_types: tuple[str, ...] = ("CDC_timing", "TOF_multiplicity")
    seed_per_label: int = 40
    pool_runs: int = 10
    pool_chunks: int = 40
    eval_runs: int = 10
    eval_chunks: int = 60  # 600 later images, ~230 Bad: a recall figure finer than one image in 80
    bad_fraction: float = 0.1  # of the live runs (bench/drift.py's test runs)
    rounds: int = 6
    per_round: int = 30
    collect_percent: float = 5.0  # the plot types' default
    size: int = 64
    epochs: int = 5
    batch_size: int = 16
    learning_rate: float = 2e-3
    threshold_folds: int = 2  # 0: thresholds on the training images themselves (the test, fewer fits)
    audit_chunks: int = 80  # per nominal run
    audit_bad_fraction: float = 0.35  # bench/drift.py's training runs
    audit_flip: float = 0.05
    audit_folds: int = 3
    strategies: tuple[str, ...] = field(default=STRATEGIES)


TINY = Setup(plot_types=("CDC_timing",), seed_per_label=6, pool_runs=10, pool_chunks=2, eval_runs=10, eval_chunks=1,
             rounds=2, per_round=4, size=24, epochs=1, audit_chunks=4, audit_folds=2)


# ---- images with truth --------------------------------------------------------------------------------


@dataclass
class Images:
    """Images of one plot type as model input, with their grey grids (reference score) and truth."""

    pixels: np.ndarray  # (n, size, size, 3) float32
    grids: np.ndarray  # (n, h, w) float32: scores/reference.grey_grid of the full image
    truth: np.ndarray  # (n,) label index
    runs: np.ndarray
    chunks: np.ndarray
    conditions: np.ndarray  # condition names

    def __len__(self) -> int:
        return len(self.truth)

    def take(self, at: np.ndarray) -> Images:
        return Images(self.pixels[at], self.grids[at], self.truth[at], self.runs[at], self.chunks[at],
                      self.conditions[at])


def make(plot_type: str, plan: list[tuple[int, int, dict]], size: int, seed: int, cache: Path | None) -> Images:
    """Images of `plan` — (run, chunk, generate_image keywords) — decoded like the pipeline; cached."""
    from PIL import Image as PILImage

    from hydra_assets.images import rgb_pixels
    from hydra_assets.scores.reference import grey_grid
    from hydra_assets.simulate.experiment import LABELS, generate_image

    if cache is not None and cache.is_file():
        with np.load(cache) as stored:
            return Images(*(stored[k] for k in ("pixels", "grids", "truth", "runs", "chunks", "conditions")))
    pixels, grids, truth, runs, chunks, conditions = [], [], [], [], [], []
    for run, chunk, keywords in plan:
        png, record = generate_image(plot_type, run=run, chunk=chunk, **keywords)
        with PILImage.open(io.BytesIO(png)) as image:
            image.load()
            pixels.append(rgb_pixels(image, (size, size)))
            grids.append(grey_grid(np.asarray(image.convert("RGB"))))
        truth.append(LABELS.index(record["label"]))
        runs.append(run)
        chunks.append(chunk)
        conditions.append(record.get("condition", "nominal"))
    out = Images(np.stack(pixels), np.stack(grids), np.array(truth), np.array(runs), np.array(chunks),
                 np.array(conditions))
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(cache, **asdict(out))
    return out


def stream_plan(plot_type: str, first: int, runs: int, chunks: int, bad_fraction: float, seed: int,
                chunk_offset: int = 0) -> list[tuple[int, int, dict]]:
    """Runs as the experiment produces them (drift `realistic`), in arrival order."""
    from hydra_assets.simulate.drift import run_condition
    from hydra_assets.simulate.experiment import plan_chunk

    plan = []
    for run in range(first, first + runs):
        condition = run_condition("realistic", plot_type, run, first_run=FIRST_RUN, seed=seed)
        for chunk in range(chunk_offset, chunk_offset + chunks):
            ((_, failure, image_seed),) = plan_chunk(run=run, chunk=chunk, plot_types=[plot_type],
                                                    bad_fraction=bad_fraction, seed=seed)
            plan.append((run, chunk, {"failure": failure, "seed": image_seed, "condition": condition}))
    return plan


def seed_plan(plot_type: str, per_label: int, seed: int) -> list[tuple[int, int, dict]]:
    """`per_label` images of every label from the nominal runs (the expert's first labels)."""
    from hydra_assets.simulate.drift import NOMINAL_CONDITION, NOMINAL_RUNS
    from hydra_assets.simulate.experiment import LABELS, image_seed

    plan = []
    for k, label in enumerate(LABELS):
        for n in range(per_label):
            run, chunk = FIRST_RUN + n % NOMINAL_RUNS, 1000 * (k + 1) + n
            plan.append((run, chunk, {"label": label, "seed": image_seed(seed, plot_type, run, chunk, purpose=1),
                                      "condition": NOMINAL_CONDITION}))
    return plan


@dataclass
class Data:
    seed: Images
    pool: Images
    later: Images
    audit: Images


def make_data(plot_type: str, setup: Setup, seed: int, work: Path | None) -> Data:
    from hydra_assets.simulate import content, drift
    from hydra_assets.simulate.drift import NOMINAL_RUNS

    scheme = zlib.crc32(b"".join(Path(m.__file__).read_bytes() for m in (content, drift)))  # type: ignore[arg-type]

    def cache(part: str, *numbers: float) -> Path | None:
        key = "-".join(str(n) for n in numbers)
        return None if work is None else work / "data" / f"{plot_type}-{part}-s{seed}-{setup.size}px-{key}-{scheme:08x}.npz"

    pool_first = FIRST_RUN + NOMINAL_RUNS
    later_first = pool_first + setup.pool_runs
    return Data(
        seed=make(plot_type, seed_plan(plot_type, setup.seed_per_label, seed), setup.size, seed,
                  cache("seed", setup.seed_per_label)),
        pool=make(plot_type, stream_plan(plot_type, pool_first, setup.pool_runs, setup.pool_chunks, setup.bad_fraction,
                                         seed), setup.size, seed,
                  cache("pool", setup.pool_runs, setup.pool_chunks, setup.bad_fraction)),
        later=make(plot_type, stream_plan(plot_type, later_first, setup.eval_runs, setup.eval_chunks,
                                          setup.bad_fraction, seed), setup.size, seed,
                   cache("later", setup.eval_runs, setup.eval_chunks, setup.bad_fraction)),
        audit=make(plot_type, stream_plan(plot_type, FIRST_RUN, NOMINAL_RUNS, setup.audit_chunks,
                                          setup.audit_bad_fraction, seed, chunk_offset=3000), setup.size, seed,
                   cache("audit", setup.audit_chunks, setup.audit_bad_fraction)))


# ---- training and classifying -------------------------------------------------------------------------


def fit_model(pixels: np.ndarray, targets: np.ndarray, setup: Setup, seed: int):  # type: ignore[no-untyped-def]
    from hydra_assets.ml.fit import fit
    from hydra_assets.simulate.experiment import LABELS

    model, _ = fit((pixels, targets), None, list(LABELS), topology="compact", input_size=(setup.size, setup.size),
                   epochs=setup.epochs, batch_size=setup.batch_size, learning_rate=setup.learning_rate, seed=seed,
                   keep_best=False, logger=_Quiet())
    return model


class _Quiet:
    def info(self, *args: object) -> None:
        pass


def out_of_fold(pixels: np.ndarray, targets: np.ndarray, runs: np.ndarray, folds: int, setup: Setup,
                seed: int) -> np.ndarray:
    """Weights of every image from a model that did not train on its run (cross-validation over runs)."""
    from sklearn.model_selection import GroupKFold

    from hydra_assets.ml.fit import predict
    from hydra_assets.simulate.experiment import LABELS

    out = np.zeros((len(targets), len(LABELS)), dtype=np.float32)
    for k, (kept, held) in enumerate(GroupKFold(min(folds, len(np.unique(runs)))).split(pixels, targets, runs)):
        model = fit_model(pixels[kept], targets[kept], setup, seed + 100 + k)
        out[held] = predict(model, pixels[held], (setup.size, setup.size))
    return out


@dataclass
class Trained:
    model: object
    thresholds: dict[str, float]
    novelty: object  # scores.novelty.NoveltyReference


def train(images: Images, setup: Setup, seed: int) -> Trained:
    """The model on every labeled image; thresholds on out-of-fold predictions; novelty limit on its training."""
    from hydra_assets.ml.embedding import embed
    from hydra_assets.ml.fit import predict
    from hydra_assets.ml.thresholds import select_thresholds
    from hydra_assets.scores import novelty
    from hydra_assets.simulate.experiment import BAD_LABELS, LABELS

    model = fit_model(images.pixels, images.truth, setup, seed)
    if setup.threshold_folds >= 2:
        held_out = out_of_fold(images.pixels, images.truth, images.runs, setup.threshold_folds, setup, seed)
    else:  # the test's shortcut (fewer fits): thresholds on the training images' own weights
        held_out = predict(model, images.pixels, (setup.size, setup.size))
    chosen = select_thresholds(held_out, images.truth, list(LABELS), list(BAD_LABELS),
                               precision_target=PRECISION_TARGET)
    features, _ = embed(model, images.pixels)
    return Trained(model, {name: t.threshold for name, t in chosen.items()}, novelty.calibrate(features))


@dataclass
class Classified:
    weights: np.ndarray
    top: np.ndarray
    confirmed: np.ndarray
    alarm: np.ndarray
    novelty: np.ndarray
    limit: float

    @property
    def novel(self) -> np.ndarray:
        return self.novelty > self.limit


def classify(trained: Trained, images: Images) -> Classified:
    """What Predict decides per image: top label, confirmed (threshold reached and not novel), alarm."""
    from hydra_assets.ml.embedding import embed
    from hydra_assets.rules import confirmed_top
    from hydra_assets.simulate.experiment import BAD_LABELS, LABELS

    features, weights = embed(trained.model, images.pixels)  # type: ignore[arg-type]
    scores = trained.novelty.scores(features)  # type: ignore[attr-defined]
    limit = float(trained.novelty.limit)  # type: ignore[attr-defined]
    top, reached = confirmed_top(weights, list(LABELS), trained.thresholds)
    confirmed = reached & ~(scores > limit)
    bad = np.isin(top, [LABELS.index(b) for b in BAD_LABELS])
    return Classified(weights, top, confirmed, confirmed & bad, scores, limit)


def judge(result: Classified, images: Images) -> dict:
    """Figures on the later runs, as bench/drift.py counts them."""
    from sklearn.metrics import roc_auc_score

    from hydra_assets.simulate.experiment import BAD_LABELS, LABELS

    bad_index = [LABELS.index(b) for b in BAD_LABELS]
    truth_bad = np.isin(images.truth, bad_index)
    good = ~truth_bad
    caught = result.alarm | result.novel
    missed = truth_bad & ~caught
    return {"bad": int(truth_bad.sum()), "missed": {str(c): int(n) for c, n in zip(*np.unique(
                images.conditions[missed], return_counts=True), strict=True)},
            "bad_recall": float(caught[truth_bad].mean()) if truth_bad.any() else None,
            "false_alarms": float(result.alarm[good].mean()) if good.any() else None,
            "novel_good": float(result.novel[good].mean()) if good.any() else None,
            "auc": float(roc_auc_score(truth_bad, result.weights[:, bad_index].sum(axis=1)))
            if 0 < truth_bad.sum() < len(truth_bad) else None}


def reached(figures: dict) -> bool:
    return (figures["bad_recall"] is not None and figures["bad_recall"] >= TARGET_RECALL
            and figures["false_alarms"] is not None and figures["false_alarms"] <= TARGET_FALSE_ALARMS)


# ---- the queues ----------------------------------------------------------------------------------------


def queued(pool: Images, result: Classified, unlabeled: np.ndarray, reference: tuple[np.ndarray, float],
           collect_percent: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The Labeler's queue: the unlabeled images the keep rule keeps (`rules.keep_reason`: confirmed Bad,
    novel, unlike the reference, unconfirmed, and collect % of the rest), in arrival order, with their
    queue priority (`rules.queue_priority`: 0 for the reasons above, 1 for collected)."""
    from hydra_assets.rules import collect_draw, keep_reason, queue_priority
    from hydra_assets.simulate.experiment import BAD_LABELS, LABELS

    bad_index = [LABELS.index(b) for b in BAD_LABELS]
    scores, limit = reference
    kept, priorities = [], []
    for i in unlabeled:
        reason = keep_reason("classified", confirmed=bool(result.confirmed[i]), is_bad=int(result.top[i]) in bad_index,
                             collect_percent=collect_percent, novel=bool(result.novel[i]),
                             unlike_reference=bool(scores[i] > limit),
                             draw=collect_draw(f"{pool.runs[i]}:{pool.chunks[i]}", seed))
        if reason is not None:
            kept.append(int(i))
            priorities.append(queue_priority(reason))
    return np.array(kept, dtype=np.int64), np.array(priorities, dtype=np.int64)


def offer(strategy: str, pool: Images, unlabeled: np.ndarray, current: Classified, previous: Classified | None,
          reference: tuple[np.ndarray, float], setup: Setup, seed: int) -> np.ndarray:
    """The pool positions a strategy offers, first = labeled first: the same queued images (`queued`, from
    `unlabeled` in arrival order), in arrival order (priority first, as the Labeler) or ranked."""
    from hydra_assets.scores import queues

    candidates, priorities = queued(pool, current, unlabeled, reference, setup.collect_percent, seed)
    if strategy == "arrival":
        return candidates[np.argsort(priorities, kind="stable")]
    uncertain = candidates[queues.rank_uncertain(current.weights[candidates].reshape(len(candidates), -1))]
    if strategy == "uncertain":
        return uncertain
    if strategy == "novel":
        return candidates[queues.rank_novel(current.novelty[candidates], current.limit)]
    if strategy == "reference":
        scores, limit = reference
        return candidates[queues.rank_reference(scores[candidates], limit)]
    if strategy == "disagreement":  # then the most uncertain: the expert goes on labeling
        differ = np.zeros(0, dtype=np.int64) if previous is None else candidates[queues.rank_disagreement(
            previous.top[candidates], current.top[candidates], current.weights[candidates].max(axis=1))]
        return np.concatenate([differ, uncertain[~np.isin(uncertain, differ)]])
    raise ValueError(f"unknown strategy {strategy!r}; one of {', '.join(STRATEGIES)}")


# ---- the loop ---------------------------------------------------------------------------------------


def run_loop(data: Data, setup: Setup, seed: int, say: Callable[[str], None] = print) -> dict[str, list[dict]]:
    """Per strategy, one row per round (round 0: the seed labels only, shared by every strategy)."""
    from hydra_assets.scores import reference as reference_score
    from hydra_assets.simulate.experiment import HEIGHT, WIDTH

    good_seed = data.seed.truth == 0  # the reference: the seed's Good images of the nominal runs
    profile = reference_score.build(data.seed.grids[good_seed], image_size=(HEIGHT, WIDTH))
    reference = (profile.scores(data.pool.grids), float(profile.limit))
    started = time.perf_counter()
    base = train(data.seed, setup, seed)
    base_pool, base_later = classify(base, data.pool), judge(classify(base, data.later), data.later)
    say(f"   round 0 (seed labels only): {_row_text(base_later)} ({time.perf_counter() - started:.0f} s)")
    out: dict[str, list[dict]] = {}
    for strategy in setup.strategies:
        rows = [{"round": 0, "labels": len(data.seed), "added": 0, "picked": [], "picked_bad": 0, **base_later}]
        labeled: list[int] = []
        current, previous = base_pool, None
        for round_number in range(1, setup.rounds + 1):
            started = time.perf_counter()
            unlabeled = np.setdiff1d(np.arange(len(data.pool)), np.array(labeled, dtype=np.int64))
            chosen = [int(i) for i in offer(strategy, data.pool, unlabeled, current, previous, reference, setup,
                                            seed)[:setup.per_round]]
            labeled += chosen
            trained = train(_concat(data.seed, data.pool.take(np.array(labeled, dtype=np.int64))), setup,
                            seed + round_number)
            previous, current = current, classify(trained, data.pool)
            figures = judge(classify(trained, data.later), data.later)
            rows.append({"round": round_number, "labels": len(data.seed) + len(labeled), "added": len(labeled),
                         "picked": chosen, "picked_bad": int((data.pool.truth[chosen] != 0).sum()), **figures})
            say(f"   {strategy:<12} round {round_number}: +{len(chosen)} ({rows[-1]['picked_bad']} Bad/NoData) "
                f"{_row_text(figures)} ({time.perf_counter() - started:.0f} s)")
        out[strategy] = rows
    return out


def _concat(a: Images, b: Images) -> Images:
    return Images(*(np.concatenate([getattr(a, k), getattr(b, k)]) for k in
                    ("pixels", "grids", "truth", "runs", "chunks", "conditions")))


def labels_needed(rows: list[dict]) -> int | None:
    """Labels added by the loop when the targets were first reached (None: not within the rounds)."""
    return next((r["added"] for r in rows if reached(r)), None)


# ---- the audit ----------------------------------------------------------------------------------------


def audit_figure(images: Images, setup: Setup, seed: int) -> dict:
    """Flip `audit_flip` of the labels; how many of them the audit queue's first 100 hold."""
    from hydra_assets.scores.label_audit import audit
    from hydra_assets.simulate.experiment import LABELS

    rng = np.random.default_rng([seed, 15])
    flipped = np.sort(rng.choice(len(images), max(1, int(round(setup.audit_flip * len(images)))), replace=False))
    given = images.truth.copy()
    given[flipped] = (given[flipped] + rng.integers(1, len(LABELS), len(flipped))) % len(LABELS)
    started = time.perf_counter()
    weights = out_of_fold(images.pixels, given, images.runs, setup.audit_folds, setup, seed)
    checks = audit(given, weights)
    first = min(AUDIT_FIRST, len(images))
    shown = {c.position for c in checks[:first]}
    return {"images": len(images), "flipped": len(flipped), "first": first,
            "caught": int(sum(int(k) in shown for k in flipped)),
            "issues": int(sum(c.is_issue for c in checks)),
            "flipped_issues": int(sum(c.is_issue for c in checks if c.position in set(flipped.tolist()))),
            "oof_accuracy_true": float((weights.argmax(axis=1) == images.truth).mean()),
            "seconds": time.perf_counter() - started}


# ---- printing ------------------------------------------------------------------------------------------


def _fmt(value: float | None) -> str:
    return "  n/a" if value is None else f"{value:5.3f}"


def _missed(f: dict) -> str:
    """Missed Bad images of the later runs by condition, e.g. `3 (degrading 2, nominal 1)`."""
    missed = f.get("missed") or {}
    total = sum(missed.values())
    return f"{total}" + (f" ({', '.join(f'{c} {n}' for c, n in missed.items())})" if total else "")


def _row_text(f: dict) -> str:
    return (f"Bad recall {_fmt(f['bad_recall'])} (missed {_missed(f)}), false alarms {_fmt(f['false_alarms'])}, "
            f"novel Good {_fmt(f['novel_good'])}, AUC {_fmt(f['auc'])}")


def report(name: str, loop: dict[str, list[dict]], audited: dict, setup: Setup) -> list[str]:
    lines = [f"== {name}: Bad recall (novel Bad counted as caught) / false alarms (confirmed Bad on Good) / novel "
             f"share of Good / ROC-AUC on the later runs, per round (labels = total labeled; +added by the loop) =="]
    for strategy, rows in loop.items():
        lines.append(f"   {strategy}")
        lines.append(f"   {'round':>5} {'labels':>6} {'+added':>6} {'Bad picked':>10} {'Bad recall':>10} "
                     f"{'false al.':>9} {'novel Good':>10} {'AUC':>6} {'targets':>7}")
        for r in rows:
            lines.append(f"   {r['round']:>5} {r['labels']:>6} {r['added']:>6} {r['picked_bad']:>10} "
                         f"{_fmt(r['bad_recall']):>10} {_fmt(r['false_alarms']):>9} {_fmt(r['novel_good']):>10} "
                         f"{_fmt(r['auc']):>6} {'met' if reached(r) else '-':>7}  missed Bad: {_missed(r)}")
    lines.append("   labels added until the targets (recall >= "
                 f"{TARGET_RECALL:.2f} and false alarms <= {TARGET_FALSE_ALARMS:.2f}) were first met:")
    limit = setup.rounds * setup.per_round
    arrival = labels_needed(loop["arrival"]) if "arrival" in loop else None
    for strategy, rows in loop.items():
        needed = labels_needed(rows)
        text = (f"{needed} (total {needed + rows[0]['labels']})" if needed is not None
                else f"not reached within {setup.rounds} rounds ({rows[-1]['added']} labels added)")
        verdict = ""
        if strategy != "arrival" and "arrival" in loop:
            if needed is None:
                verdict = "  MISS (not reached)"
            elif arrival is None:
                verdict = (f"  PASS (arrival order needs more than {limit}: a third of that is more than {limit // 3})"
                           if needed <= limit // 3 else
                           f"  UNDECIDED (arrival order needs more than {limit}; {needed} is more than a third of "
                           f"{limit}: more rounds would tell)")
            else:
                verdict = (f"  {'PASS' if needed <= arrival * TARGET_LABEL_RATIO else 'MISS'} "
                           f"(a third of arrival's {arrival} is {arrival * TARGET_LABEL_RATIO:.0f})")
        lines.append(f"     {strategy:<12} {text}{verdict}")
    share = audited["caught"] / audited["flipped"]
    lines.append(f"   audit: {audited['images']} labeled images of the nominal runs, {audited['flipped']} labels "
                 f"flipped; out-of-fold weights from {setup.audit_folds}-fold cross-validation over runs "
                 f"({audited['seconds']:.0f} s; out-of-fold accuracy against the true labels "
                 f"{audited['oof_accuracy_true']:.3f}); cleanlab issues {audited['issues']} "
                 f"({audited['flipped_issues']} of them flipped)")
    lines.append(f"   target: the audit queue's first {audited['first']} hold >= {AUDIT_TARGET:.0%} of the flipped "
                 f"labels: {audited['caught']}/{audited['flipped']} = {share:.0%} "
                 f"{'PASS' if share >= AUDIT_TARGET else 'MISS'}")
    return lines


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from drift import commits  # type: ignore[import-not-found]

    from hydra_assets.ml.fit import configure_tensorflow

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="A smoke run on a few tiny images.")
    parser.add_argument("--plot-types", default=None, help="Comma-separated demo plot types.")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--later-chunks", type=int, default=None,
                        help=f"Chunks per later run judged (default {Setup.eval_chunks}): more, finer recall figures.")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "hydra-bench-loop",
                        help="Generated images are cached here.")
    parser.add_argument("--save", type=Path, default=None, help="Also write the printed figures to this file.")
    parser.add_argument("--json", type=Path, default=None, help="Also write every figure to this JSON file.")
    args = parser.parse_args()
    setup = TINY if args.tiny else Setup()
    if args.plot_types:
        setup = replace(setup, plot_types=tuple(p.strip() for p in args.plot_types.split(",") if p.strip()))
    if args.rounds is not None:
        setup = replace(setup, rounds=args.rounds)
    if args.later_chunks is not None:
        setup = replace(setup, eval_chunks=args.later_chunks)
    configure_tensorflow()
    started = time.perf_counter()
    lines = [f"bench/loop.py {'--tiny ' if args.tiny else ''}seed {args.seed}, {time.strftime('%Y-%m-%d %H:%M')} UTC, "
             f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
             f"code: {commits()}", f"setup: {setup}", ""]
    print("\n".join(lines), flush=True)
    results = {}
    for name in setup.plot_types:
        begun = time.perf_counter()
        data = make_data(name, setup, args.seed, args.work)
        print(f"{name}: {len(data.seed)} seed, {len(data.pool)} pool, {len(data.later)} later-run, {len(data.audit)} "
              f"audit images ({time.perf_counter() - begun:.0f} s)", flush=True)
        loop = run_loop(data, setup, args.seed)
        audited = audit_figure(data.audit, setup, args.seed)
        results[name] = {"loop": loop, "audit": audited}
        printed = report(name, loop, audited, setup) + [f"   ({time.perf_counter() - begun:.0f} s for {name})", ""]
        print("\n".join(printed), flush=True)
        lines += printed
    lines.append(f"total {time.perf_counter() - started:.0f} s wall, {time.process_time():.0f} s CPU of this process, "
                 f"load average {os.getloadavg()[0]:.1f}")
    print(lines[-1])
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text("\n".join(lines) + "\n")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
