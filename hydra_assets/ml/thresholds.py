"""Per-label thresholds that maximise each label's F1 on the validation set.

A label is *confirmed* iff its output weight is at or above its threshold.  For each label we score
every distinct weight as a candidate cut with scikit-learn's `precision_recall_curve` (one sort, vectorised:
a million predictions take well under a second) and keep the cut with the highest F1.

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

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hydra_assets.rules import decided_index

NEVER_SEEN_THRESHOLD = 1.0


@dataclass(frozen=True)
class LabelThreshold:
    label: str
    threshold: float
    f1: float | None
    precision: float | None
    recall: float | None
    support: int  # validation images carrying the label


def max_f1_threshold(y_true: np.ndarray, weights: np.ndarray, *, prefer: str = "recall") -> LabelThreshold:
    """Best cut for one label: `y_true` booleans (the label is the human one), `weights` the model's output.

    `prefer` = "recall" takes the lowest of equally good cuts, "precision" the highest.
    """
    from sklearn.metrics import precision_recall_curve

    y = np.asarray(y_true, dtype=bool).ravel()
    w = np.asarray(weights, dtype=np.float64).ravel()
    if y.shape != w.shape:
        raise ValueError(f"labels {y.shape} and weights {w.shape} differ in length")
    if prefer not in ("recall", "precision"):
        raise ValueError("prefer is 'recall' or 'precision'")
    positives = int(y.sum())
    if len(y) == 0 or positives == 0:
        return LabelThreshold("", NEVER_SEEN_THRESHOLD, None, None, None, positives)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        precision, recall, cuts = precision_recall_curve(y, w, drop_intermediate=False)
    # precision/recall have one trailing sentinel (1, 0) without a cut; `cuts` ascend.
    precision, recall = precision[:-1], recall[:-1]
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(denominator), where=denominator > 0)
    best = f1.max()
    ties = np.flatnonzero(np.isclose(f1, best, rtol=0, atol=1e-12))
    index = int(ties[0] if prefer == "recall" else ties[-1])
    cut = float(cuts[index])
    threshold = (cut + float(cuts[index - 1])) / 2 if index > 0 else cut
    return LabelThreshold("", threshold, float(best), float(precision[index]), float(recall[index]), positives)


def select_thresholds(
    weights: np.ndarray, true_index: np.ndarray, label_names: Sequence[str], bad_labels: Sequence[str] = ()
) -> dict[str, LabelThreshold]:
    """Thresholds for every output of a model: `weights` (N, n_labels), `true_index` (N,) human label index."""
    weights = np.asarray(weights)
    true_index = np.asarray(true_index).ravel()
    if weights.ndim != 2 or weights.shape[1] != len(label_names):
        raise ValueError(f"weights of shape {weights.shape} do not match {len(label_names)} labels")
    if len(true_index) != len(weights):
        raise ValueError(f"{len(true_index)} human labels for {len(weights)} predictions")
    out: dict[str, LabelThreshold] = {}
    for k, name in enumerate(label_names):
        prefer = "recall" if name in bad_labels else "precision"
        found = max_f1_threshold(true_index == k, weights[:, k], prefer=prefer)
        out[name] = LabelThreshold(name, found.threshold, found.f1, found.precision, found.recall, found.support)
    return out


def evaluate_at_thresholds(
    weights: np.ndarray, true_index: np.ndarray, label_names: Sequence[str], thresholds: dict[str, float],
) -> dict[str, dict[str, float | int | None]]:
    """Per-label precision, recall and F1 with `thresholds` applied (each label judged on its own)."""
    weights = np.asarray(weights)
    true_index = np.asarray(true_index).ravel()
    result: dict[str, dict[str, float | int | None]] = {}
    for k, name in enumerate(label_names):
        predicted = weights[:, k] >= thresholds[name]
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
    "NEVER_SEEN_THRESHOLD",
    "LabelThreshold",
    "decide",
    "evaluate_at_thresholds",
    "max_f1_threshold",
    "select_thresholds",
]
