"""Figures and tables that judge a model: confusion matrices, the enhanced confusion matrix, training curves.

Figures are built with `matplotlib.figure.Figure` (no pyplot global state), so they are safe in the
threads of a Dagster worker and leave no open windows behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure


def confusion(true_index: np.ndarray, predicted_index: np.ndarray, n_labels: int) -> np.ndarray:
    """Counts (n_labels, n_labels + 1): rows human label, columns model label; the last column counts
    images left unconfirmed (predicted index -1)."""
    matrix = np.zeros((n_labels, n_labels + 1), dtype=np.int64)
    predicted = np.where(np.asarray(predicted_index) < 0, n_labels, predicted_index)
    np.add.at(matrix, (np.asarray(true_index), predicted), 1)
    return matrix


def confusion_figure(matrix: np.ndarray, label_names: Sequence[str], *, title: str) -> Figure:
    """A confusion matrix as an annotated heat grid; an all-zero "unconfirmed" column is left out."""
    n = len(label_names)
    columns = list(label_names)
    if matrix.shape[1] > n and matrix[:, n].sum() > 0:
        columns.append("unconfirmed")
    shown = matrix[:, : len(columns)]
    fig = Figure(figsize=(1.3 * len(columns) + 2.2, 1.1 * n + 1.8), layout="constrained")
    ax = fig.add_subplot()
    row_totals = np.maximum(shown.sum(axis=1, keepdims=True), 1)
    ax.imshow(shown / row_totals, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(len(columns)):
            fraction = shown[i, j] / row_totals[i, 0]
            ax.text(j, i, f"{shown[i, j]}\n{fraction:.0%}", ha="center", va="center",
                    color="white" if fraction > 0.6 else "black", fontsize=9)
    ax.set_xticks(range(len(columns)), columns, rotation=30, ha="right")
    ax.set_yticks(range(n), label_names)
    ax.set_xlabel("model")
    ax.set_ylabel("human")
    ax.set_title(title)
    return fig


def enhanced_confusion_figure(
    weights: np.ndarray,
    true_index: np.ndarray,
    label_names: Sequence[str],
    *,
    thresholds: dict[str, float] | None = None,
    title: str = "enhanced confusion matrix",
) -> Figure:
    """Each cell (human i, model j = top label) holds the histogram of the model's weight for j.

    A cell full of weights near 1 is a confident model; a diagonal cell spreading down to the threshold
    line shows how many right answers would stay unconfirmed, an off-diagonal cell far above it shows
    confident mistakes — the count alone cannot tell these apart.
    """
    weights = np.asarray(weights)
    true_index = np.asarray(true_index)
    n = len(label_names)
    top = weights.argmax(axis=1) if len(weights) else np.zeros(0, dtype=int)
    fig = Figure(figsize=(2.3 * n + 1.0, 1.9 * n + 1.0), layout="constrained")
    axes = fig.subplots(n, n, sharex=True, squeeze=False)
    bins = np.linspace(0, 1, 21)
    for i in range(n):
        for j in range(n):
            ax = axes[i][j]
            cell = weights[(true_index == i) & (top == j), j]
            ax.hist(cell, bins=bins, color="#0072B2" if i == j else "#D55E00")
            if thresholds and label_names[j] in thresholds:
                ax.axvline(thresholds[label_names[j]], color="black", linestyle="--", linewidth=1)
            ax.set_title(f"{len(cell)}", fontsize=8, loc="right", pad=2)
            ax.tick_params(labelsize=7)
            if i == n - 1:
                ax.set_xlabel(f"model: {label_names[j]}", fontsize=8)
            if j == 0:
                ax.set_ylabel(f"human: {label_names[i]}", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def history_figure(history: dict[str, Any], *, title: str = "training") -> Figure:
    """Loss and accuracy per epoch, training and validation side by side; the kept epoch dotted."""
    fig = Figure(figsize=(9, 3.4), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    for ax, metric in ((loss_ax, "loss"), (acc_ax, "accuracy")):
        for prefix, style in (("", "-o"), ("val_", "--s")):
            values = history.get(prefix + metric)
            if values:
                ax.plot(range(1, len(values) + 1), values, style, markersize=3,
                        label="validation" if prefix else "training")
        best = history.get("best_epoch")
        if best:
            ax.axvline(best, color="grey", linestyle=":", linewidth=1, label=f"kept (epoch {best})")
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def thumbnails_figure(images: Sequence[np.ndarray], captions: Sequence[str], *, title: str, columns: int = 6
                      ) -> Figure:
    """A contact sheet of images with captions (the training report's disagreements, at a glance)."""
    rows = max(1, -(-len(images) // columns))
    fig = Figure(figsize=(2.0 * columns, 2.2 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < len(images):
            ax.imshow(np.clip(images[k], 0, 1))
            ax.set_title(captions[k], fontsize=7)
    fig.suptitle(title, fontsize=10)
    return fig


__all__ = ["confusion", "confusion_figure", "enhanced_confusion_figure", "history_figure", "thumbnails_figure"]
