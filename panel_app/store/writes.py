"""The write half of `HydraStore`: every change a page makes, checked and audited server-side.

Each write goes through `catalog.guarded_write` (or a registry function that checks the same way), so the
permission check and the audit record happen whatever the browser sends.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hydra_assets import catalog
from hydra_assets.catalog import CatalogError, PermissionDenied
from hydra_assets.db.models import Alarm, Image, LabelHistory, User, utcnow
from hydra_assets.labeling import LabelChange, apply_labels, labels_since, undo_labels
from panel_app.queries import reference as reference_q
from panel_app.queries.report import CONFIRMED_SOURCE
from panel_app.store.cache import SHARED
from panel_app.store.reads import PageReads

T = TypeVar("T")


class PageWrites(PageReads):
    """Labels, thresholds, activation and alarm acknowledgement, for the session's logged-in user."""

    version: int

    def _guarded(self, permission: str, plot_type_id: int | None, action: str, work: Callable[[Session], T],
                 detail: str = "") -> T:
        try:
            return catalog.guarded_write(self.db, self.user, permission, plot_type_id, action, work, detail=detail)
        finally:
            self._changed()

    def _user_id(self, session: Session) -> int | None:
        return session.scalar(select(User.id).where(User.name == self.user)) if self.user else None

    def apply_labels(
        self, plot_type_id: int, painted: Mapping[Any, Any], *, shown: Sequence[int], source: str = "labeler",
        changes: list[LabelChange] | None = None,
    ) -> int:
        """Store painted labels (image id -> label id, None erases) in one transaction; returns how many changed.

        Only images the page showed for this plot type and labels of this plot type are accepted, and only
        from a user with `label` permission on the plot type.  `changes` collects what an undo needs.
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
            done.clear()  # a retried transaction starts again
            return apply_labels(session, clean, user_id=self._user_id(session), source=source, changes=done)

        name = info.name if info else plot_type_id
        done: list[LabelChange] = []
        count = self._guarded("label", plot_type_id, "apply labels", work,
                              detail=f"{len(clean)} image(s) of plot type {name}")
        if changes is not None:
            changes.extend(done)
        return count

    def resolve_label_check(self, check_id: int, action: str, label_id: int | None = None) -> str:
        """Answer an audit-queue check: `confirm` keeps the label, `fix` stores `label_id`; needs `label`
        permission, audited (hydra_assets/label_audit.py)."""
        from hydra_assets.label_audit import resolve_guarded

        try:
            return resolve_guarded(self.db, self.user, check_id, action, label_id)
        finally:
            self._changed()

    def start_suggested_training(self, plot_type_id: int, runs: str) -> tuple[int, Any]:
        """Train, backtest on `runs` and offer activation, in the background (Library's suggested training):
        needs `activate_models`, audited; runs written wrongly or without images start nothing."""
        from hydra_assets import training_suggestion
        from hydra_assets.backtest import count_images, parse_runs

        info = self.plot_type(plot_type_id)
        if info is None:
            raise CatalogError(f"unknown plot type {plot_type_id}")
        first, last = parse_runs(runs)

        def work(session: Session) -> None:
            if count_images(session, plot_type_id, first, last) == 0:
                raise CatalogError(f"plot type {info.name} has no stored images in runs {first}-{last}")

        self._guarded("activate_models", plot_type_id, "train and backtest", work, detail=f"{info.name} runs {runs}")
        return training_suggestion.start_training(self.config.settings, info.name, f"{first}-{last}", self.user or "")

    def undo_labels(self, plot_type_id: int, changes: Sequence[LabelChange]) -> tuple[int, int]:
        """Undo an Apply of this session (Labeler's Undo): checked like a label change and audited.

        Returns (undone, left alone because someone labeled them since).
        """
        info = self.plot_type(plot_type_id)
        name = info.name if info else plot_type_id

        def work(session: Session) -> tuple[int, int]:
            foreign = session.scalars(select(Image.id).where(Image.id.in_([c.image_id for c in changes]),
                                                             Image.plot_type_id != plot_type_id)).all()
            if foreign:
                raise CatalogError(f"images {list(foreign)[:5]} belong to another plot type")
            return undo_labels(session, changes, user_id=self._user_id(session))

        return self._guarded("label", plot_type_id, "undo labels", work,
                             detail=f"{len(changes)} image(s) of plot type {name}")

    def labels_since(self, since: datetime) -> int:
        """How many labels the logged-in user stored since `since` (0 without a Hydra user)."""
        if not self.user:
            return 0

        def count(session: Session) -> int:
            user_id = self._user_id(session)
            return 0 if user_id is None else labels_since(session, user_id, since)

        return self._read(count)

    def fix_label(self, image_id: int, label_id: int | None, *, source: str = "training_report") -> int:
        """Set one image's human label (Training report's one-click fix)."""
        plot_type_id = self._read(lambda s: s.scalar(select(Image.plot_type_id).where(Image.id == image_id)))
        if plot_type_id is None:
            raise CatalogError(f"unknown image {image_id}")
        return self.apply_labels(plot_type_id, {image_id: label_id}, shown=[image_id], source=source)

    def confirm_label(self, image_id: int, *, source: str = CONFIRMED_SOURCE) -> int | None:
        """Record that the image's human label is right (Training report: "Human is right"); returns the label.

        The label stays; a history row with the same label before and after says who confirmed it and when.
        """
        plot_type_id = self._read(lambda s: s.scalar(select(Image.plot_type_id).where(Image.id == image_id)))
        if plot_type_id is None:
            raise CatalogError(f"unknown image {image_id}")

        def work(session: Session) -> int | None:
            image = session.get(Image, image_id)
            if image is None or image.label_id is None:
                raise CatalogError(f"image {image_id} has no human label to confirm")
            session.add(LabelHistory(image_id=image_id, label_id=image.label_id, previous_label_id=image.label_id,
                                     user_id=self._user_id(session), labeled_at=utcnow(), source=source))
            return image.label_id

        return self._guarded("label", plot_type_id, "confirm label", work, detail=f"image {image_id}")

    def set_threshold(self, model_id: int, label_id: int, value: float) -> float | None:
        """Change one label's threshold of a model version; returns the old value.

        Delegates to `hydra_assets.ml.registry.set_threshold`, which checks `edit_thresholds` and keeps history.
        """
        from hydra_assets.ml import registry

        info = self.model(model_id)
        if info is None:
            raise CatalogError(f"unknown model {model_id}")
        label = self.plot_type(info.plot_type_id).label(int(label_id)) if self.plot_type(info.plot_type_id) else None
        if label is None:
            raise CatalogError(f"label {label_id} is not a label of this model's plot type")
        old = next((t.value for t in self.thresholds_of(model_id, info.plot_type_id) if t.label_id == label.id),
                   None)
        registry.set_threshold(self.db, model_id, label.name, float(value), self.user or "")
        self._changed()
        return old

    def activate_model(self, model_id: int) -> str:
        """Make a model version the one Predict uses (`hydra_assets.ml.registry.activate_model`: checks
        `activate_models`, moves the MLflow alias `active` in the same transaction)."""
        from hydra_assets.ml import registry

        info = self.model(model_id)
        plot_type = self.plot_type(info.plot_type_id) if info else None
        if info is None or plot_type is None:
            raise CatalogError(f"unknown model {model_id}")
        mlflow = self.config.settings if self.config.sync_mlflow_alias else None
        notes = self.activation_notes(model_id)  # its latest backtest, or why there is none (hydra_assets/backtest.py)
        try:
            registry.activate_model(self.db, mlflow, plot_type.name, info.version, self.user or "",
                                    reason="Library page")
        except (PermissionDenied, CatalogError):
            raise
        except Exception as error:  # MLflow refused the alias: the whole activation rolled back
            raise CatalogError(f"MLflow refused to move the alias, nothing changed: {error}") from error
        finally:
            self._changed()
        return " ".join(notes)

    def request_backtest(self, model_id: int, runs: str) -> Any:
        """Ask for a backtest of a version over runs "A-B" (`hydra_assets.backtest.request_backtest`: checks
        `activate_models`, refuses bad input with nothing written); the `backtest_requests` sensor launches it."""
        from hydra_assets import backtest

        info = self.model(model_id)
        plot_type = self.plot_type(info.plot_type_id) if info else None
        if info is None or plot_type is None:
            raise CatalogError(f"unknown model {model_id}")
        try:
            return backtest.request_backtest(self.db, self.config.settings, plot_type.name, info.key, runs,
                                             self.user or "")
        finally:
            self._changed()

    def _challenger_write(self, plot_type_id: int, write: Callable[[str, bool], Any]) -> Any:
        """Run a `hydra_assets.challenger` write (it checks `activate_models` and audits) for this plot type."""
        plot_type = self.plot_type(plot_type_id)
        if plot_type is None:
            raise CatalogError(f"unknown plot type {plot_type_id}")
        try:
            return write(plot_type.name, self.config.sync_mlflow_alias)
        except (PermissionDenied, CatalogError):
            raise
        except Exception as error:  # MLflow refused the alias: the whole change rolled back
            raise CatalogError(f"MLflow refused to move the alias, nothing changed: {error}") from error
        finally:
            self._changed()

    def set_challenger(self, model_id: int) -> str:
        """Make a version its plot type's challenger (issue 15); returns its key."""
        from hydra_assets import challenger

        info = self.model(model_id)
        if info is None:
            raise CatalogError(f"unknown model {model_id}")
        return self._challenger_write(info.plot_type_id, lambda name, sync: challenger.set_challenger(
            self.db, self.config.settings, name, f"{info.name}/{info.version}", self.user or "", sync_alias=sync).key)

    def clear_challenger(self, plot_type_id: int) -> str | None:
        """The plot type has no challenger any more; returns the key of the one that stepped down."""
        from hydra_assets import challenger

        def write(name: str, sync: bool) -> str | None:
            previous = challenger.clear_challenger(self.db, self.config.settings, name, self.user or "",
                                                   sync_alias=sync)
            return previous.key if previous else None

        return self._challenger_write(plot_type_id, write)

    def promote_challenger(self, plot_type_id: int) -> str:
        """The plot type's challenger becomes its active version, in one audited action; returns its key."""
        from hydra_assets import challenger

        return self._challenger_write(plot_type_id, lambda name, sync: challenger.promote(
            self.db, self.config.settings, name, self.user or "", sync_alias=sync).key)

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

    # ---- masks (issue 14) ----------------------------------------------------------------------------

    def set_mask(self, plot_type_id: int, regions: Sequence[Sequence[float]], *, comment: str = "") -> int:
        """A new mask version of the plot type (an empty list clears it); its version number.  Needs
        `edit_reference` or `edit_thresholds`, checked and audited server-side (`mask_versions.save_mask`);
        a bad rectangle raises `MaskError` (a ValueError) with nothing written."""
        from hydra_assets.mask_versions import save_mask

        info = self.plot_type(plot_type_id)
        if info is None:
            raise CatalogError(f"unknown plot type {plot_type_id}")
        try:
            return save_mask(self.db, info.name, list(regions), self.user, comment).version
        finally:
            self._changed()

    # ---- the reference comparison (issue 14) ---------------------------------------------------------

    def choose_reference(self, plot_type_id: int, runs: Sequence[int], *, comment: str = "") -> Any:
        """Make `runs` the plot type's reference: a new version, kept in the history with who and when, and the
        plot type's rule "expert" (`hydra_assets.references.choose_reference`); needs `edit_reference`.
        Returns its `ReferenceChange` (version, images, limit, images excluded and why).

        A run Hydra does not know, or one without images of this plot type, is refused with nothing written."""
        from hydra_assets import references
        from hydra_assets.db.models import PlotType

        wanted = sorted({int(r) for r in runs})
        info = self.plot_type(plot_type_id)
        name = info.name if info else plot_type_id

        def work(session: Session) -> Any:
            if not wanted:
                raise CatalogError("Name at least one run.")
            plot_type = session.get(PlotType, plot_type_id)
            if plot_type is None:
                raise CatalogError(f"unknown plot type {plot_type_id}")
            found = reference_q.run_images(session, plot_type_id, wanted)
            unknown = [r for r, (known, _n) in found.items() if not known]
            empty = [r for r, (known, n) in found.items() if known and not n]
            problems = ([f"run {', '.join(map(str, unknown))} {'is' if len(unknown) == 1 else 'are'} unknown to Hydra"]
                        if unknown else [])
            problems += [f"run {r} has no image of {plot_type.name}" for r in empty]
            if problems:
                raise CatalogError("; ".join(problems) + ": nothing was changed.")
            try:
                return references.choose_reference(session, self.config.settings.images_dir, plot_type, wanted,
                                                   by=self.user or "", comment=comment)
            except ValueError as error:  # the reference's own checks (ReferenceError: no usable image, …)
                raise CatalogError(f"{error}: nothing was changed.") from error

        return self._guarded("edit_reference", plot_type_id, "choose reference", work,
                             detail=f"plot type {name}: runs {', '.join(map(str, wanted))}")

    def follow_latest_good_runs(self, plot_type_id: int) -> Any:
        """Switch the plot type to the auto rule and follow its latest good runs now (a new version when they
        changed; `hydra_assets.references.auto_reference`); needs `edit_reference`.  Returns its `ReferenceChange`."""
        from hydra_assets import references
        from hydra_assets.db.models import PlotType

        def work(session: Session) -> Any:
            plot_type = session.get(PlotType, plot_type_id)
            if plot_type is None:
                raise CatalogError(f"unknown plot type {plot_type_id}")
            try:
                return references.auto_reference(session, self.config.settings.images_dir, plot_type,
                                                 by=self.user or "auto")
            except ValueError as error:
                raise CatalogError(f"{error}: nothing was changed.") from error

        info = self.plot_type(plot_type_id)
        return self._guarded("edit_reference", plot_type_id, "reference rule auto", work,
                             detail=f"plot type {info.name if info else plot_type_id}")

    def set_reference_settings(self, plot_type_id: int, *, alarm: bool | None = None, quantile: float | None = None,
                               rule: str | None = None) -> list[str]:
        """Change what the user changed of a plot type's reference settings (None = leave as it is): the
        reference alarm switch, the quantile its limit is calibrated at, the rule (auto | expert).  Needs
        `edit_reference`; returns what changed, in words."""
        from hydra_assets.db.models import PlotType

        if rule is not None and rule not in ("auto", "expert"):
            raise CatalogError(f"unknown rule {rule!r}: auto or expert")
        if quantile is not None and not 0.5 <= quantile < 1.0:
            raise CatalogError(f"quantile {quantile} is outside 0.5 – 0.9999")

        def work(session: Session) -> list[str]:
            plot_type = session.get(PlotType, plot_type_id)
            if plot_type is None:
                raise CatalogError(f"unknown plot type {plot_type_id}")
            changed = []
            if alarm is not None and bool(alarm) != bool(plot_type.reference_alarm):
                plot_type.reference_alarm = bool(alarm)
                changed.append(f"reference alarm {'on' if alarm else 'off'}")
            if quantile is not None and float(quantile) != float(plot_type.reference_quantile):
                changed.append(f"quantile {plot_type.reference_quantile:g} → {quantile:g}")
                plot_type.reference_quantile = float(quantile)
            if rule is not None and rule != plot_type.reference_rule:
                changed.append(f"rule {plot_type.reference_rule} → {rule}")
                plot_type.reference_rule = rule
            return changed

        info = self.plot_type(plot_type_id)
        parts = [f"alarm={alarm}" if alarm is not None else "", f"quantile={quantile}" if quantile is not None else "",
                 f"rule={rule}" if rule is not None else ""]
        return self._guarded("edit_reference", plot_type_id, "reference settings", work,
                             detail=f"plot type {info.name if info else plot_type_id}: {' '.join(p for p in parts if p)}")

    def sign_off_flag(self, run: int, scope: str, group: str, first_chunk: int | None, last_chunk: int | None, *,
                      action: str, flag: str | None, comment: str) -> None:
        """Confirm or override a run's flag for a group (Runs page): `flags.signoff.record_signoff` checks
        `certify`, refuses a malformed sign-off (FlagError) and audits the attempt, refused or done."""
        from hydra_assets.flags.signoff import record_signoff

        try:
            record_signoff(self.db, run, scope, group, action, flag, comment, self.user or "", first_chunk,
                           last_chunk)
        finally:
            self._changed()

    def _changed(self) -> None:
        SHARED.clear()
        self.version += 1
