"""The similarity map's images: the newest of a plot type, with their label, novelty and reference score."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from hydra_assets.db.models import Image, Inference, ReferenceScore
from panel_app.views_data import MapPoint

BATCH = 900  # ids per IN (...) list: below every database's limit on bound parameters


def map_points(session: Session, plot_type_id: int, *, limit: int) -> list[MapPoint]:
    """The newest `limit` images of a plot type (by run and chunk, `ix_images_browser_run`), quarantined ones
    left out, with their human label, their latest classification's novelty and the newest reference score."""
    rows = session.execute(
        select(Image.id, Image.run_number, Image.chunk, Image.label_id, Image.stored_path)
        .where(Image.plot_type_id == plot_type_id, Image.status != "quarantined")
        .order_by(Image.run_number.desc(), Image.chunk.desc(), Image.id.desc())
        .limit(limit)
    ).all()
    points = {r[0]: MapPoint(image_id=r[0], run=r[1], chunk=r[2], label_id=r[3], stored_path=r[4] or "") for r in rows}
    ids = list(points)
    for start in range(0, len(ids), BATCH):
        part = ids[start:start + BATCH]
        newest: dict[int, tuple[int, float | None]] = {}
        for image_id, inference_id, novelty in session.execute(
            select(Inference.image_id, Inference.id, Inference.novelty).where(Inference.image_id.in_(part))
        ):
            if inference_id > newest.get(image_id, (0, None))[0]:
                newest[image_id] = (inference_id, novelty)
        for image_id, (_id, novelty) in newest.items():
            points[image_id].novelty = novelty
        scored: dict[int, tuple[int, float | None]] = {}
        for image_id, score_id, score in session.execute(
            select(ReferenceScore.image_id, ReferenceScore.id, ReferenceScore.score)
            .where(ReferenceScore.image_id.in_(part))
        ):
            if score_id > scored.get(image_id, (0, None))[0]:
                scored[image_id] = (score_id, score)
        for image_id, (_id, score) in scored.items():
            points[image_id].reference_score = score
    return list(points.values())
