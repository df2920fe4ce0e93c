"""Offline classification (`hydra classify FILES… --plot-type T`): the active model, no pipeline, no writes.

Validation, preprocessing, confirmation and the keep rule are the pipeline's own, so a file classified here
gets the label, weights and would-be keep reason the live pipeline would give it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from hydra_assets import catalog
from hydra_assets.db.engine import HydraDB
from hydra_assets.images import BadImage, check_image, file_digest, load_rgb
from hydra_assets.ingest.records import inference_record
from hydra_assets.naming import BadFileName, parse_image_name
from hydra_assets.rules import classify_weights, collect_draw, keep_reason
from hydra_assets.settings import HydraSettings

BATCH = 64


def _name_parts(path: Path, config: HydraSettings) -> tuple[int | None, int | None]:
    try:
        parsed = parse_image_name(path.name, config.file_regex)
        return parsed.run, parsed.chunk
    except BadFileName:
        return None, None  # offline files (simulation, calibration) need not follow the live naming


def _mtime(path: Path) -> datetime:
    return datetime.fromtimestamp(os.stat(path).st_mtime, UTC).replace(tzinfo=None)


def classify_files(
    db: HydraDB, config: HydraSettings, plot_type: str, paths: Sequence[Path], *, gradcam_dir: Path | None = None
) -> list[dict[str, Any]]:
    """One inference record per file, in order; unreadable files get status `error` and the reason.

    Raises `CatalogError` for an unknown plot type and `ModelLoadError` when the active model cannot load.
    """
    from hydra_assets.ingest.classifier import predict_weights
    from hydra_assets.ml.active import load_active_model

    with db.read() as s:
        plot = catalog.get_plot_type(s, plot_type)
        collect_percent = plot.collect_percent
    active = load_active_model(db, config, plot_type)
    records: list[dict[str, Any] | None] = [None] * len(paths)
    good: list[tuple[int, Path, str]] = []
    for index, path in enumerate(paths):
        run, chunk = _name_parts(path, config)
        base = dict(file_name=path.name, plot_type=plot_type, run=run, chunk=chunk, path=str(path))
        try:
            check_image(path, max_pixels=config.max_image_pixels)
            digest = file_digest(path)
        except (BadImage, OSError) as error:
            records[index] = inference_record(**base, received_at=None, status="error", error=str(error))
            continue
        if active is None:
            records[index] = inference_record(**base, received_at=_mtime(path), status="no_model",
                                              keep_reason=keep_reason("no_model", confirmed=False, is_bad=False,
                                                                      collect_percent=collect_percent,
                                                                      draw=collect_draw(digest, config.seed)))
            continue
        good.append((index, path, digest))

    if active is not None:
        for start in range(0, len(good), BATCH):
            part = good[start : start + BATCH]
            batch = np.stack([load_rgb(path, active.input_size) for _, path, _ in part]) if part else None
            if batch is None:
                continue
            weights = predict_weights(active, batch)  # the pipeline's own forward pass
            for row, (index, path, digest) in enumerate(part):
                judged = classify_weights(weights[row], active.label_names, active.thresholds, active.bad_labels)
                gradcam = None
                if judged.is_bad and gradcam_dir is not None:
                    from hydra_assets.ml.gradcam import gradcam as heat
                    from hydra_assets.ml.gradcam import save_overlay

                    top = active.label_names.index(judged.top_label)
                    target = Path(gradcam_dir) / f"{path.stem}-gradcam.png"
                    gradcam = str(save_overlay(batch[row], heat(active.keras_model, batch[row], top), target))
                run, chunk = _name_parts(path, config)
                records[index] = inference_record(
                    file_name=path.name, plot_type=plot_type, run=run, chunk=chunk, received_at=_mtime(path),
                    label=judged.top_label, weights=judged.weights, confirmed=judged.confirmed,
                    keep_reason=keep_reason("classified", confirmed=judged.confirmed, is_bad=judged.is_bad,
                                            collect_percent=collect_percent, draw=collect_draw(digest, config.seed)),
                    model_key=active.key, gradcam=gradcam, classified_at=datetime.now(UTC).replace(tzinfo=None),
                    status="classified", path=str(path),
                )
    return [r for r in records if r is not None]
