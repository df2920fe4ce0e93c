"""What a mask costs at inference: `apply_mask` per image on a Predict batch, beside the compact model's forward pass.

    .venv/bin/python bench/masks.py                  # 64-image batches at 128 px (the demo's input size)
    .venv/bin/python bench/masks.py --size 299 --repeat 50

A masked model version blanks its rectangles in every batch before the forward pass (`ActiveModel.masked`);
an unmasked one returns the batch itself (no copy).  Printed: ms per image for no mask, two rectangles
(title band + dead channel) and eight, and the compact model's traced forward pass on the same batch.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hydra_assets.masks import apply_mask

MASKS = {
    "none": [],
    "2 rectangles": [[0, 0, 1, 0.1], [0.48, 0.2, 0.52, 1]],
    "8 rectangles": [[k / 10, 0.1 * (k % 3), k / 10 + 0.05, 0.5 + 0.05 * k] for k in range(8)],
}


def per_image_ms(fn, batch: np.ndarray, repeat: int) -> float:  # type: ignore[no-untyped-def]
    fn(batch)  # warm
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn(batch)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000 / len(batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--no-model", action="store_true", help="skip the forward pass (no TensorFlow)")
    args = parser.parse_args()
    batch = np.random.default_rng(0).uniform(size=(args.batch, args.size, args.size, 3)).astype(np.float32)
    print(f"batch {args.batch} x {args.size}x{args.size}x3 float32, median of {args.repeat}")
    for name, regions in MASKS.items():
        ms = per_image_ms(lambda b, r=regions: apply_mask(b, r), batch, args.repeat)
        print(f"  apply_mask, {name:<13} {ms:8.4f} ms per image")
    if not args.no_model:
        from hydra_assets.ingest.classifier import forward
        from hydra_assets.ml.topologies import build_model

        model = build_model("compact", (args.size, args.size, 3), 2)
        fn = forward(model)
        ms = per_image_ms(lambda b: np.asarray(fn(b)), batch, max(3, args.repeat // 5))
        print(f"  compact forward pass       {ms:8.4f} ms per image")


if __name__ == "__main__":
    main()
