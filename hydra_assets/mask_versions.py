"""A plot type's mask versions: every change (set or clear) is a new row, so the rows are the history.

The newest version is the plot type's current mask; training records it on the model version it trains
(`models.mask_id`) and that model version applies its own mask at inference, so a mask change takes effect
with the next trained model version.  The rectangles themselves and how they are applied: `hydra_assets.masks`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hydra_assets import catalog
from hydra_assets.db.models import Model, PlotType, PlotTypeMask
from hydra_assets.masks import Region, region_text, validate_regions

if TYPE_CHECKING:
    from hydra_assets.db.engine import HydraDB

PERMISSIONS = ("edit_reference", "edit_thresholds")  # either may change a plot type's mask


def current_mask(session: Session, plot_type_id: int) -> PlotTypeMask | None:
    """The plot type's newest mask version (None: never masked; a version with no rectangles: cleared)."""
    return session.scalar(select(PlotTypeMask).where(PlotTypeMask.plot_type_id == plot_type_id)
                          .order_by(PlotTypeMask.version.desc()).limit(1))


def current_regions(session: Session, plot_type_id: int) -> list[Region]:
    """The rectangles the plot type's current mask ignores ([] when none)."""
    mask = current_mask(session, plot_type_id)
    return validate_regions(mask.regions) if mask is not None else []


def set_mask(session: Session, plot_type: PlotType, regions: Iterable[object] | None, by: str,
             comment: str = "") -> PlotTypeMask:
    """Store the rectangles as the plot type's next mask version; [] clears the mask (also a new version).

    MaskError (nothing written) for a rectangle outside the image, reversed or empty, or one covering all of it.
    """
    checked = validate_regions(regions)
    last = session.scalar(select(func.max(PlotTypeMask.version)).where(PlotTypeMask.plot_type_id == plot_type.id))
    mask = PlotTypeMask(plot_type_id=plot_type.id, version=(last or 0) + 1, regions=[list(r) for r in checked],
                        created_by=by or "", comment=comment or "")
    session.add(mask)
    session.flush()
    return mask


def mask_history(session: Session, plot_type_id: int) -> list[PlotTypeMask]:
    """Every mask version of the plot type, newest first."""
    return list(session.scalars(select(PlotTypeMask).where(PlotTypeMask.plot_type_id == plot_type_id)
                                .order_by(PlotTypeMask.version.desc())))


def mask_regions(session: Session, mask_id: int | None) -> list[Region]:
    """The rectangles of one mask version (a model's or a reference set's `mask_id`); [] for None."""
    if mask_id is None:
        return []
    mask = session.get(PlotTypeMask, mask_id)
    return validate_regions(mask.regions) if mask is not None else []


def model_regions(session: Session, model_id: int) -> list[Region]:
    """The rectangles a model version was trained with and applies to its input."""
    return mask_regions(session, session.scalar(select(Model.mask_id).where(Model.id == model_id)))


def save_mask(db: HydraDB, plot_type: str, regions: Iterable[object] | None, user: str | None,
              comment: str = "") -> PlotTypeMask:
    """`set_mask` as a person does it (CLI, Library): checked first (MaskError, nothing written), then only
    with `edit_reference` or `edit_thresholds` for the plot type; every attempt lands in the audit log."""
    checked = validate_regions(regions)
    with db.read() as s:
        plot_id = catalog.get_plot_type(s, plot_type).id
        permission = next((p for p in PERMISSIONS if catalog.has_permission(s, user, p, plot_id)), None)
    text = "; ".join(region_text(r) for r in checked) or "none (cleared)"
    action = f"set mask of {plot_type}"
    if permission is None:
        refusal = catalog.PermissionDenied(f"user {user or 'anonymous'!r} may not {action} "
                                           f"(needs {PERMISSIONS[0]!r} or {PERMISSIONS[1]!r})")
        db.write(lambda s: catalog.record_audit(s, user or "", action, allowed=False, detail=f"{refusal}; {text}"))
        raise refusal
    for attempt in range(3):  # two people saving at once: the later one takes the next version number
        try:
            return catalog.guarded_write(
                db, user, permission, plot_id, action,
                lambda s: set_mask(s, s.get(PlotType, plot_id), checked, user or "", comment), detail=text)
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")
