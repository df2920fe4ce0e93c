"""Retraining suggestions: when a run shows far more novel or unconfirmed images than the model's
validation predicts, the model is out of its depth there, and the expert should label some and retrain.

Pure: counts in, suggestions out.  The counts come from the database (`hydra_assets.suggestions`); the
pages, `hydra log` and a Dagster asset check all show the same suggestions.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

MIN_IMAGES = 10  # fewer images in a run say nothing either way
FACTOR = 3.0  # "well above": three times what validation predicts ...
MARGIN = 0.10  # ... and at least ten points above it
LABEL_TARGET = 20  # how many images to ask the expert to label


@dataclass(frozen=True)
class RunShares:
    """What one model version did on one run of one plot type."""

    plot_type: str
    run: int
    model_key: str
    images: int
    novel: int
    unconfirmed: int  # not confirmed for any reason, novel included
    expected_novel: float | None  # share of novel images on the model's validation (None: no calibration)
    expected_unconfirmed: float | None  # share left unconfirmed on the model's validation


@dataclass(frozen=True)
class Suggestion:
    plot_type: str
    run: int
    model_key: str
    images: int
    share: float  # of the images: novel (kind "novel") or unconfirmed (kind "unconfirmed")
    expected: float
    kind: str
    to_label: int

    @property
    def message(self) -> str:
        what = "unlike the training data" if self.kind == "novel" else "unconfirmed"
        return (f"model out of its depth on {self.plot_type} run {self.run}: {self.share:.0%} of {self.images} "
                f"images {what} (validation predicts {self.expected:.0%}); label ~{self.to_label} of them and "
                f"retrain")


def well_above(share: float, expected: float, *, factor: float = FACTOR, margin: float = MARGIN) -> bool:
    """Whether an observed share is well above the expected one: `factor` times it and `margin` above it."""
    return share >= factor * expected and share >= expected + margin


def suggest(rows: Iterable[RunShares], *, min_images: int = MIN_IMAGES, factor: float = FACTOR,
            margin: float = MARGIN) -> list[Suggestion]:
    """One suggestion per (plot type, run) whose novel or unconfirmed share is well above validation's.

    Novelty is checked first (its message says why); a model without a novelty calibration is judged by
    its unconfirmed share alone.  Largest excess first.
    """
    out: list[Suggestion] = []
    for row in rows:
        if row.images < min_images:
            continue
        candidates = [("novel", row.novel, row.expected_novel), ("unconfirmed", row.unconfirmed,
                                                                   row.expected_unconfirmed)]
        for kind, count, expected in candidates:
            if expected is None or not math.isfinite(expected):
                continue
            share = count / row.images
            if well_above(share, expected, factor=factor, margin=margin):
                out.append(Suggestion(row.plot_type, row.run, row.model_key, row.images, share, expected, kind,
                                      min(LABEL_TARGET, count)))
                break
    return sorted(out, key=lambda s: (-(s.share - s.expected), s.plot_type, -s.run))


__all__ = ["FACTOR", "LABEL_TARGET", "MARGIN", "MIN_IMAGES", "RunShares", "Suggestion", "suggest", "well_above"]
