"""Per-label thresholds: max F1 on the run-held-out validation predictions, raised to reach a precision target.

A label is *confirmed* for an image iff it is the image's top label and its weight is at or above the
label's threshold (`hydra_assets.rules.decided_index`).  Thresholds are chosen, and every figure reported,
with exactly that rule, so the per-label precision, recall and F1 agree with the confusion matrix shown
beside them (an image whose top label is another one is never counted as confirmed for this label).

For each label we score every distinct weight of the images it tops as a candidate cut (one sort and a
cumulative sum, vectorised: a million predictions take well under a second) and keep the cut with the
highest F1.  Then the **precision target** (the plot type's `precision_target`, default 0.95): when the
max-F1 cut confirms with a lower precision, the threshold is raised to the lowest cut whose precision
reaches the target; when no cut does, the threshold is 1.0 (never confirms) with a warning.  With two labels
max-F1 alone lands near 0.5 and "confirmed" then means "top label" — the target is what stops that.

Choices, and why:
- **Ties** between cuts with the same F1 are broken by what a miss costs: for a *bad* label the lowest
  cut wins (catch every Bad, the shift crew can dismiss a false alarm), for a good label the highest
  (an image not confirmed Good goes to the labeling queue rather than being waved through).
- The threshold sits **halfway** between the lowest weight it confirms and the next lower weight seen,
  so a new image is judged with the same margin on either side instead of sitting on the edge of the
  validation set.  When nothing lower was seen it is that lowest weight itself.
- A label **never present** in the validation set has no F1: its threshold is 1.0 (confirm only a
  certain model) and its F1 is recorded as None, so such images go to the labeling queue.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hydra_assets.rules import decided_index

NEVER_SEEN_THRESHOLD = 1.0
NEVER_CONFIRMS = 1.0  # no cut reaches the precision target


@dataclass(frozen=True)
class LabelThreshold:
    label: str
    threshold: float
    f1: float | None
    precision: float | None
    recall: float | None
    support: int  # validation images carrying the label
    rule: str = ""  # one line: how the threshold was chosen (shown in the Library)


def _curve(y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct cuts (descending) and the true and false positives confirmed at each (weight >= cut)."""
    order = np.argsort(-w, kind="stable")
    w_sorted, y_sorted = w[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(w_sorted) != 0), len(w_sorted) - 1]  # last image of each distinct weight
    return w_sorted[last], np.cumsum(y_sorted)[last], np.cumsum(~y_sorted)[last]


def max_f1_threshold(y_true: np.ndarray, weights: np.ndarray, *, prefer: str = "recall",
                     precision_target: float | None = None, positives: int | None = None) -> LabelThreshold:
    """Best cut for one label: `y_true` booleans (the label is the human one), `weights` the model's output.

    Only images the label could confirm are passed (those it tops); `positives` counts every image that
    carries the label (default: those passed), so recall counts the ones another label topped as missed.
    `prefer` = "recall" takes the lowest of equally good cuts, "precision" the highest.  With a
    `precision_target` a max-F1 cut of lower precision is raised to the lowest cut that reaches it.
    """
    y = np.asarray(y_true, dtype=bool).ravel()
    w = np.asarray(weights, dtype=np.float64).ravel()
    if y.shape != w.shape:
        raise ValueError(f"labels {y.shape} and weights {w.shape} differ in length")
    if prefer not in ("recall", "precision"):
        raise ValueError("prefer is 'recall' or 'precision'")
    positives = int(y.sum()) if positives is None else int(positives)
    if positives == 0:
        return LabelThreshold("", NEVER_SEEN_THRESHOLD, None, None, None, 0,
                              f"never present in validation: threshold {NEVER_SEEN_THRESHOLD:g}")
    if len(y) == 0 or not y.any():
        return LabelThreshold("", NEVER_CONFIRMS, 0.0, None, 0.0, positives,
                              f"no validation image of this label had it as top label: threshold {NEVER_CONFIRMS:g}")
    cuts, tp, fp = _curve(y, w)
    precision = tp / (tp + fp)
    recall = tp / positives
    f1 = 2 * tp / (2 * tp + fp + (positives - tp))
    best = f1.max()
    ties = np.flatnonzero(np.isclose(f1, best, rtol=0, atol=1e-12))
    index = int(ties[-1] if prefer == "recall" else ties[0])  # cuts descend: the last is the lowest
    rule = f"max F1 {best:.3f} (precision {precision[index]:.3f})"
    if precision_target is not None and precision[index] < precision_target:
        higher = np.flatnonzero((precision >= precision_target) & (np.arange(len(cuts)) <= index))
        if not len(higher):
            return LabelThreshold("", NEVER_CONFIRMS, None, None, None, positives,
                                  f"no cut reaches precision {precision_target:.2f} (max-F1 cut has "
                                  f"{precision[index]:.3f}): threshold {NEVER_CONFIRMS:g}, never confirms")
        raised = int(higher[-1])
        rule = (f"raised from the max-F1 cut {cuts[index]:.3f} (precision {precision[index]:.3f}) to the lowest "
                f"cut reaching precision {precision_target:.2f} (precision {precision[raised]:.3f}, "
                f"recall {recall[raised]:.3f})")
        index = raised
    elif precision_target is not None:
        rule += f" >= target {precision_target:.2f}"
    cut = float(cuts[index])
    threshold = (cut + float(cuts[index + 1])) / 2 if index + 1 < len(cuts) else cut
    return LabelThreshold("", threshold, float(f1[index]), float(precision[index]), float(recall[index]), positives,
                          f"{rule}: threshold {threshold:.3f}")


