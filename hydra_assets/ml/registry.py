"""The model library: registered versions, activation, thresholds — MLflow registry mirrored in the Hydra DB.

The Hydra database is what the pipeline reads (`models.active`, `thresholds`); the MLflow alias ``active``
on ``hydra-<plot_type>`` mirrors it for people and tools that look at MLflow.  Activation, deactivation
and threshold edits take a user name and go through `catalog.guarded_write`, so the Library page, the CLI
and any script meet the same permission check (``activate_models`` / ``edit_thresholds``) and leave an
audit trail.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hydra_assets import catalog
from hydra_assets.catalog import CatalogError, guarded_write
from hydra_assets.db.models import Label, Model, PlotType, Threshold, ThresholdChange, User, utcnow
from hydra_assets.ml.active import LOCAL_PREFIX, mark_active
from hydra_assets.tracking import ACTIVE_ALIAS, TrackingService, registered_model_name

if TYPE_CHECKING:
    from hydra_assets.db.engine import HydraDB
    from hydra_assets.settings import HydraSettings

log = logging.getLogger(__name__)
CLI_USER = "cli"  # the system user the command line acts as unless told otherwise
CHALLENGER_ALIAS = "challenger"  # MLflow alias of a plot type's challenger version (hydra_assets/challenger.py)


# ---- users ---------------------------------------------------------------------------------------


def ensure_cli_user(db: HydraDB, name: str = CLI_USER) -> str:
    """Create the `cli` system user (admin role) on first use: whoever runs `hydra` already holds the
    database credentials, so the command line is trusted; the name makes its writes visible in the audit log."""

    def write(session: Session) -> None:
        if session.scalar(select(User.id).where(User.name == name)) is None:
            catalog.add_user(session, name, role="admin", full_name="Hydra command line")

    db.write(write, what="ensure cli user")
    return name


# ---- finding versions ----------------------------------------------------------------------------


def find_model(session: Session, plot_type: str, version: str | int) -> Model:
    """A version of a plot type: ``3`` (in ``hydra-<plot_type>``, else ``local-<plot_type>``) or ``name/3``."""
    plot = catalog.get_plot_type(session, plot_type)
    text = str(version).strip()
    if "/" in text:
        candidates = [tuple(text.rsplit("/", 1))]
    else:
        candidates = [(registered_model_name(plot_type), text), (f"{LOCAL_PREFIX}{plot_type}", text)]
    for name, number in candidates:
        row = session.scalar(select(Model).where(Model.plot_type_id == plot.id, Model.mlflow_name == name,
                                                 Model.mlflow_version == number))
        if row is not None:
            return row
    known = session.scalars(select(Model).where(Model.plot_type_id == plot.id).order_by(Model.id)).all()
    hint = ", ".join(m.key for m in known) or "none yet (hydra train " + plot_type + ")"
    raise CatalogError(f"plot type {plot_type} has no model version {text!r}; versions: {hint}")


def describe(session: Session, model: Model) -> dict[str, Any]:
    """A model version as the CLI and the Library page show it."""
    plot = session.get(PlotType, model.plot_type_id)
    return {
        "plot_type": plot.name if plot else None,
        "model": model.key,
        "name": model.mlflow_name,
        "version": model.mlflow_version,
        "id": model.id,
        "active": model.active,
        "challenger": model.challenger,  # classifies live chunks in shadow (hydra_assets/challenger.py)
        "topology": model.topology,
        "input_size": [model.input_height, model.input_width],
        "labels": list(model.label_names),
        "thresholds": thresholds_table(session, model.id),
        "sampling": model.sampling,
        "training_set_id": model.training_set_id,
        "training_set_size": model.training_set_size,
        "metrics": model.metrics,
        "mlflow_run_id": model.mlflow_run_id or None,
        "model_uri": model.model_uri,
        "created_at": model.created_at,
        "created_by": model.created_by,
        "activated_at": model.activated_at,
        "activated_by": model.activated_by or None,
    }


def thresholds_table(session: Session, model_id: int) -> dict[str, dict[str, float | None]]:
    rows = session.execute(
        select(Label.name, Threshold.value, Threshold.f1).join(Label, Label.id == Threshold.label_id)
        .where(Threshold.model_id == model_id).order_by(Label.order)
    )
    return {name: {"threshold": value, "f1": f1} for name, value, f1 in rows}


def list_models(db: HydraDB, plot_type: str | None = None) -> list[dict[str, Any]]:
    with db.read() as s:
        query = select(Model).join(PlotType, PlotType.id == Model.plot_type_id)
        if plot_type:
            query = query.where(Model.plot_type_id == catalog.get_plot_type(s, plot_type).id)
        return [describe(s, m) for m in s.scalars(query.order_by(PlotType.name, Model.id))]


# ---- activation ----------------------------------------------------------------------------------


def _sync_alias(config: HydraSettings | None, plot_type: str, active: Model | None) -> None:
    """Point the MLflow alias `active` where the database says (remove it when no MLflow model is active)."""
    if config is None:
        return
    client = TrackingService.from_settings(config).client
    name = registered_model_name(plot_type)
    if active is not None and active.mlflow_name == name:
        client.set_registered_model_alias(name, ACTIVE_ALIAS, active.mlflow_version)
        return
    try:
        client.delete_registered_model_alias(name, ACTIVE_ALIAS)
    except Exception:  # no such model or alias: nothing to remove
        log.debug("no alias to remove on %s", name)


def remove_alias(config: HydraSettings | None, plot_type: str, alias: str) -> None:
    """Remove an MLflow alias of the plot type's registered model (none there: nothing to do)."""
    if config is None:
        return
    try:
        TrackingService.from_settings(config).client.delete_registered_model_alias(registered_model_name(plot_type),
                                                                                   alias)
    except Exception:  # no such model or alias: nothing to remove
        log.debug("no alias %s to remove on %s", alias, registered_model_name(plot_type))


