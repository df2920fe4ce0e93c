"""Importing labeled folders (`DIR/<label>/*.png`): validate everything first, then write in one transaction."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session

from hydra_assets import catalog
from hydra_assets.catalog import CatalogError
from hydra_assets.db.engine import HydraDB
from hydra_assets.db.models import Image, utcnow
from hydra_assets.images import BadImage, check_image, file_digest, find_image, store_file, stored_name, touch_run
from hydra_assets.labeling import apply_labels
from hydra_assets.naming import BadFileName, parse_image_name
from hydra_assets.settings import HydraSettings


@dataclass
class ImportResult:
    new_images: int = 0
    relabeled: int = 0
    unchanged: int = 0
    per_label: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class _Candidate:
    path: Path
    label: str
    digest: str
    run: int
    chunk: int
    width: int
    height: int


def _scan(folder: Path, label_names: list[str], config: HydraSettings, plot_type: str) -> list[_Candidate]:
    by_lower = {name.lower(): name for name in label_names}
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subfolders:
        raise CatalogError(f"{folder} holds no label folders; expected {folder}/<label>/*.png with labels "
                           f"{', '.join(label_names)}")
    candidates: list[_Candidate] = []
    for sub in subfolders:
        label = by_lower.get(sub.name.lower())
        if label is None:
            raise CatalogError(f"folder {sub} is not a label of {plot_type}; valid labels: {', '.join(label_names)}")
        for path in sorted(p for p in sub.iterdir() if p.is_file() and not p.name.startswith(".")):
            if path.suffix.lower() == ".json":
                continue  # side-cars written by `hydra simulate`
            try:
                checked = check_image(path, max_pixels=config.max_image_pixels)
            except BadImage as error:
                raise CatalogError(f"cannot import {path}: {error}") from error
            try:
                name = parse_image_name(path.name, config.file_regex)
                run, chunk = name.run, name.chunk
            except BadFileName:
                run, chunk = 0, 0  # hand-collected training images need no run number
            candidates.append(_Candidate(path, label, file_digest(path), run, chunk, checked.width, checked.height))
    if not candidates:
        raise CatalogError(f"no images found under {folder}/<label>/")
    return candidates


def import_labeled_folder(
    db: HydraDB, config: HydraSettings, folder: Path, plot_type_name: str, *, user_name: str | None = None
) -> ImportResult:
    """Register and label every image under `folder`; all or nothing."""
    with db.read() as s:
        plot_type = catalog.get_plot_type(s, plot_type_name)
        labels = {lab.name: lab.id for lab in catalog.labels_of(s, plot_type)}
        user_id = catalog.get_user(s, user_name).id if user_name else None
    candidates = _scan(folder, list(labels), config, plot_type_name)
    stored = {
        c.path: store_file(
            c.path, config.images_dir, stored_name(plot_type_name, c.run, c.chunk, c.digest, c.path.suffix)
        )
        for c in candidates
    }

    def write(session: Session) -> ImportResult:
        result = ImportResult()
        painted: dict[int, int | None] = {}
        runs: Counter[int] = Counter()
        for c in candidates:
            image = find_image(session, plot_type_id=plot_type.id, run=c.run, chunk=c.chunk, digest=c.digest)
            if image is None:
                image = Image(
                    plot_type_id=plot_type.id, run_number=c.run, chunk=c.chunk, digest=c.digest,
                    file_name=c.path.name, stored_path=str(stored[c.path]), size_bytes=c.path.stat().st_size,
                    width=c.width, height=c.height, received_at=utcnow(), status="registered",
                )
                session.add(image)
                session.flush()
                result.new_images += 1
                runs[c.run] += 1
            elif image.label_id != labels[c.label]:
                result.relabeled += 1
            else:
                result.unchanged += 1
            painted[image.id] = labels[c.label]
            result.per_label[c.label] += 1
        for run, count in runs.items():
            touch_run(session, run, images=count)
        apply_labels(session, painted, user_id=user_id, source="import")
        return result

    return db.write(write, what="label import")
