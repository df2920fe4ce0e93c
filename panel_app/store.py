"""The pages' one door to Hydra's data: a parameterized store per browser session.

It reads the Hydra database through `panel_app.queries` (and MLflow for model curves the database lacks)
and makes every write through `catalog.guarded_write`, so the permission check and the audit record
happen server-side whatever the browser sends.  Pages hold view state only and ask the store.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import param
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hydra_assets import catalog
from hydra_assets.catalog import CatalogError, PermissionDenied
from hydra_assets.db.engine import HydraDB
from hydra_assets.db.models import Alarm, Image, Model, User, utcnow
from hydra_assets.labeling import apply_labels
from panel_app import queries as q
from panel_app.config import PagesConfig
from panel_app.images import ImageLocator

log = logging.getLogger(__name__)
T = TypeVar("T")


class _TTLCache:
    """Results shared by every session for a moment (twenty Run pages polling cost one query)."""

    def __init__(self) -> None:
        self._items: dict[Any, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: Any, ttl: float, compute: Callable[[], T]) -> T:
        now = time.monotonic()
        with self._lock:
            hit = self._items.get(key)
            if hit and now - hit[0] < ttl:
                return hit[1]
        value = compute()
        with self._lock:
            self._items[key] = (now, value)
            if len(self._items) > 256:
                self._items.clear()
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


SHARED = _TTLCache()


class HydraStore(param.Parameterized):
    """Everything a page reads or writes, for one browser session and its logged-in user."""

    user = param.String(default=None, allow_None=True, doc="Login name; mapped to the Hydra user of that name.")
    version = param.Integer(default=0, doc="Bumped after every write, so pages can refresh.")

    def __init__(self, db: HydraDB, config: PagesConfig, *, locator: ImageLocator | None = None, **params: Any):
        super().__init__(**params)
        self.db = db
        self.config = config
        self.locator = locator or ImageLocator(db, config.settings)

    # ---- reading ------------------------------------------------------------------------------------

    def read(self, query: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self.db.read() as session:
            return query(session, *args, **kwargs)

    def shared(self, key: Any, ttl: float, query: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A read whose result all sessions share for `ttl` seconds."""
        return SHARED.get((self.db.url, key), ttl, lambda: self.read(query, *args, **kwargs))

    def catalogue(self) -> dict[int, q.PlotTypeInfo]:
        return self.shared("catalogue", 5.0, q.catalogue)

    def plot_type(self, plot_type_id: int | None) -> q.PlotTypeInfo | None:
        return self.catalogue().get(plot_type_id) if plot_type_id is not None else None

    def plot_type_options(self, counts: Mapping[int, int] | None = None) -> dict[str, int]:
        """Select-widget options: name (and count) -> id."""
        options = {}
        for pt in self.catalogue().values():
            label = pt.name if counts is None else f"{pt.name} ({counts.get(pt.id, 0)} to label)"
            options[label] = pt.id
        return options

    def groups_of(self) -> dict[int, list[str]]:
        return {pt.id: pt.groups for pt in self.catalogue().values()}

    def group_names(self) -> list[str]:
        return sorted({g for pt in self.catalogue().values() for g in pt.groups}, key=str.lower)

    def super_group_names(self) -> list[str]:
        return sorted({g for pt in self.catalogue().values() for g in pt.super_groups}, key=str.lower)

    def plot_types_in(self, *, group: str | None = None, super_group: str | None = None) -> list[int] | None:
        """Ids of the plot types in a group / super group; None when no filter is set."""
        if not group and not super_group:
            return None
        return [
            pt.id for pt in self.catalogue().values()
            if (not group or group in pt.groups) and (not super_group or super_group in pt.super_groups)
        ]

    # ---- who is looking -----------------------------------------------------------------------------

    def identity(self) -> tuple[int | None, str | None]:
        """(Hydra user id, role) of the login, or (None, None)."""
        return self.shared(("identity", self.user), 5.0, q.user_role, self.user)

    def can(self, permission: str, plot_type_id: int | None = None) -> bool:
        """What the page shows as editable; the write itself checks again (`guarded_write`)."""
        if not self.user:
            return False
        return self.read(catalog.has_permission, self.user, permission, plot_type_id)

    def describe_user(self) -> str:
        if not self.user:
            return "not signed in (read only)"
        user_id, role = self.identity()
        if user_id is None:
            return f"{self.user} (no Hydra user: read only)"
        return f"{self.user} ({role or 'no role'})"

    # ---- writing ------------------------------------------------------------------------------------

    def _guarded(self, permission: str, plot_type_id: int | None, action: str, work: Callable[[Session], T],
                 detail: str = "") -> T:
        try:
            return catalog.guarded_write(self.db, self.user, permission, plot_type_id, action, work, detail=detail)
        finally:
            self._changed()

    def _user_id(self, session: Session) -> int | None:
        return session.scalar(select(User.id).where(User.name == self.user)) if self.user else None

    def apply_labels(
        self, plot_type_id: int, painted: Mapping[Any, Any], *, shown: Sequence[int], source: str = "labeler"
    ) -> int:
        """Store painted labels (image id -> label id, None erases) in one transaction; returns how many changed.

        Only images the page showed for this plot type and labels of this plot type are accepted, and only
        from a user with `label` permission on the plot type.
        """
        clean = {int(k): (None if v is None else int(v)) for k, v in painted.items()}
        stray = sorted(set(clean) - set(shown))
        if stray:
            raise CatalogError(f"images {stray[:5]} are not on this page")
        info = self.plot_type(plot_type_id)
        valid = {lab.id for lab in info.labels} if info else set()
        wrong = sorted({v for v in clean.values() if v is not None and v not in valid})
        if wrong:
            raise CatalogError(f"label ids {wrong} are not labels of this plot type")

        def work(session: Session) -> int:
            foreign = session.scalars(
                select(Image.id).where(Image.id.in_(list(clean)), Image.plot_type_id != plot_type_id)
            ).all()
            if foreign:
                raise CatalogError(f"images {list(foreign)[:5]} belong to another plot type")
            return apply_labels(session, clean, user_id=self._user_id(session), source=source)

        name = info.name if info else plot_type_id
        return self._guarded("label", plot_type_id, "apply labels", work,
                             detail=f"{len(clean)} image(s) of plot type {name}")

    def fix_label(self, image_id: int, label_id: int | None, *, source: str = "training_report") -> int:
        """Set one image's human label (Training report's one-click fix)."""
        plot_type_id = self.read(lambda s: s.scalar(select(Image.plot_type_id).where(Image.id == image_id)))
        if plot_type_id is None:
            raise CatalogError(f"unknown image {image_id}")
        return self.apply_labels(plot_type_id, {image_id: label_id}, shown=[image_id], source=source)

    def set_threshold(self, model_id: int, label_id: int, value: float) -> float | None:
        """Change one label's threshold of a model version; returns the old value.

        Delegates to `hydra_assets.ml.registry.set_threshold`, which checks `edit_thresholds` and keeps history.
        """
        from hydra_assets.ml import registry

        info = self.read(q.model, model_id)
        if info is None:
            raise CatalogError(f"unknown model {model_id}")
        label = self.plot_type(info.plot_type_id).label(int(label_id)) if self.plot_type(info.plot_type_id) else None
        if label is None:
            raise CatalogError(f"label {label_id} is not a label of this model's plot type")
        old = next((t.value for t in self.read(q.thresholds_of, model_id, info.plot_type_id) if t.label_id == label.id),
                   None)
        registry.set_threshold(self.db, model_id, label.name, float(value), self.user or "")
        self._changed()
        return old

    def activate_model(self, model_id: int) -> str:
        """Make a model version the one Predict uses (`hydra_assets.ml.registry.activate_model`: checks
        `activate_models`, moves the MLflow alias `active` in the same transaction)."""
        from hydra_assets.ml import registry

        info = self.read(q.model, model_id)
        plot_type = self.plot_type(info.plot_type_id) if info else None
        if info is None or plot_type is None:
            raise CatalogError(f"unknown model {model_id}")
        mlflow = self.config.settings if self.config.sync_mlflow_alias else None
        try:
            registry.activate_model(self.db, mlflow, plot_type.name, info.version, self.user or "",
                                    reason="Library page")
        except (PermissionDenied, CatalogError):
            raise
        except Exception as error:  # MLflow refused the alias: the whole activation rolled back
            raise CatalogError(f"MLflow refused to move the alias, nothing changed: {error}") from error
        finally:
            self._changed()
        return ""

    def acknowledge_alarms(self, alarm_ids: list[int]) -> int:
        """Mark alarms as seen by this user, for every Run page (the banner goes on all of them), and
        audit it; any signed-in user may (the shift crew).  Returns how many were still unacknowledged."""
        if not alarm_ids:
            return 0
        if not self.user:
            raise PermissionDenied("sign in to acknowledge alarms")

        def work(session: Session) -> int:
            done = session.execute(
                update(Alarm).where(Alarm.id.in_(alarm_ids), Alarm.acknowledged_at.is_(None))
                .values(acknowledged_by=self.user, acknowledged_at=utcnow())).rowcount
            catalog.record_audit(session, self.user or "", "acknowledge alarms",
                         detail=f"{done} of alarms {', '.join(map(str, sorted(alarm_ids)))}")
            return done

        count = self.db.write(work, what="acknowledge alarms")
        self._changed()
        return count

    def _changed(self) -> None:
        SHARED.clear()
        self.version += 1

    # ---- model quality -------------------------------------------------------------------------------

    def confusion(self, info: q.ModelInfo) -> q.Confusion:
        """The enhanced confusion matrix: from the validation predictions the fit recorded (models cache or
        MLflow artifact), else from what the database holds (`queries.confusion`)."""
        plot_type = self.plot_type(info.plot_type_id)
        names = [lab.name for lab in plot_type.labels] if plot_type else []

        def from_predictions() -> q.Confusion | None:
            if not info.mlflow_run_id or not info.training_set_id or not self.mlflow_available():
                return None
            try:
                from hydra_assets.ml.predictions import load_predictions
                from hydra_assets.tracking import TrackingService

                with self.db.read() as session:
                    row = session.get(Model, info.id)
                    session.expunge(row)
                settings = self.config.settings
                predictions = load_predictions(settings, TrackingService.from_settings(settings), row)
            except Exception as error:  # no recorded predictions: fall back to the database
                log.info("no recorded predictions for %s: %s", info.key, error)
                return None
            validation = predictions.split == "validation"
            return q.confusion_from_predictions(predictions.label_names, predictions.true_index[validation],
                                                predictions.weights[validation])

        recorded = SHARED.get(("predictions", self.db.url, info.id), 300.0, from_predictions)
        return recorded if recorded is not None and recorded.total else self.read(q.confusion, info, names)

    def mlflow_available(self) -> bool:
        """False for an embedded SQLite MLflow store that does not exist (a page must not create one)."""
        uri = self.config.settings.mlflow_tracking_uri or ""
        if uri.startswith("sqlite:///"):
            return Path(uri.removeprefix("sqlite:///")).is_file()
        return True

    # ---- MLflow ------------------------------------------------------------------------------------

    def mlflow_history(self, run_id: str, keys: Sequence[str] = ("loss", "val_loss", "accuracy", "val_accuracy")
                       ) -> dict[str, list[float]]:
        """Per-epoch metric curves of an MLflow run ({} when MLflow cannot be reached)."""
        if not run_id or not self.mlflow_available():
            return {}

        def fetch() -> dict[str, list[float]]:
            try:
                from mlflow.tracking import MlflowClient

                client = MlflowClient(tracking_uri=self.config.settings.mlflow_tracking_uri)
                curves = {}
                for key in keys:
                    history = sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))
                    if history:
                        curves[key] = [float(m.value) for m in history]
                return curves
            except Exception as error:  # MLflow down must not break the Library page
                log.info("MLflow history of run %s unavailable: %s", run_id, error)
                return {}

        return SHARED.get(("mlflow", run_id), 60.0, fetch)


def now() -> datetime:
    return utcnow()


__all__ = ["SHARED", "CatalogError", "HydraStore", "PermissionDenied", "now"]
