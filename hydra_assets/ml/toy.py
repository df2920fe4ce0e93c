"""Tiny labeled images with a known defect box, for fast tests of training and GradCAM.

Not a physics simulation (that is `hydra_assets.simulate`): a noisy smooth background is Good, the same
with a bright square somewhere is Bad, a flat dim image is NoData.  Small enough that a compact model
learns it in one or two epochs on a shared CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image as PILImage


def toy_image(label: str, size: int, rng: np.random.Generator) -> tuple[np.ndarray, list[int] | None]:
    """uint8 RGB (size, size, 3) and the defect box [x0, y0, x1, y1] (pixels, exclusive end) for Bad."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    phase = rng.uniform(0, 2 * np.pi)
    base = 0.35 + 0.1 * np.sin(2 * np.pi * xx + phase) * np.cos(2 * np.pi * yy)
    pixels = base[..., None] * np.array([0.6, 0.8, 1.0]) + rng.normal(0, 0.04, (size, size, 3))
    box = None
    if label == "NoData":
        pixels = np.full((size, size, 3), 0.08) + rng.normal(0, 0.01, (size, size, 3))
    elif label != "Good":
        side = max(3, size // 5)
        x0, y0 = (int(v) for v in rng.integers(0, size - side, size=2))
        pixels[y0:y0 + side, x0:x0 + side] = np.array([1.0, 0.9, 0.2]) + rng.normal(0, 0.03, (side, side, 3))
        box = [x0, y0, x0 + side, y0 + side]
    return (np.clip(pixels, 0, 1) * 255).round().astype(np.uint8), box


def write_toy_labeled(folder: Path, *, per_label: dict[str, int], size: int = 40, seed: int = 0) -> Path:
    """Write ``folder/<label>/toy-<label>-<k>.png`` (+ JSON side-car with ``defect_box``); returns `folder`."""
    rng = np.random.default_rng(seed)
    for label, count in per_label.items():
        sub = Path(folder) / label
        sub.mkdir(parents=True, exist_ok=True)
        for k in range(count):
            pixels, box = toy_image(label, size, rng)
            path = sub / f"toy-{label}-{k:04d}.png"
            PILImage.fromarray(pixels).save(path)
            path.with_suffix(".json").write_text(json.dumps({"label": label, "defect_box": box}))
    return Path(folder)


__all__ = ["toy_image", "write_toy_labeled"]
