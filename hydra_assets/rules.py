"""Confirmation and keep rules, and the words for an image's state: the one place that decides them.

Pure functions of weights, thresholds and an image's digest, so ingestion (Predict, Keeper), `hydra
classify`, training (thresholds, activation), the model library and the pages agree, and the tests pin the
rules down without Dagster or TensorFlow.

Vocabulary (stored as `keep_reason` on each keep decision and shown by the pages as stored):
- *confirmed*: the top label's weight reaches that label's threshold (`confirmed_top`) **and** the image is
  not novel (`is_novel`: its novelty score above the model's calibrated limit, "unlike the training data").
- keep reasons: `bad` (confirmed Bad), `novel` (unlike the training data: not confirmed, whatever the
  weights say), `reference` (unlike its reference: the reference score above its calibrated limit, with or
  without a model), `unconfirmed` (no label confirmed), `collect` (kept at the plot type's collect %), None
  (not kept).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_THRESHOLD = 0.5  # a label without a stored threshold
BAD, NOVEL, UNCONFIRMED, COLLECT = "bad", "novel", "unconfirmed", "collect"
REFERENCE = "reference"  # unlike its reference (hydra_assets/references.py)
KEEP_REASONS = (BAD, NOVEL, REFERENCE, UNCONFIRMED, COLLECT)
# Labeler queue order: Bad, novel, unlike the reference and unconfirmed first (0), collected Good after them (1).
QUEUE_PRIORITY: dict[str, int] = {BAD: 0, NOVEL: 0, REFERENCE: 0, UNCONFIRMED: 0, COLLECT: 1}
NOVEL_TEXT = "unlike the training data"  # what pages and messages call a novel image
REFERENCE_TEXT = "unlike its reference"  # what pages and messages call an image above its reference limit
NO_MODEL_KEY = "none"


def label_thresholds(label_names: Sequence[str], thresholds: Mapping[str, float]) -> np.ndarray:
    """Each label's threshold in label order; a label without one gets DEFAULT_THRESHOLD."""
    return np.array([float(thresholds.get(name, DEFAULT_THRESHOLD)) for name in label_names], dtype=np.float64)


def confirmed_top(
    weights: np.ndarray, label_names: Sequence[str], thresholds: Mapping[str, float]
) -> tuple[np.ndarray, np.ndarray]:
    """The rule, for a batch (N, n_labels): (top label index, whether its weight reaches that label's threshold).

    Non-finite weights (a broken model) count as 0, so they never confirm anything; ties go to the first label.
    """
    weights = np.nan_to_num(np.asarray(weights, dtype=np.float64).reshape(-1, len(label_names)),
                            nan=0.0, posinf=0.0, neginf=0.0)
    if not len(weights):
        return np.zeros(0, dtype=int), np.zeros(0, dtype=bool)
    top = weights.argmax(axis=1)
    limits = label_thresholds(label_names, thresholds)
    return top, weights[np.arange(len(weights)), top] >= limits[top]


def decided_index(weights: np.ndarray, label_names: Sequence[str], thresholds: Mapping[str, float]) -> np.ndarray:
    """Per image: the confirmed top label's index, or -1 (unconfirmed)."""
    top, confirmed = confirmed_top(weights, label_names, thresholds)
    return np.where(confirmed, top, -1)


def is_novel(score: float | None, limit: float | None) -> bool:
    """Whether an image is unlike the model's training images: its novelty score above the calibrated limit.

    No score or no limit (a model trained before the guard, a topology without an embedding) is not novel:
    the guard only ever withholds confirmation, it never invents it.
    """
    if score is None or limit is None:
        return False
    score, limit = float(score), float(limit)
    if not math.isfinite(limit):
        return False
    return not math.isfinite(score) or score > limit


@dataclass(frozen=True)
class Classification:
    """One image's classification by one model version, judged against that version's thresholds."""

    weights: dict[str, float]
    top_label: str
    top_weight: float
    threshold: float
    confirmed: bool  # the top weight reaches its threshold and the image is not novel
    is_bad: bool
    novelty: float | None = None
    novelty_limit: float | None = None

    @property
    def novel(self) -> bool:
        return is_novel(self.novelty, self.novelty_limit)

    @property
    def flagged(self) -> bool:
        """What the Log page lists: confirmed Bad, and anything the model is not sure about."""
        return (self.is_bad and self.confirmed) or not self.confirmed


def classify_weights(
    weights: Sequence[float],
    label_names: Sequence[str],
    thresholds: Mapping[str, float],
    bad_labels: Collection[str],
    *,
    novelty: float | None = None,
    novelty_limit: float | None = None,
) -> Classification:
    """Top label, its weight and whether it is confirmed (weight at or above that label's threshold and
    the image not novel).

    A non-finite output (a broken model) counts as weight 0, so it can never confirm anything.
    """
    if len(weights) != len(label_names) or not label_names:
        raise ValueError(f"{len(weights)} weights for {len(label_names)} labels {list(label_names)}")
    clean = [float(w) if math.isfinite(float(w)) else 0.0 for w in weights]
    tops, confirmed = confirmed_top(np.array([clean]), label_names, thresholds)
    top = int(tops[0])
    top_label = label_names[top]
    return Classification(
        weights={name: clean[i] for i, name in enumerate(label_names)},
        top_label=top_label,
        top_weight=clean[top],
        threshold=float(label_thresholds([top_label], thresholds)[0]),
        confirmed=bool(confirmed[0]) and not is_novel(novelty, novelty_limit),
        is_bad=top_label in bad_labels,
        novelty=None if novelty is None else float(novelty),
        novelty_limit=None if novelty_limit is None else float(novelty_limit),
    )


def collect_draw(digest: str, seed: int) -> float:
    """A number in [0, 100) fixed by the image's bytes: re-runs and backfills draw the same."""
    value = int(hashlib.sha256(f"{seed}:{digest}".encode()).hexdigest()[:13], 16)
    return value / 16**13 * 100.0


def keep_reason(
    status: str, *, confirmed: bool, is_bad: bool, collect_percent: float, draw: float, novel: bool = False,
    unlike_reference: bool = False,
) -> str | None:
    """Why the image is kept for labeling — bad | novel | reference | unconfirmed | collect — or None.

    A novel image is never confirmed (`classify_weights`), so it is kept as `novel`, which tells the
    expert why the model withheld its verdict.  An image unlike its reference (`unlike_reference`) is kept
    as `reference` unless the model already confirmed it Bad or called it novel, with or without a model.

    Images without a usable model (`no_model`, `error`) are only collected at the plot type's rate: they
    stay visible and labelable, but do not flood the Labeler queue.
    """
    if status == "classified":
        if is_bad and confirmed:
            return BAD
        if novel:
            return NOVEL
    if unlike_reference:
        return REFERENCE
    if status == "classified" and not confirmed:
        return UNCONFIRMED
    return COLLECT if draw < collect_percent else None


def queue_priority(reason: str | None, current: int | None = None) -> int | None:
    """The image's Labeler queue priority after a keep decision; never demotes an image already queued."""
    new = QUEUE_PRIORITY.get(reason) if reason else None
    if new is None:
        return current
    return new if current is None else min(current, new)