def select_thresholds(
    weights: np.ndarray, true_index: np.ndarray, label_names: Sequence[str], bad_labels: Sequence[str] = (),
    *, precision_target: float | None = None,
) -> dict[str, LabelThreshold]:
    """Thresholds for every output of a model: `weights` (N, n_labels), `true_index` (N,) human label index.

    Each label is judged on the images it tops (confirmation needs the top label), with recall counted
    over every image carrying it.
    """
    weights = np.asarray(weights, dtype=np.float64)
    true_index = np.asarray(true_index).ravel()
    if weights.ndim != 2 or weights.shape[1] != len(label_names):
        raise ValueError(f"weights of shape {weights.shape} do not match {len(label_names)} labels")
    if len(true_index) != len(weights):
        raise ValueError(f"{len(true_index)} human labels for {len(weights)} predictions")
    top = weights.argmax(axis=1) if len(weights) else np.zeros(0, dtype=int)
    out: dict[str, LabelThreshold] = {}
    for k, name in enumerate(label_names):
        prefer = "recall" if name in bad_labels else "precision"
        tops = top == k
        found = max_f1_threshold(true_index[tops] == k, weights[tops, k], prefer=prefer,
                                 precision_target=precision_target, positives=int(np.sum(true_index == k)))
        out[name] = LabelThreshold(name, found.threshold, found.f1, found.precision, found.recall, found.support,
                                   found.rule)
    return out


def evaluate_at_thresholds(
    weights: np.ndarray, true_index: np.ndarray, label_names: Sequence[str], thresholds: dict[str, float],
) -> dict[str, dict[str, float | int | None]]:
    """Per-label precision, recall and F1 of the *decided* label (confirmed top label) at `thresholds`.

    The same rule as the confusion matrix at thresholds (`evaluation.confusion` of `decided_index`), so a
    Bad image decided Good or left unconfirmed is a missed Bad here too.
    """
    weights = np.asarray(weights)
    true_index = np.asarray(true_index).ravel()
    decided = decided_index(weights, label_names, thresholds) if len(weights) else np.zeros(0, dtype=int)
    result: dict[str, dict[str, float | int | None]] = {}
    for k, name in enumerate(label_names):
        predicted = decided == k
        actual = true_index == k
        tp = int(np.sum(predicted & actual))
        fp = int(np.sum(predicted & ~actual))
        fn = int(np.sum(~predicted & actual))
        precision = tp / (tp + fp) if tp + fp else None
        recall = tp / (tp + fn) if tp + fn else None
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fn else None
        result[name] = {"precision": precision, "recall": recall, "f1": f1, "support": int(actual.sum()),
                        "confirmed": int(predicted.sum())}
    return result


def decide(weights: np.ndarray, label_names: Sequence[str], thresholds: dict[str, float]) -> list[str | None]:
    """Per image: the top label if its weight reaches its threshold, else None (unconfirmed)."""
    return [label_names[i] if i >= 0 else None for i in decided_index(weights, label_names, thresholds)]


__all__ = [
    "NEVER_CONFIRMS",
    "NEVER_SEEN_THRESHOLD",
    "LabelThreshold",
    "decide",
    "evaluate_at_thresholds",
    "max_f1_threshold",
    "select_thresholds",
]