def activate_model(
    db: HydraDB, config: HydraSettings | None, plot_type: str, version: str | int, user: str, *,
    reason: str = "", action: str = "", also: Callable[[Session, Model], None] | None = None,
) -> Model:
    """Make `version` the plot type's active model (needs `activate_models`); the previous one steps down.

    `also` runs in the same transaction before the alias moves (a promoted challenger steps down as
    challenger there: `hydra_assets/challenger.promote`); `action` names the change in the audit log.
    """
    with db.read() as s:
        plot_type_id = catalog.get_plot_type(s, plot_type).id

    def work(session: Session) -> Model:
        model = find_model(session, plot_type, version)
        mark_active(session, model, by=user)
        if also is not None:
            also(session, model)
        if model.challenger:  # activated directly: the active version is never also the challenger
            model.challenger = False
            session.flush()
            remove_alias(config, plot_type, CHALLENGER_ALIAS)
        # Inside the transaction: if MLflow refuses, the database change rolls back too.
        _sync_alias(config, plot_type, model)
        return model

    return guarded_write(db, user, "activate_models", plot_type_id, action or f"activate model {plot_type} {version}",
                         work, detail=reason)


def deactivate_model(db: HydraDB, config: HydraSettings | None, plot_type: str, user: str) -> Model | None:
    """No active model for the plot type (its images are then recorded as `no_model`); returns the old one."""
    with db.read() as s:
        plot_type_id = catalog.get_plot_type(s, plot_type).id

    def work(session: Session) -> Model | None:
        previous = session.scalar(select(Model).where(Model.plot_type_id == plot_type_id, Model.active.is_(True)))
        mark_active(session, None, plot_type_id=plot_type_id, by=user)
        _sync_alias(config, plot_type, None)
        return previous

    return guarded_write(db, user, "activate_models", plot_type_id, f"deactivate model of {plot_type}", work)


# ---- thresholds ----------------------------------------------------------------------------------


def store_thresholds(session: Session, model: Model, chosen: dict[str, tuple[float, float | None]], *,
                     by: str = "training") -> None:
    """Write the thresholds a training chose (label -> (threshold, F1 at it)), recording the change."""
    labels = {lab.name: lab for lab in catalog.labels_of(session, model.plot_type_id)}
    existing = {t.label_id: t for t in session.scalars(select(Threshold).where(Threshold.model_id == model.id))}
    now = utcnow()
    for name, (value, f1) in chosen.items():
        label = labels[name]
        row = existing.get(label.id)
        old = row.value if row else None
        if row is None:
            row = Threshold(model_id=model.id, label_id=label.id, value=value, f1=f1, changed_at=now, changed_by=by)
            session.add(row)
        else:
            row.value, row.f1, row.changed_at, row.changed_by = value, f1, now, by
        session.add(ThresholdChange(model_id=model.id, label_id=label.id, old_value=old, new_value=value,
                                    changed_at=now, changed_by=by))
    session.flush()


def set_threshold(db: HydraDB, model_id: int, label: str, value: float, user: str) -> Threshold:
    """Change one label's threshold of a model version by hand (needs `edit_thresholds`), keeping history.

    The stored F1 is cleared: it described the threshold training chose, not this one.
    """
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise CatalogError(f"a threshold is a weight between 0 and 1, not {value}")
    with db.read() as s:
        model = s.get(Model, model_id)
        if model is None:
            raise CatalogError(f"no model with id {model_id}")
        plot_type_id = model.plot_type_id
        if label not in model.label_names:
            raise CatalogError(f"{label!r} is not an output of model {model.key}; outputs: "
                               f"{', '.join(model.label_names)}")

    def work(session: Session) -> Threshold:
        label_row = session.scalar(select(Label).where(Label.plot_type_id == plot_type_id, Label.name == label))
        if label_row is None:
            raise CatalogError(f"{label!r} is no longer a label of this plot type")
        row = session.scalar(select(Threshold).where(Threshold.model_id == model_id,
                                                     Threshold.label_id == label_row.id))
        now = utcnow()
        old = row.value if row else None
        if row is None:
            row = Threshold(model_id=model_id, label_id=label_row.id, value=value, f1=None, changed_at=now,
                            changed_by=user)
            session.add(row)
        else:
            row.value, row.f1, row.changed_at, row.changed_by = value, None, now, user
        session.add(ThresholdChange(model_id=model_id, label_id=label_row.id, old_value=old, new_value=value,
                                    changed_at=now, changed_by=user))
        session.flush()
        return row

    return guarded_write(db, user, "edit_thresholds", plot_type_id, f"set threshold {label} of model {model_id}",
                         work, detail=f"{label} -> {value}")


__all__ = [
    "CHALLENGER_ALIAS", "CLI_USER", "activate_model", "deactivate_model", "describe", "ensure_cli_user", "find_model",
    "list_models", "remove_alias", "set_threshold", "store_thresholds", "thresholds_table",
]
