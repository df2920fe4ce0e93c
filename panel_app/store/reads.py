"""Every read a page makes, as a typed store method; the SQL behind each lives in `panel_app.queries`.

Long module: one short typed method per page read, kept in one class so the pages have one door.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from hydra_assets import catalog
from hydra_assets import suggestions as hydra_suggestions
from hydra_assets.db.models import Model
from hydra_assets.flags.standing import StandingFlag
from hydra_assets.scores.suggestions import Suggestion
from panel_app import queries as q
from panel_app.queries import alarms as alarms_q
from panel_app.queries import backtest as backtest_q
from panel_app.queries import masks as masks_q
from panel_app.queries import queues as queues_q
from panel_app.queries import reference as reference_q
from panel_app.queries import runs as runs_q
from panel_app.queries import similarity as similarity_q
from panel_app.store.cache import SHARED
from panel_app.views_data import (
    SORT_NAMES,
    AlarmFilter,
    AlarmInfo,
    AlarmRow,
    BrowseFilter,
    Card,
    Confusion,
    Disagreement,
    LogEntry,
    ModelInfo,
    PlotTypeInfo,
    ReportInfo,
    RunRow,
    RunsFilter,
    Signoff,
    ThresholdInfo,
    Tile,
    TrendPoint,
    confusion_from_predictions,
    f1_at,
    history_from_metrics,
)

if TYPE_CHECKING:
    from hydra_assets.db.engine import HydraDB
    from hydra_assets.similarity import SimilarityMap
    from panel_app.config import PagesConfig

log = logging.getLogger(__name__)
T = TypeVar("T")


class PageReads:
    """The read half of `HydraStore`: one method per thing a page shows, cached where many sessions poll."""

    db: HydraDB
    config: PagesConfig
    user: str | None

    def _read(self, query: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self.db.read() as session:
            return query(session, *args, **kwargs)

    def _shared(self, key: Any, ttl: float, query: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A read whose result all sessions share for `ttl` seconds."""
        return SHARED.get((self.db.url, key), ttl, lambda: self._read(query, *args, **kwargs))

    # ---- catalogue ----------------------------------------------------------------------------------

    def catalogue(self) -> dict[int, PlotTypeInfo]:
        return self._shared("catalogue", 5.0, q.catalogue)

    def plot_type(self, plot_type_id: int | None) -> PlotTypeInfo | None:
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
        return self._shared(("identity", self.user), 5.0, q.user_role, self.user)

    def can(self, permission: str, plot_type_id: int | None = None) -> bool:
        """What the page shows as editable; the write itself checks again (`guarded_write`)."""
        if not self.user:
            return False
        return self._read(catalog.has_permission, self.user, permission, plot_type_id)

    def describe_user(self) -> str:
        if not self.user:
            return "not signed in (read only)"
        user_id, role = self.identity()
        if user_id is None:
            return f"{self.user} (no Hydra user: read only)"
        return f"{self.user} ({role or 'no role'})"

    # ---- Run page -----------------------------------------------------------------------------------

    def run_grid(self, *, fresh: bool = False) -> list[Card]:
        """Every plot type's latest card, shared by all sessions for 0.4 s; `fresh` after a new alarm, since
        the grid other sessions cached a moment ago may predate that Bad."""
        return self._read(q.run_grid, None) if fresh else self._shared("run_grid", 0.4, q.run_grid, None)

    def last_alarm_id(self) -> int:
        return self._read(q.last_alarm_id)

    def alarms_after(self, alarm_id: int) -> list[AlarmInfo]:
        return self._read(q.alarms_after, alarm_id)

    def open_alarms(self, since: datetime) -> list[AlarmInfo]:
        return self._read(q.open_alarms, since)

    def acknowledged_among(self, alarm_ids: Sequence[int]) -> set[int]:
        return self._read(q.acknowledged_among, alarm_ids)

    def news(self, *, limit: int = 1) -> list[tuple[datetime, str, str]]:
        return self._shared(("news", limit), 2.0, q.news, limit=limit)

    # ---- Log, Status, Trends ------------------------------------------------------------------------

    def log_entries(self, since: datetime, until: datetime | None = None) -> list[LogEntry]:
        return self._read(q.log_entries, since, until)

    def heartbeats(self) -> list[tuple[str, datetime, str]]:
        return self._read(q.heartbeats)

    def stage_timings(self, since: datetime) -> list[tuple[str, float, int, datetime]]:
        return self._read(q.stage_timings, since)

    def images_per_hour(self, since: datetime) -> list[tuple[datetime, int]]:
        return self._read(q.images_per_hour, since)

    def arrivals(self, since: datetime) -> tuple[int, datetime | None]:
        return self._read(q.arrivals, since)

    def trend(self, plot_type_id: int, since: datetime, until: datetime | None = None) -> list[TrendPoint]:
        return self._read(q.trend, plot_type_id, since, until)

    # ---- the reference comparison (issue 14; SQL in queries/reference.py) ---------------------------

    def reference_trend(self, plot_type_id: int, since: datetime, until: datetime | None = None
                        ) -> list[reference_q.ReferencePoint]:
        return self._read(reference_q.reference_trend, plot_type_id, since, until)

    def flagged_by_reference(self, since: datetime, until: datetime | None = None) -> list[reference_q.ReferenceFlag]:
        return self._read(reference_q.flagged_by_reference, since, until)

    def reference_sets(self, plot_type_id: int) -> list[reference_q.ReferenceInfo]:
        return self._read(reference_q.reference_sets, plot_type_id)

    def reference_settings(self, plot_type_id: int) -> tuple[bool, float, str] | None:
        return self._read(reference_q.reference_settings, plot_type_id)

    def run_images(self, plot_type_id: int, runs: Sequence[int]) -> dict[int, tuple[bool, int]]:
        return self._read(reference_q.run_images, plot_type_id, runs)

    def compare(self, image_id: int) -> reference_q.Comparison:
        """An image beside its reference and the difference (`hydra_assets.references.compare_pictures`)."""
        return self._read(reference_q.compare, image_id)

    # ---- masks (issue 14; SQL in queries/masks.py) --------------------------------------------------

    def mask_versions(self, plot_type_id: int) -> list[masks_q.MaskVersion]:
        return self._read(masks_q.mask_versions, plot_type_id)

    def mask_sample(self, plot_type_id: int) -> masks_q.MaskSample | None:
        return self._read(masks_q.mask_sample, plot_type_id)

    # ---- Labeler and Plot Browser -------------------------------------------------------------------

    def queue_counts(self, plot_type_ids: Sequence[int]) -> dict[int, int]:
        return self._read(q.queue_counts, plot_type_ids)

    def suggested_tiles(self, plot_type: str, run: int, kind: str) -> list[Tile]:
        """The Labeler queue behind a retraining suggestion: exactly the images of `run` the active model found
        novel (or left unconfirmed), unlabeled first (`hydra_assets.suggestions.suggested_images`)."""
        ids = self._read(hydra_suggestions.suggested_images, plot_type, int(run), kind)
        return self._read(q.tiles_of, ids)

    def labeler_queue(self, plot_type_id: int, *, limit: int = 100, after: tuple[int, int] | None = None
                      ) -> list[Tile]:
        return self._read(q.labeler_queue, plot_type_id, limit=limit, after=after)

    # ---- ranked Labeler queues and the audit queue (docs/labeling-queues.md) -------------------------

    def ranked_queue(self, plot_type_id: int, queue: str) -> list[int]:
        """Image ids of a ranked queue (uncertain, novel, reference, disagreement), first to label first."""
        return self._read(queues_q.ranked_images, plot_type_id, queue)

    def ranked_tiles(self, image_ids: list[int]) -> list[Tile]:
        return self._read(queues_q.tiles, image_ids)

    def backtest_queue(self, backtest_id: int) -> tuple[int | None, list[int]]:
        return self._read(queues_q.backtest_disagreement, backtest_id)

    def challenger_key(self, plot_type_id: int) -> str | None:
        return self._read(queues_q.challenger_key, plot_type_id)

    def audit_queue(self, plot_type_id: int, *, limit: int = 100) -> list[queues_q.AuditItem]:
        return self._read(queues_q.audit_items, plot_type_id, limit=limit)

    def audit_model_key(self, plot_type_id: int) -> str | None:
        return self._read(queues_q.audit_model_key, plot_type_id)

    def training_suggestion(self, plot_type_id: int) -> Any:
        """`hydra_assets.training_suggestion.TrainingSuggestion` of the plot type's version, or None."""
        from hydra_assets import training_suggestion

        info = self.plot_type(plot_type_id)
        return self._read(training_suggestion.suggest_training, plot_type_id, info.name) if info else None

    def editor_page(self, plot_type_id: int, label_ids: Sequence[int], *, start: datetime | None = None,
                    end: datetime | None = None, before: tuple[datetime, int] | None = None, limit: int = 100
                    ) -> list[Tile]:
        return self._read(q.editor_page, plot_type_id, label_ids, start=start, end=end, before=before, limit=limit)

    def browse(self, f: BrowseFilter, *, sort: str = SORT_NAMES[0], limit: int = 60, offset: int = 0
               ) -> tuple[list[Tile], bool]:
        return self._read(q.browse, f, sort=sort, limit=limit, offset=offset)

    def browse_count(self, f: BrowseFilter, *, cap: int = 1000) -> int | None:
        return self._read(q.browse_count, f, cap=cap)

    # ---- similarity map (page Map; features and projection in hydra_assets/similarity.py) -----------

    def map_points(self, plot_type_id: int, *, limit: int) -> list[similarity_q.MapPoint]:
        return self._read(similarity_q.map_points, plot_type_id, limit=limit)

    def similarity_map(self, plot_type_id: int, points: Sequence[similarity_q.MapPoint], *, method: str
                       ) -> SimilarityMap:
        """The map (`hydra_assets.similarity.SimilarityMap`) of `points`: the active model's embedding when it
        loads, else pixels; features and projection cached under `<home>/similarity/`."""
        from hydra_assets import similarity
        from panel_app.images import safe_path

        info = self.plot_type(plot_type_id)
        source, embedder, note = similarity.model_embedder(self.db, self.config.settings, info.name if info else "")
        paths = [safe_path(p.stored_path, self.locator.roots) for p in points]
        built = similarity.build_map(folder=Path(self.config.settings.home) / "similarity", plot_type_id=plot_type_id,
                                     image_ids=[p.image_id for p in points], paths=paths, method=method,
                                     source=source, embedder=embedder)
        built.notes.insert(0, note)
        return built

    # ---- Runs page, flags strip and alarm history ---------------------------------------------------

    def runs_page(self, f: RunsFilter, *, limit: int = 50, offset: int = 0) -> tuple[list[RunRow], bool]:
        return self._read(runs_q.runs_page, f, limit=limit, offset=offset)

    def runs_count(self, f: RunsFilter, *, cap: int = 10_000) -> int | None:
        return self._read(runs_q.runs_count, f, cap=cap)

    def look_back_start(self, f: RunsFilter) -> int | None:
        return self._read(runs_q.look_back_start, f)

    def flag_cell(self, run: int, scope: str, group: str) -> tuple[StandingFlag | None, list[Signoff]]:
        return self._read(runs_q.flag_cell, run, scope, group)

    def run_flags(self, run: int) -> dict[tuple[str, str], StandingFlag]:
        """The flags of one run (the Run page's strip), shared by all sessions for 2 s."""
        return self._shared(("run_flags", run), 2.0, runs_q.flag_cells, [run]).get(run, {})

    def condition_keys(self) -> list[str]:
        return self._shared("condition_keys", 30.0, runs_q.condition_keys)

    def images_behind(self, run: int, plot_type_ids: Sequence[int], first_chunk: int | None = None,
                      last_chunk: int | None = None, *, limit: int = 48) -> list[Tile]:
        return self._read(runs_q.images_behind, run, plot_type_ids, first_chunk, last_chunk, limit=limit)

    def alarm_history(self, f: AlarmFilter, *, limit: int = 50, offset: int = 0) -> tuple[list[AlarmRow], bool]:
        return self._read(alarms_q.alarm_history, f, limit=limit, offset=offset)

    def export_flags(self, fmt: str, *, run_min: int | None = None, run_max: int | None = None,
                     group: str | None = None, scope: str = "group") -> str:
        """A certification file (Runs page downloads): golden JSON of the Good ranges of `group` (of every plot
        group when none is chosen), or the CSV of every flag, reason and sign-off."""
        from hydra_assets.flags.export import flags_csv, golden_json

        first, last = run_min if run_min is not None else 0, run_max if run_max is not None else 2**63 - 1
        if fmt == "csv":
            return self._read(flags_csv, first, last, groups=[group] if group else None,
                              scope=scope if group else None)
        groups = [group] if group else self.group_names()
        return self._read(golden_json, groups, first, last, scope=scope if group else "group") if groups else "{}\n"

    # ---- retraining suggestions --------------------------------------------------------------------

    def suggestions(self, plot_type: str | None = None, *, since: datetime | None = None) -> list[Suggestion]:
        """Runs where the active model is out of its depth (Library, Status and Log banners), shared 10 s."""
        since = since.replace(second=0, microsecond=0) if since else None  # pages polling share one answer
        return self._shared(("suggestions", plot_type, since), 10.0, hydra_suggestions.retraining_suggestions,
                            since=since, plot_type=plot_type)

    # ---- Library and Training report ----------------------------------------------------------------

    def models_of(self, plot_type_id: int) -> list[ModelInfo]:
        return self._read(q.models_of, plot_type_id)

    def model(self, model_id: int) -> ModelInfo | None:
        return self._read(q.model, model_id)

    def active_model(self, plot_type_id: int) -> ModelInfo | None:
        return self._read(q.active_model, plot_type_id)

    def backtests_of(self, model_id: int) -> list[dict[str, Any]]:
        return self._read(backtest_q.backtests_of, model_id)  # newest first (issue 15)

    def activation_notes(self, model_id: int) -> list[str]:
        return self._read(backtest_q.activation_notes, model_id)  # warnings start with "warning:"

    def challenger_comparison(self, plot_type: str, hours: int | None = None) -> Any:
        """`hydra_assets.challenger.ChallengerComparison`: the plot type's challenger against the live results,
        per run over the last `hours` (None: since it was named; issue 15).  Shared for 30 s: it reads every
        image of the period (about 2 s for 100,000 on SQLite), and a write clears it."""
        from datetime import timedelta

        from hydra_assets.challenger import running_comparison
        from hydra_assets.db.models import utcnow

        since = None if hours is None else utcnow() - timedelta(hours=hours)
        return self._shared(("challenger", plot_type, hours), 30.0, running_comparison, plot_type, since)

    def thresholds_of(self, model_id: int, plot_type_id: int) -> list[ThresholdInfo]:
        return self._read(q.thresholds_of, model_id, plot_type_id)

    def threshold_changes(self, model_id: int) -> list[tuple[datetime, str, Any, float, str]]:
        return self._read(q.threshold_changes, model_id)

    def training_set_counts(self, training_set_id: int) -> dict[str, int]:
        return self._read(q.training_set_counts, training_set_id)

    def reports(self, plot_type_id: int | None = None) -> list[ReportInfo]:
        return self._read(q.reports, plot_type_id)

    def disagreements(self, report_id: int, *, limit: int = 24, offset: int = 0, split: str | None = None
                      ) -> tuple[list[Disagreement], int]:
        return self._read(q.disagreements, report_id, limit=limit, offset=offset, split=split)

    def recorded_predictions(self, info: ModelInfo) -> Any:
        """The validation predictions the fit recorded (models cache or MLflow artifact), or None."""

        def load() -> Any:
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
            return predictions

        return SHARED.get(("predictions", self.db.url, info.id), 300.0, load)

    def confusion(self, info: ModelInfo) -> Confusion:
        """The enhanced confusion matrix: from the validation predictions the fit recorded (models cache or
        MLflow artifact), else from what the database holds (`queries.confusion`)."""
        plot_type = self.plot_type(info.plot_type_id)
        names = [lab.name for lab in plot_type.labels] if plot_type else []
        predictions = self.recorded_predictions(info)
        if predictions is not None:
            validation = predictions.split == "validation"
            recorded = confusion_from_predictions(predictions.label_names, predictions.true_index[validation],
                                                  predictions.weights[validation])
            if recorded.total:
                return recorded
        return self._read(q.confusion, info, names)

    def validation_predictions(self, info: ModelInfo) -> tuple[list[str], list[int], list[list[float]]]:
        """(label names, true label index, weights) of the version's validation images: recorded by the fit,
        else its training report's validation items; empty when neither exists."""
        predictions = self.recorded_predictions(info)
        if predictions is not None:
            validation = predictions.split == "validation"
            return (list(predictions.label_names), [int(i) for i in predictions.true_index[validation]],
                    predictions.weights[validation].tolist())
        plot_type = self.plot_type(info.plot_type_id)
        ids = {lab.id: lab.name for lab in plot_type.labels} if plot_type else {}
        names = list(info.label_names or ids.values())
        true, weights = [], []
        for label_id, row in self._read(q.validation_weights, info.id):
            if ids.get(label_id) in names:
                true.append(names.index(ids[label_id]))
                weights.append([float(row.get(name, 0.0) or 0.0) for name in names])
        return names, true, weights

    def f1_at_threshold(self, info: ModelInfo, label: str, threshold: float) -> float | None:
        """A label's F1 on the version's validation images at `threshold` (after a hand-set threshold the
        stored F1 is gone: it described the threshold training chose)."""
        names, true, weights = self.validation_predictions(info)
        return f1_at(names, true, weights, label, threshold) if true else None

    def training_curves(self, info: ModelInfo) -> dict[str, list[float]]:
        """Per-epoch loss and accuracy: from the model's metrics, else from its MLflow run."""
        return history_from_metrics(info.metrics) or self.mlflow_history(info.mlflow_run_id)

    def mlflow_available(self) -> bool:
        """False for an embedded SQLite MLflow store that does not exist (a page must not create one)."""
        uri = self.config.settings.mlflow_tracking_uri or ""
        if uri.startswith("sqlite:///"):
            return Path(uri.removeprefix("sqlite:///")).is_file()
        return True

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
