"""Likely mislabeled images: confident learning over out-of-fold predictions (cleanlab).

An image's label looks wrong when a model that never saw that image during training gives its label a
low weight compared with how confident such models usually are on that label (cleanlab's per-label
thresholds, Northcutt et al. 2021).  cleanlab is the reference implementation of that method, kept and
tested by its authors; we call two of its functions and nothing else (docs/labeling-queues.md).

Pure: given labels and out-of-fold weights in, one `Check` per image out.  The weights must come from
models that did not train on the image (`hydra_assets/label_audit.py` gets them from training).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_IMAGES = 10  # fewer labeled images say nothing about which label is wrong


@dataclass(frozen=True)
class Check:
    """What the audit says about one labeled image."""

    position: int  # into the inputs
    given: int  # label index as given by the expert
    suggested: int  # the out-of-fold top label
    self_confidence: float  # out-of-fold weight of the given label (0..1)
    is_issue: bool  # cleanlab says likely mislabeled
    rank: int  # 0 = most likely mislabeled; every image ranked (issues first)


def probabilities(weights: np.ndarray) -> np.ndarray:
    """Rows scaled to sum to 1 (cleanlab's input); a row of zeros or NaN becomes uniform."""
    rows = np.nan_to_num(np.asarray(weights, dtype=np.float64), nan=0.0).clip(min=0.0)
    if rows.ndim != 2 or rows.shape[1] < 2:
        raise ValueError(f"out-of-fold weights must be images x labels with two labels or more, got {rows.shape}")
    sums = rows.sum(axis=1, keepdims=True)
    uniform = np.full_like(rows, 1.0 / rows.shape[1])
    return np.where(sums > 0, rows / np.where(sums > 0, sums, 1.0), uniform)


def audit(labels: np.ndarray, weights: np.ndarray) -> list[Check]:
    """One check per image: issues first (cleanlab's `find_label_issues`, ranked by self-confidence), then
    the rest by label quality (cleanlab's `get_label_quality_scores`), lowest first.

    Raises ValueError with a reason when there is nothing to audit (too few images, a label index out of range).
    """
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    given = np.asarray(labels, dtype=np.int64)
    probs = probabilities(weights)
    if len(given) != len(probs):
        raise ValueError(f"{len(given)} labels but {len(probs)} rows of weights")
    if len(given) < MIN_IMAGES:
        raise ValueError(f"only {len(given)} labeled image(s); the audit needs at least {MIN_IMAGES}")
    if given.min() < 0 or given.max() >= probs.shape[1]:
        raise ValueError(f"label indices must lie in 0..{probs.shape[1] - 1}")
    present = np.unique(given)
    if len(present) < 2:
        raise ValueError("every labeled image has the same label: nothing to compare it with")
    # cleanlab wants every label index it sees to occur; audit over the labels present only.
    columns = present
    local = np.searchsorted(present, given)
    local_probs = probabilities(probs[:, columns])
    quality = get_label_quality_scores(local, local_probs, method="self_confidence")
    # n_jobs=1: cleanlab's default forks a multiprocessing pool, and a fork of a process with threads
    # (TensorFlow's, a database pool's) can deadlock in the child: a test run hung 300 s in that pool's join.
    issues = find_label_issues(local, local_probs, filter_by="prune_by_noise_rate",
                               return_indices_ranked_by="self_confidence", n_jobs=1)
    issue_set = set(int(k) for k in issues)
    rest = [int(k) for k in np.lexsort((np.arange(len(given)), quality)) if int(k) not in issue_set]
    order = [int(k) for k in issues] + rest
    suggested = probs.argmax(axis=1)
    self_confidence = probs[np.arange(len(given)), given]
    return [Check(position=k, given=int(given[k]), suggested=int(suggested[k]),
                  self_confidence=float(self_confidence[k]), is_issue=k in issue_set, rank=r)
            for r, k in enumerate(order)]


def ranked_positions(labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Positions in audit order (most likely mislabeled first): what the audit queue shows first."""
    return np.array([c.position for c in audit(labels, weights)], dtype=np.int64)


__all__ = ["Check", "MIN_IMAGES", "audit", "probabilities", "ranked_positions"]
