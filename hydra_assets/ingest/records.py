"""The inference record: the stable JSON of one classified image, shared by the CLI and the pages.

Fields (DESIGN.md): ``image, plot_type, run, chunk, label, weights{label: w}, confirmed, keep_reason
(null|bad|novel|unconfirmed|collect), model (name/version), gradcam (path|null: the overlay written),
novelty, novelty_limit (null for a model without a novelty reference), received_at, classified_at`` —
plus ``image_id``, ``path`` (the stored file) and ``status`` (classified | no_model | error | pending).
Times are ISO 8601 in UTC with a ``Z``.  An image shows its latest inference (the newest model version).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, and_, exists, func, select
from sqlalchemy.orm import Session, aliased

from hydra_assets.db.models import Image, Inference, KeepDecision, Label, PlotType
from hydra_assets.ingest.feeder import USABLE
from hydra_assets.rules import NO_MODEL_KEY

FIELDS = ("image", "plot_type", "run", "chunk", "label", "weights", "confirmed", "keep_reason", "model", "gradcam",
          "novelty", "novelty_limit", "received_at", "classified_at")


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def inference_record(
    *,
    file_name: str,
    plot_type: str,
    run: int | None,
    chunk: int | None,
    received_at: datetime | None,
    label: str | None = None,
    weights: Mapping[str, float] | None = None,
    confirmed: bool = False,
    keep_reason: str | None = None,
    model_key: str | None = None,
    gradcam: str | None = None,
    novelty: float | None = None,
    novelty_limit: float | None = None,
    classified_at: datetime | None = None,
    status: str = "pending",
    image_id: int | None = None,
    path: str | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """One image as `hydra inferences`, `hydra log` and `hydra classify` print it."""
    record: dict[str, Any] = {
        "image": file_name,
        "plot_type": plot_type,
        "run": run,
        "chunk": chunk,
        "label": label,
        "weights": {k: round(float(v), 6) for k, v in (weights or {}).items()},
        "confirmed": bool(confirmed),
        "keep_reason": keep_reason,
        "model": None if model_key in (None, NO_MODEL_KEY) else model_key,
        "gradcam": gradcam,
        "novelty": _rounded(novelty),
        "novelty_limit": _rounded(novelty_limit),
        "received_at": iso(received_at),
        "classified_at": iso(classified_at),
        "image_id": image_id,
        "path": path,
        "status": status,
    }
    if error:
        record["error"] = error
    return record


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)


def _record_query() -> tuple[Select, Any]:
    top = aliased(Label)
    query = (
        select(Image.id, Image.file_name, Image.stored_path, Image.run_number, Image.chunk, Image.received_at,
               PlotType.name, Inference.id, Inference.status, Inference.weights, top.name, Inference.confirmed,
               Inference.model_key, Inference.gradcam_path, Inference.classified_at, Inference.error,
               KeepDecision.reason, Inference.novelty, Inference.novelty_limit)
        .join(PlotType, PlotType.id == Image.plot_type_id)
    )
    return query, top


def _to_record(row: Any) -> dict[str, Any]:
    (image_id, file_name, stored, run, chunk, received, plot_type, inference_id, status, weights, label, confirmed,
     model_key, gradcam, classified_at, error, reason, novelty, novelty_limit) = row
    return inference_record(
        file_name=file_name, plot_type=plot_type, run=run, chunk=chunk, received_at=received, label=label,
        weights=weights, confirmed=bool(confirmed), keep_reason=reason, model_key=model_key, gradcam=gradcam,
        novelty=novelty, novelty_limit=novelty_limit,
        classified_at=classified_at, status=status if inference_id is not None else "pending",
        image_id=image_id, path=stored, error=error,
    )


def run_records(session: Session, run: int, *, plot_type: str | None = None) -> list[dict[str, Any]]:
    """Every usable image of run `run`, with its latest inference (or `pending`), by plot type and chunk."""
    latest = (select(Inference.image_id, func.max(Inference.id).label("latest_id"))
              .where(Inference.run_number == run).group_by(Inference.image_id).subquery())
    query, top = _record_query()
    query = (query.outerjoin(latest, latest.c.image_id == Image.id)
             .outerjoin(Inference, Inference.id == latest.c.latest_id)
             .outerjoin(top, top.id == Inference.top_label_id)
             .outerjoin(KeepDecision, KeepDecision.inference_id == Inference.id)
             .where(Image.run_number == run, Image.status.in_(USABLE)))
    if plot_type:
        query = query.where(PlotType.name == plot_type)
    query = query.order_by(PlotType.name, Image.chunk, Image.id)
    return [_to_record(row) for row in session.execute(query)]


def log_records(
    session: Session, since: datetime, *, plot_type: str | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """Confirmed Bad and unconfirmed (novel included) images classified since `since` (their latest
    inference), newest first."""
    newer = aliased(Inference)
    query, top = _record_query()
    query = (query.join(Inference, Inference.image_id == Image.id)
             .outerjoin(top, top.id == Inference.top_label_id)
             .outerjoin(KeepDecision, KeepDecision.inference_id == Inference.id)
             .where(Inference.flagged.is_(True), Inference.classified_at >= since,
                    ~exists().where(and_(newer.image_id == Inference.image_id, newer.id > Inference.id))))
    if plot_type:
        query = query.where(PlotType.name == plot_type)
    query = query.order_by(Inference.classified_at.desc(), Inference.id.desc())
    if limit:
        query = query.limit(limit)
    return [_to_record(row) for row in session.execute(query)]
