"""Offline classification (`hydra classify FILES… --plot-type T`): the active model, no pipeline, no writes.

Validation, preprocessing, the forward pass with its novelty scores, confirmation and the keep rule are the
pipeline's own, so a file classified here gets the label, weights, novelty and would-be keep reason the
live pipeline would give it.  With `gradcam_dir`, each image classified Bad gets its overlay there and the
record's `gradcam` names that file (an absolute path).
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
    from hydra_assets.ingest.classifier import predict_scored
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
        limit = None if active.novelty is None else float(active.novelty.limit)
        written: set[Path] = set()  # two files of one name (from two folders) must not share an overlay
        for start in range(0, len(good), BATCH):
            part = good[start : start + BATCH]
            if not part:
                continue
            shown = np.stack([load_rgb(path, active.input_size) for _, path, _ in part])
            batch = active.masked(shown)  # the version's mask, as Predict applies it
            weights, novelty, _ms = predict_scored(active, batch)  # the pipeline's own forward pass
            for row, (index, path, digest) in enumerate(part):
                score = None if novelty is None else float(novelty[row])
                judged = classify_weights(weights[row], active.label_names, active.thresholds, active.bad_labels,
                                          novelty=score, novelty_limit=limit if score is not None else None)
                gradcam = None
                if judged.is_bad and gradcam_dir is not None:
                    gradcam = _write_gradcam(active, batch[row], judged.top_label, Path(gradcam_dir), path, written,
                                             shown=shown[row])
                run, chunk = _name_parts(path, config)
                records[index] = inference_record(
                    file_name=path.name, plot_type=plot_type, run=run, chunk=chunk, received_at=_mtime(path),
                    label=judged.top_label, weights=judged.weights, confirmed=judged.confirmed,
                    keep_reason=keep_reason("classified", confirmed=judged.confirmed, is_bad=judged.is_bad,
                                            collect_percent=collect_percent, draw=collect_draw(digest, config.seed),
                                            novel=judged.novel),
                    model_key=active.key, gradcam=gradcam, classified_at=datetime.now(UTC).replace(tzinfo=None),
                    status="classified", path=str(path), novelty=judged.novelty, novelty_limit=judged.novelty_limit,
                )
    return [r for r in records if r is not None]


def _write_gradcam(active: Any, image: np.ndarray, label: str, folder: Path, source: Path, written: set[Path],
                   *, shown: np.ndarray) -> str:
    """The overlay of `image` (the masked input) for `label`, drawn over `shown` (the plot as it came) with the
    model's mask shaded, written into `folder`; its absolute path, for the record.

    `<stem>-gradcam.png`, or `<stem>-<n>-gradcam.png` when this call already wrote that name.
    """
    from hydra_assets.ml.gradcam import gradcam as heat
    from hydra_assets.ml.gradcam import save_overlay

    folder = folder.expanduser().resolve()
    target, n = folder / f"{source.stem}-gradcam.png", 1
    while target in written:
        n += 1
        target = folder / f"{source.stem}-{n}-gradcam.png"
    written.add(target)
    heatmap = heat(active.keras_model, image, active.label_names.index(label))
    return str(save_overlay(shown, heatmap, target, mask=active.mask))
