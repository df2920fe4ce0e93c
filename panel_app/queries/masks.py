"""A plot type's mask versions and a sample image to draw them on (the Library's Mask tab, docs/masks.md)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from hydra_assets.db.models import Image, Model, PlotTypeMask
from panel_app.views_data import MaskSample, MaskVersion


def mask_versions(session: Session, plot_type_id: int) -> list[MaskVersion]:
    """Every mask version of the plot type, newest first, with the model versions trained with each."""
    used: dict[int, list[str]] = {}
    for mask_id, name, version, active in session.execute(
            select(Model.mask_id, Model.mlflow_name, Model.mlflow_version, Model.active)
            .where(Model.plot_type_id == plot_type_id, Model.mask_id.is_not(None)).order_by(Model.id)):
        used.setdefault(mask_id, []).append(f"{name}/{version}" + (" ★" if active else ""))
    rows = session.scalars(select(PlotTypeMask).where(PlotTypeMask.plot_type_id == plot_type_id)
                           .order_by(PlotTypeMask.version.desc()).limit(200))
    return [MaskVersion(id=m.id, version=m.version, regions=[tuple(map(float, r)) for r in m.regions or []],
                        created_at=m.created_at, created_by=m.created_by, comment=m.comment,
                        models=used.get(m.id, [])) for m in rows]


def mask_sample(session: Session, plot_type_id: int) -> MaskSample | None:
    """The plot type's newest stored image (along ix_images_browser_run), to draw rectangles on."""
    row = session.execute(select(Image.id, Image.width, Image.height, Image.run_number, Image.chunk)
                          .where(Image.plot_type_id == plot_type_id, Image.stored_path != "")
                          .order_by(Image.plot_type_id, Image.run_number.desc(), Image.chunk.desc()).limit(1)).first()
    if row is None:
        return None
    return MaskSample(image_id=row.id, width=row.width or 0, height=row.height or 0, run=row.run_number,
                      chunk=row.chunk)
