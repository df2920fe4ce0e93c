"""Confirmation and keep rules: what a classification means and whether a human should see the image.

Pure functions of weights, thresholds and an image's digest, so the Predict and Keeper stages, `hydra
classify` and the pages agree, and the tests pin the rules down without Dagster or TensorFlow.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

DEFAULT_THRESHOLD = 0.5  # a label without a stored threshold (same default as hydra_assets.ml.active)
KEEP_REASONS = ("bad", "unconfirmed", "collect")
# Labeler queue order: Bad and unconfirmed first (0), collected Good after them (1), others not queued.
QUEUE_PRIORITY: dict[str, int] = {"bad": 0, "unconfirmed": 0, "collect": 1}
NO_MODEL_KEY = "none"


@dataclass(frozen=True)
class Classification:
    """One image's classification by one model version, judged against that version's thresholds."""

    weights: dict[str, float]
    top_label: str
    top_weight: float
    threshold: float
    confirmed: bool
    is_bad: bool

    @property
    def flagged(self) -> bool:
        """What the Log page lists: confirmed Bad, and anything the model is not sure about."""
        return (self.is_bad and self.confirmed) or not self.confirmed


def classify_weights(
    weights: Sequence[float],
    label_names: Sequence[str],
    thresholds: Mapping[str, float],
    bad_labels: Collection[str],
) -> Classification:
    """Top label, its weight and whether it is confirmed (weight at or above that label's threshold).

    A non-finite output (a broken model) counts as weight 0, so it can never confirm anything.
    """
    if len(weights) != len(label_names) or not label_names:
        raise ValueError(f"{len(weights)} weights for {len(label_names)} labels {list(label_names)}")
    clean = [float(w) if math.isfinite(float(w)) else 0.0 for w in weights]
    top = max(range(len(clean)), key=lambda i: clean[i])  # first of equals, like numpy.argmax
    top_label = label_names[top]
    threshold = float(thresholds.get(top_label, DEFAULT_THRESHOLD))
    return Classification(
        weights={name: clean[i] for i, name in enumerate(label_names)},
        top_label=top_label,
        top_weight=clean[top],
        threshold=threshold,
        confirmed=clean[top] >= threshold,
        is_bad=top_label in bad_labels,
    )


def collect_draw(digest: str, seed: int) -> float:
    """A number in [0, 100) fixed by the image's bytes: re-runs and backfills draw the same."""
    value = int(hashlib.sha256(f"{seed}:{digest}".encode()).hexdigest()[:13], 16)
    return value / 16**13 * 100.0


def keep_reason(
    status: str, *, confirmed: bool, is_bad: bool, collect_percent: float, draw: float
) -> str | None:
    """Why the image is kept for labeling — bad | unconfirmed | collect — or None (not kept).

    Images without a usable model (`no_model`, `error`) are only collected at the plot type's rate: they
    stay visible and labelable, but do not flood the Labeler queue.
    """
    if status == "classified":
        if is_bad and confirmed:
            return "bad"
        if not confirmed:
            return "unconfirmed"
    return "collect" if draw < collect_percent else None


def queue_priority(reason: str | None, current: int | None = None) -> int | None:
    """The image's Labeler queue priority after a keep decision; never demotes an image already queued."""
    new = QUEUE_PRIORITY.get(reason) if reason else None
    if new is None:
        return current
    return new if current is None else min(current, new)
