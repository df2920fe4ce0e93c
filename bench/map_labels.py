"""Labeling actions to reach Bad recall 0.95: one image at a time versus painting clusters on the map.

    .venv/bin/python bench/map_labels.py                 # 2 plot types x 1,200 images, PCA and UMAP (~3 min; 5 on busy cores)
    .venv/bin/python bench/map_labels.py --quick         # 1 plot type, 300 images, PCA only (~30 s)
    .venv/bin/python bench/map_labels.py --save bench/results/map-labels-$(date +%F).txt

The experiment is `hydra simulate --drift realistic` (docs/simulate.md): runs 0-5 nominal, then gain shifts,
occupancy changes, a new setting (Good, another shape) and a degradation growing over five runs (Bad from
severity 0.5), on top of the usual failure modes (10 % of images). A simulated expert answers from the known
truth. "Bad" below means any bad label (Bad or NoData).

(a) **one image at a time**, in arrival order: one action per image, until 95 % of the Bad images carry a
    label. (Every Bad one is labeled right; the count is where the 95th percent of the Bad arrive.)
(b) **painting clusters on the map** (the page `/map`, docs/pages.md "Map"): the images' features (no model:
    the map's pixel features, `hydra_assets/similarity.py`), projected to 2-D, clustered with KMeans on the
    projection (the lasso of a cluster). The expert looks at a cluster's thumbnails: when at least
    `--purity` of it shares one label, one paint stores that label for all of it (one action; the minority
    gets a wrong label); otherwise the cluster is split in two (KMeans again, what a smaller lasso does)
    and each half is judged the same way; a group of at most `--single` images is labeled image by image
    (one action each, no mistakes). The expert paints the Bad-looking clusters first (most Bad first), and
    stops when Bad recall reaches 0.95. Bad images a Good paint covered (the minority of a cluster) are
    mistakes; when the paints alone stay below 0.95, the expert relabels enough of those odd ones out, one
    action each ("fixes", counted in (b)'s actions).

Printed: actions of (a) and (b), their ratio, and what painting costs: images labeled, wrong labels among
them (Good painted Bad: false alarms in the training set; Bad painted Good: missed), label purity.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hydra_assets.similarity import PCA, UMAP, grayscale, project
from hydra_assets.simulate.drift import run_condition
from hydra_assets.simulate.experiment import BAD_LABELS, label_of, plan_chunk, render_image

TARGET_RECALL = 0.95
FIRST_RUN = 1


def simulate(plot_type: str, images: int, chunks_per_run: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """Pixel features and truth labels of `images` images in arrival order (runs of `chunks_per_run` chunks)."""
    rows, truth = [], []
    for n in range(images):
        run, chunk = FIRST_RUN + n // chunks_per_run, 1 + n % chunks_per_run
        (_name, failure, image_seed), = plan_chunk(run=run, chunk=chunk, plot_types=[plot_type], bad_fraction=0.1,
                                                   seed=seed)
        condition = run_condition("realistic", plot_type, run, first_run=FIRST_RUN, seed=seed)
        pixels, _box, _content = render_image(plot_type, run=run, chunk=chunk, failure=failure, seed=image_seed,
                                              condition=condition)
        rows.append(grayscale(pixels))
        truth.append(label_of(failure, condition))
    return np.stack(rows), truth


def one_at_a_time(bad: np.ndarray) -> int:
    """Actions (images labeled in arrival order) until 95 % of the Bad images are labeled."""
    needed = int(np.ceil(TARGET_RECALL * bad.sum()))
    return int(np.searchsorted(np.cumsum(bad), needed) + 1)


@dataclass
class Painting:
    actions: int = 0
    paints: int = 0  # actions that painted a whole group
    singles: int = 0  # actions that labeled one image
    labeled: int = 0
    good_as_bad: int = 0
    bad_as_good: int = 0
    wrong: int = 0  # any wrong label (Bad vs NoData included)
    paint_recall: float = 0.0  # Bad recall of the paints (and singles) alone
    fixes: int = 0  # Bad images painted Good, then relabeled one by one to reach the target
    recall: float = 0.0


def paint_clusters(xy: np.ndarray, truth: list[str], *, clusters: int, purity: float, single: int, seed: int
                   ) -> Painting:
    """Strategy (b): judge clusters (Bad-looking first), paint pure ones, split mixed ones; stop at recall 0.95."""
    from sklearn.cluster import KMeans

    labels = np.array(truth)
    bad = np.isin(labels, BAD_LABELS)
    found = KMeans(n_clusters=min(clusters, len(xy)), n_init=4, random_state=seed).fit_predict(xy)
    queue = [np.flatnonzero(found == c) for c in range(found.max() + 1)]
    queue = [g for g in queue if len(g)]
    result = Painting()
    painted_bad = np.zeros(len(xy), bool)
    target = TARGET_RECALL * bad.sum()

    def bad_share(group: np.ndarray) -> float:
        return float(bad[group].mean())

    while queue and painted_bad.sum() < target:
        queue.sort(key=bad_share, reverse=True)  # the expert sees which clusters look Bad
        group = queue.pop(0)
        if bad_share(group) == 0.0:
            break  # only Good-looking clusters left: nothing more to find there
        values, counts = np.unique(labels[group], return_counts=True)
        top = values[int(np.argmax(counts))]
        if counts.max() / len(group) >= purity:
            result.actions += 1
            result.paints += 1
            result.labeled += len(group)
            top_bad = top in BAD_LABELS
            result.wrong += int((labels[group] != top).sum())
            result.good_as_bad += int((~bad[group]).sum()) if top_bad else 0
            result.bad_as_good += 0 if top_bad else int(bad[group].sum())
            if top_bad:
                painted_bad[group] = True
        elif len(group) <= single:
            result.actions += len(group)
            result.singles += len(group)
            result.labeled += len(group)
            painted_bad[group[bad[group]]] = True
        else:
            halves = KMeans(n_clusters=2, n_init=2, random_state=seed).fit_predict(xy[group])
            parts = [group[halves == h] for h in (0, 1)]
            if min(len(p) for p in parts) == 0:  # identical points: split by order instead
                parts = [group[: len(group) // 2], group[len(group) // 2:]]
            queue.extend(parts)
    result.paint_recall = float(painted_bad.sum() / max(1, bad.sum()))
    result.fixes = max(0, int(np.ceil(target - painted_bad.sum())))
    result.fixes = min(result.fixes, result.bad_as_good)  # only those the expert saw in a painted cluster
    result.actions += result.fixes
    result.recall = float((painted_bad.sum() + result.fixes) / max(1, bad.sum()))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plot-types", default="CDC_timing,FDC_occupancy")
    parser.add_argument("--images", type=int, default=1200, help="images per plot type")
    parser.add_argument("--chunks-per-run", type=int, default=40)
    parser.add_argument("--clusters", type=int, default=40, help="KMeans clusters on the 2-D map")
    parser.add_argument("--purity", type=float, default=0.9, help="share of one label at which the expert paints")
    parser.add_argument("--single", type=int, default=4, help="groups this small are labeled image by image")
    parser.add_argument("--methods", default=f"{PCA},{UMAP}")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--save", type=Path)
    args = parser.parse_args(argv)
    plot_types = args.plot_types.split(",")
    methods = args.methods.split(",")
    if args.quick:
        plot_types, args.images, methods = plot_types[:1], 300, [PCA]
    lines = [f"map labels benchmark: {args.images} images per plot type, drift realistic, seed {args.seed}, "
             f"{args.clusters} clusters, purity {args.purity}, singles <= {args.single}; target Bad recall "
             f"{TARGET_RECALL}"]
    totals: dict[str, list[int]] = {m: [0, 0] for m in methods}
    for plot_type in plot_types:
        started = time.perf_counter()
        features, truth = simulate(plot_type, args.images, args.chunks_per_run, args.seed)
        bad = np.isin(np.array(truth), BAD_LABELS)
        single = one_at_a_time(bad)
        lines.append(f"{plot_type}: {len(truth)} images, {int(bad.sum())} Bad ({bad.mean():.1%}); simulated in "
                     f"{time.perf_counter() - started:.0f} s")
        lines.append(f"  (a) one image at a time, arrival order: {single} actions")
        for method in methods:
            started = time.perf_counter()
            xy = project(features, method, seed=args.seed)
            projected = time.perf_counter() - started
            painting = paint_clusters(xy, truth, clusters=args.clusters, purity=args.purity, single=args.single,
                                      seed=args.seed)
            purity = 1.0 - painting.wrong / max(1, painting.labeled)
            fixed = 1.0 - (painting.wrong - painting.fixes) / max(1, painting.labeled)
            lines.append(
                f"  (b) painting clusters on the {method} map: {painting.actions} actions ({painting.paints} paints, "
                f"{painting.singles} single images, {painting.fixes} fixes), recall {painting.paint_recall:.3f} from "
                f"painting, {painting.recall:.3f} with fixes; ratio (a)/(b) "
                f"{single / max(1, painting.actions):.1f}x; {painting.labeled} images labeled, {painting.wrong} "
                f"wrong before fixes (label purity {purity:.3f}: {painting.good_as_bad} Good painted Bad, {painting.bad_as_good} "
                f"Bad painted Good; {fixed:.3f} after fixes); projection {projected:.1f} s")
            totals[method][0] += single
            totals[method][1] += painting.actions
    for method, (single, painted) in totals.items():
        lines.append(f"all plot types, {method}: (a) {single} actions, (b) {painted} actions, ratio "
                     f"{single / max(1, painted):.1f}x")
    text = "\n".join(lines)
    print(text)
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
