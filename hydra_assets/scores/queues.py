"""Ranked labeling queues: which images an expert should label first, so that the hours spent labeling
change the model the most (docs/labeling-queues.md).

Pure: arrays in, an order out.  Each `rank_*` returns positions into its inputs, first = label first; ties
and missing values keep arrival order (the inputs' order), and images without a value (NaN) come last.
The Labeler (`panel_app/queries/queues.py`) and the loop benchmark (`bench/loop.py`) both rank with these.

- most uncertain: the smallest margin between the two largest label weights (a model torn between two
  labels learns the most from the answer);
- most novel / most unlike the reference: the score over its limit, largest first (1.0 = at the limit);
- disagreement: images whose top labels differ between two model versions (active and challenger, or
  active and a backtest's candidate), the candidate's most confident first.
"""

from __future__ import annotations

import numpy as np

ARRIVAL = "arrival"
UNCERTAIN = "uncertain"
NOVEL = "novel"
REFERENCE = "reference"
DISAGREEMENT = "disagreement"
AUDIT = "audit"
# The queues the Labeler offers, in its selector's order (`audit` ranks labeled images: scores/label_audit.py).
QUEUES = (ARRIVAL, UNCERTAIN, NOVEL, REFERENCE, DISAGREEMENT, AUDIT)


def margins(weights: np.ndarray) -> np.ndarray:
    """Top weight minus second weight per row of `weights` (N, K); NaN for a row with a NaN.

    A single-label row's margin is its weight (nothing competes with it)."""
    rows = np.asarray(weights, dtype=np.float64)
    if rows.ndim != 2:
        raise ValueError(f"weights must be a 2-D array (images x labels), got shape {rows.shape}")
    if rows.shape[0] == 0:
        return np.zeros(0, dtype=np.float64)
    if rows.shape[1] == 1:
        return rows[:, 0].copy()
    top_two = -np.sort(-rows, axis=1)[:, :2]
    return top_two[:, 0] - top_two[:, 1]


def ratios(scores: np.ndarray, limits: np.ndarray | float) -> np.ndarray:
    """Score over its limit (1.0 = at the limit); NaN where either is missing or the limit is not positive."""
    values = np.asarray(scores, dtype=np.float64)
    bounds = np.broadcast_to(np.asarray(limits, dtype=np.float64), values.shape)
    out = np.full(values.shape, np.nan)
    usable = np.isfinite(values) & np.isfinite(bounds) & (bounds > 0)
    out[usable] = values[usable] / bounds[usable]
    return out


def _order(keys: np.ndarray, *, descending: bool) -> np.ndarray:
    """Positions sorted by `keys` (stable: ties keep arrival order), NaN last."""
    values = np.asarray(keys, dtype=np.float64)
    missing = ~np.isfinite(values)
    sortable = np.where(missing, 0.0, -values if descending else values)
    # lexsort sorts by the last key first: missing ones after the others, then by value, then by position.
    return np.lexsort((np.arange(len(values)), sortable, missing)).astype(np.int64)


def rank_uncertain(weights: np.ndarray) -> np.ndarray:
    """Most uncertain first: smallest margin between the two largest weights."""
    return _order(margins(weights), descending=False)


def rank_novel(scores: np.ndarray, limits: np.ndarray | float) -> np.ndarray:
    """Most novel first: novelty score over the model's calibrated limit, largest first."""
    return _order(ratios(scores, limits), descending=True)


def rank_reference(scores: np.ndarray, limits: np.ndarray | float) -> np.ndarray:
    """Most unlike the reference first: reference score over its limit, largest first."""
    return _order(ratios(scores, limits), descending=True)


def disagrees(labels_a: np.ndarray, labels_b: np.ndarray) -> np.ndarray:
    """True where both versions have a top label and the labels differ (a missing label is never a
    disagreement: negative numbers or NaN mean missing)."""
    a = np.asarray(labels_a, dtype=np.float64)
    b = np.asarray(labels_b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"both versions need one top label per image: {a.shape} vs {b.shape}")
    present = np.isfinite(a) & np.isfinite(b) & (a >= 0) & (b >= 0)
    return present & (a != b)


def rank_disagreement(labels_a: np.ndarray, labels_b: np.ndarray,
                      confidence_b: np.ndarray | None = None) -> np.ndarray:
    """Only the images where the two versions' top labels differ; the second version's (candidate's or
    challenger's) most confident first when `confidence_b` is given, else arrival order."""
    differ = np.flatnonzero(disagrees(labels_a, labels_b))
    if confidence_b is None:
        return differ.astype(np.int64)
    confidence = np.asarray(confidence_b, dtype=np.float64)[differ]
    return differ[_order(confidence, descending=True)].astype(np.int64)


def rank(queue: str, **arrays: np.ndarray) -> np.ndarray:
    """One entry point by queue name (the Labeler's selector): the arrays each `rank_*` needs, by name."""
    if queue == UNCERTAIN:
        return rank_uncertain(arrays["weights"])
    if queue == NOVEL:
        return rank_novel(arrays["scores"], arrays["limits"])
    if queue == REFERENCE:
        return rank_reference(arrays["scores"], arrays["limits"])
    if queue == DISAGREEMENT:
        return rank_disagreement(arrays["labels_a"], arrays["labels_b"], arrays.get("confidence_b"))
    if queue == ARRIVAL:
        return np.arange(len(next(iter(arrays.values()))) if arrays else 0, dtype=np.int64)
    raise ValueError(f"unknown queue {queue!r}; one of: {', '.join(q for q in QUEUES if q != AUDIT)}")
