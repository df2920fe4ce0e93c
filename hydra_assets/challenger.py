"""The challenger: one model version per plot type that classifies every live chunk in shadow beside the active one.

An expert names it (`set_challenger`: MLflow alias ``challenger`` on ``hydra-<plot type>``), watches the
running comparison with the active version run by run (`running_comparison`), and promotes it with one
audited action (`promote`: the registry's activation, so thresholds, the ``active`` alias and the pipeline
agree; the ``challenger`` alias is removed in the same transaction).

Its classifications are shadow inferences (`hydra_assets/shadow.py`): they never alarm, never change a keep
decision and never reach the Run page.  The live step (`challenger_chunk`, the `challenger_inference` asset)
runs after Predict in the chunk job: a plot type without a challenger costs one query, and a challenger that
cannot classify (its file gone, a broken model) leaves `error` rows with the reason, never a failed chunk.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from hydra_assets import catalog
from hydra_assets.catalog import CatalogError
from hydra_assets.db.engine import HydraDB
from hydra_assets.db.models import Image, Inference, Label, Model, PlotType, ShadowInference, utcnow
from hydra_assets.ingest.health import write_resolving_conflicts
from hydra_assets.ingest.predict import ScopeImage, images_in_scope
from hydra_assets.ml.registry import CHALLENGER_ALIAS, activate_model, find_model, remove_alias
from hydra_assets.rules import is_novel
from hydra_assets.settings import HydraSettings
from hydra_assets.shadow import Scorer, ShadowCounts, classify_shadow, local_scorer, would_alarm
from hydra_assets.tracking import TrackingService, registered_model_name

log = logging.getLogger(__name__)

PURPOSE = "challenger"
PERMISSION = "activate_models"  # naming, clearing and promoting a challenger: as activating a version


# ---- naming and clearing the challenger -----------------------------------------------------------


def challenger_of(session: Session, plot_type_id: int) -> Model | None:
    """The plot type's challenger version, or None."""
    return session.scalar(select(Model).where(Model.plot_type_id == plot_type_id, Model.challenger.is_(True))
                          .order_by(Model.id.desc()).limit(1))


def find_version(session: Session, plot_type: str, version: str | int) -> Model:
    """A version of `plot_type` (``3``, ``hydra-T/3``, ``local-T/1``); one of another plot type is named as such."""
    plot = catalog.get_plot_type(session, plot_type)
    text = str(version).strip()
    if "/" in text:
        name, number = text.rsplit("/", 1)
        other = session.scalar(select(Model).where(Model.mlflow_name == name, Model.mlflow_version == number))
        if other is not None and other.plot_type_id != plot.id:
            owner = session.get(PlotType, other.plot_type_id)
            raise CatalogError(f"model {other.key} is a version of plot type {owner.name if owner else '?'}, not of "
                               f"{plot_type}: a challenger competes with the active version of its own plot type")
    return find_model(session, plot_type, text)


def model_problem(config: HydraSettings, model: Model, *, mlflow: bool = True) -> str | None:
    """Why this version could not classify (its file missing, deleted from the MLflow registry), or None.

    A version whose file is already cached locally is usable even when MLflow no longer lists it.  With
    `mlflow` false (a page without MLflow) registry versions are not looked up.
    """
    uri = model.model_uri or ""
    if not uri:
        return f"model {model.key} has no model file recorded"
    if uri.startswith("file://") or not re.match(r"^[A-Za-z][A-Za-z0-9+.\-]+:/", uri):
        path = Path(uri.removeprefix("file://")).expanduser()
        return None if path.is_file() else f"model {model.key}: its model file {uri} is missing"
    cached = Path(config.models_dir) / model.mlflow_name / str(model.mlflow_version)
    if cached.is_dir() and any(cached.rglob("*.keras")):
        return None
    if not mlflow:
        return None
    try:
        TrackingService.from_settings(config).client.get_model_version(model.mlflow_name, model.mlflow_version)
    except Exception as error:  # MLflow raises RestException or MlflowException
        first = (str(error).splitlines() or [type(error).__name__])[0][:300]
        return f"model {model.key} is not in the MLflow registry (deleted?): {first}"
    return None


def _sync_challenger_alias(config: HydraSettings | None, plot_type: str, model: Model | None) -> None:
    """Point the MLflow alias `challenger` at `model` (remove it for None or a version outside MLflow)."""
    if config is None:
        return
    name = registered_model_name(plot_type)
    if model is not None and model.mlflow_name == name:
        TrackingService.from_settings(config).client.set_registered_model_alias(name, CHALLENGER_ALIAS,
                                                                                model.mlflow_version)
        return
    remove_alias(config, plot_type, CHALLENGER_ALIAS)


def set_challenger(db: HydraDB, config: HydraSettings, plot_type: str, version: str | int, user: str, *,
                   sync_alias: bool = True) -> Model:
    """Make `version` the plot type's challenger (the previous one, if any, steps down); needs `activate_models`.

    Refused, with nothing written: an unknown version, a version of another plot type, one that cannot be
    loaded (file missing, deleted in MLflow) and the active version itself.
    """
    with db.read() as s:
        plot_type_id = catalog.get_plot_type(s, plot_type).id
        model = find_version(s, plot_type, version)
        key, model_id, active = model.key, model.id, model.active
        problem = model_problem(config, model, mlflow=sync_alias)
    if active:
        raise CatalogError(f"{key} is the active version of {plot_type}: a challenger runs beside the active "
                           "version, so name another one")
    if problem:
        raise CatalogError(f"{problem}; it cannot be the challenger of {plot_type}")

    def work(session: Session) -> Model:
        row = session.get(Model, model_id)
        if row is None or row.active:  # deleted or activated meanwhile
            raise CatalogError(f"{key} is no longer a version of {plot_type} that can be the challenger")
        for other in session.scalars(select(Model).where(Model.plot_type_id == plot_type_id,
                                                         Model.challenger.is_(True), Model.id != model_id)):
            other.challenger = False
        row.challenger = True
        session.flush()
        # Inside the transaction: if MLflow refuses, the database change rolls back too.
        _sync_challenger_alias(config if sync_alias else None, plot_type, row)
        return row

    return catalog.guarded_write(db, user, PERMISSION, plot_type_id, f"set challenger {plot_type}", work,
                                 detail=key)


def clear_challenger(db: HydraDB, config: HydraSettings, plot_type: str, user: str, *,
                     sync_alias: bool = True) -> Model | None:
    """The plot type has no challenger any more (its shadow rows stay); returns the one that stepped down."""
    with db.read() as s:
        plot_type_id = catalog.get_plot_type(s, plot_type).id

    def work(session: Session) -> Model | None:
        previous = challenger_of(session, plot_type_id)
        for row in session.scalars(select(Model).where(Model.plot_type_id == plot_type_id,
                                                       Model.challenger.is_(True))):
            row.challenger = False
        session.flush()
        _sync_challenger_alias(config if sync_alias else None, plot_type, None)
        return previous

    return catalog.guarded_write(db, user, PERMISSION, plot_type_id, f"clear challenger of {plot_type}", work)


def promote(db: HydraDB, config: HydraSettings, plot_type: str, user: str, *, sync_alias: bool = True) -> Model:
    """The challenger becomes the active version in one audited action (needs `activate_models`).

    Goes through `registry.activate_model`, so the previous version steps down and the MLflow alias `active`
    moves exactly as for any activation; in the same transaction the version stops being the challenger and
    the `challenger` alias is removed.  Refused with nothing changed: no challenger, a challenger that can
    no longer be loaded, or a challenger changed by someone else meanwhile.
    """
    with db.read() as s:
        plot_type_id = catalog.get_plot_type(s, plot_type).id
        challenger = challenger_of(s, plot_type_id)
        if challenger is None:
            raise CatalogError(f"plot type {plot_type} has no challenger to promote: name one first "
                               f"(hydra model challenger {plot_type} VERSION)")
        key, model_id = challenger.key, challenger.id
        problem = model_problem(config, challenger, mlflow=sync_alias)
    if problem:
        raise CatalogError(f"{problem}: promoting it would leave {plot_type} without a working model; nothing "
                           "was changed")

    def step_down(session: Session, model: Model) -> None:
        if model.id != model_id or not model.challenger:
            raise CatalogError(f"{key} is no longer the challenger of {plot_type}: nothing was changed")
        model.challenger = False
        session.flush()
        _sync_challenger_alias(config if sync_alias else None, plot_type, None)

    return activate_model(db, config if sync_alias else None, plot_type, key, user,
                          reason=f"challenger {key} promoted", action=f"promote challenger {plot_type}", also=step_down)


# ---- the live step ---------------------------------------------------------------------------------


@dataclass
class ChallengerPass:
    """What the live step did for one chunk: per plot type with a challenger, its shadow counts."""

    counts: dict[str, ShadowCounts] = field(default_factory=dict)  # plot type -> counts
    challengers: dict[str, str] = field(default_factory=dict)  # plot type -> challenger key
    errors: dict[str, str] = field(default_factory=dict)  # plot type -> why its challenger could not classify
    duration_ms: float = 0.0

    @property
    def classified(self) -> int:
        return sum(c.classified for c in self.counts.values())


def challenger_chunk(db: HydraDB, config: HydraSettings, run: int, digests: Collection[str] | None, *,
                     dagster_run_id: str = "",
                     scorer: Callable[[HydraDB, HydraSettings, int], Scorer] = local_scorer) -> ChallengerPass:
    """Classify the chunk's images (those Predict classified) with each of their plot types' challengers.

    One query when no plot type has a challenger.  Never raises for a challenger's sake: a model that fails
    to load or to classify leaves `error` rows naming why (retried by the next pass over the same images).
    `scorer` runs the forward pass (the asset passes the warm predictor service's, as Predict uses it).
    """
    started = time.perf_counter()
    result = ChallengerPass()
    with db.read() as s:
        newest: dict[int, Model] = {}  # one per plot type, as `challenger_of` says (two set at once: the later)
        for row in s.scalars(select(Model).where(Model.challenger.is_(True), Model.active.is_(False))
                             .order_by(Model.id)):
            newest[row.plot_type_id] = row
        models = list(newest.values())
        if not models:
            return result
        plot_type_ids = {m.plot_type_id for m in models}
        images = [i for i in images_in_scope(s, run, digests) if i.plot_type_id in plot_type_ids]
        for model in models:
            s.expunge(model)
    for model in models:
        todo = [i for i in images if i.plot_type_id == model.plot_type_id]
        if not todo:
            continue
        name = todo[0].plot_type
        result.challengers[name] = model.key
        try:
            counts = classify_shadow(db, config, model, todo, PURPOSE, dagster_run_id=dagster_run_id, scorer=scorer)
        except Exception as error:  # the live pipeline must never fail for the challenger's sake
            log.warning("challenger %s of %s failed on run %s: %s", model.key, name, run, error, exc_info=True)
            why = f"{type(error).__name__}: {error}"
            counts = ShadowCounts(images=len(todo), errors=_record_errors(db, model, todo, why, dagster_run_id),
                                  error=why)
        if counts.error:
            result.errors[name] = counts.error
        result.counts[name] = counts
    result.duration_ms = (time.perf_counter() - started) * 1000
    return result


def _record_errors(db: HydraDB, model: Model, images: list[ScopeImage], why: str, dagster_run_id: str) -> int:
    """An `error` row for each image that has no row of this challenger yet; returns how many were written."""
    key, model_id = model.key, model.id

    def work(session: Session) -> int:
        have = set(session.scalars(select(ShadowInference.image_id).where(
            ShadowInference.image_id.in_([i.id for i in images]), ShadowInference.model_key == key,
            ShadowInference.purpose == PURPOSE)))
        fresh = [i for i in images if i.id not in have]
        for image in fresh:
            session.add(ShadowInference(
                image_id=image.id, plot_type_id=image.plot_type_id, run_number=image.run, chunk=image.chunk,
                model_id=model_id, model_key=key, purpose=PURPOSE, status="error", error=why[:2000], weights={},
                classified_at=utcnow(), dagster_run_id=dagster_run_id))
        session.flush()
        return len(fresh)

    try:
        return write_resolving_conflicts(db, work, what="record challenger errors")
    except Exception:  # even the error rows could not be written: said in the log, the chunk goes on
        log.exception("could not record the challenger's errors for %s", key)
        return 0


# ---- the running comparison ------------------------------------------------------------------------


@dataclass(frozen=True)
class Judgement:
    """One version's classification of one image, as the comparison needs it."""

    decided: int | None  # the confirmed top label's id; None: unconfirmed
    bad: bool  # confirmed Bad
    alarm: bool  # would alarm (the Keeper's rule, model part)
    ms: float | None  # time per image of its forward pass


@dataclass(frozen=True)
class Pair:
    """An image the challenger classified, with the live classification (None: none yet) and its human label."""

    run: int
    challenger: Judgement | None  # None: the challenger failed on it (an error row)
    active: Judgement | None
    human_bad: bool | None  # None: not labeled


@dataclass(frozen=True)
class RunComparison:
    """Active vs challenger over some images (one run, or all): what each said and, where labeled, how right."""

    run: int | None
    images: int
    errors: int  # images the challenger could not classify
    compared: int  # classified by both
    alarms_active: int
    alarms_challenger: int
    bad_active: int
    bad_challenger: int
    agreement: float | None  # share of compared images with the same decision (label or unconfirmed) and alarm
    labeled: int
    labeled_bad: int
    bad_recall_active: float | None
    bad_recall_challenger: float | None
    false_alarms_active: int
    false_alarms_challenger: int
    ms_active: float | None  # mean time per image of the forward pass
    ms_challenger: float | None


@dataclass(frozen=True)
class ChallengerComparison:
    plot_type: str
    challenger: str | None  # its key; None: the plot type has no challenger and none was named
    current: bool  # the version is the plot type's challenger now
    active: str | None
    since: datetime | None
    runs: list[RunComparison]
    totals: RunComparison | None


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _mean(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(sum(known) / len(known), 3) if known else None


def summarize(pairs: list[Pair], run: int | None = None) -> RunComparison:
    """The comparison of these images (pure): alarms and Bad of each, agreement, recall and false alarms."""
    both = [(p.active, p.challenger) for p in pairs if p.active is not None and p.challenger is not None]
    agree = sum(a.decided == c.decided and a.alarm == c.alarm for a, c in both)
    labeled = [p for p in pairs if p.human_bad is not None]
    bad = [p for p in labeled if p.human_bad]
    good = [p for p in labeled if not p.human_bad]

    def alarmed(p: Pair, side: str) -> bool:
        judged = p.active if side == "active" else p.challenger
        return bool(judged and judged.alarm)

    return RunComparison(
        run=run,
        images=len(pairs),
        errors=sum(p.challenger is None for p in pairs),
        compared=len(both),
        alarms_active=sum(bool(p.active and p.active.alarm) for p in pairs),
        alarms_challenger=sum(bool(p.challenger and p.challenger.alarm) for p in pairs),
        bad_active=sum(bool(p.active and p.active.bad) for p in pairs),
        bad_challenger=sum(bool(p.challenger and p.challenger.bad) for p in pairs),
        agreement=_share(agree, len(both)),
        labeled=len(labeled),
        labeled_bad=len(bad),
        bad_recall_active=_share(sum(alarmed(p, "active") for p in bad), len(bad)),
        bad_recall_challenger=_share(sum(alarmed(p, "challenger") for p in bad), len(bad)),
        false_alarms_active=sum(alarmed(p, "active") for p in good),
        false_alarms_challenger=sum(alarmed(p, "challenger") for p in good),
        ms_active=_mean(a.ms for a, _ in both),
        ms_challenger=_mean(c.ms for _, c in both),
    )


def _pairs(session: Session, model: Model, plot: PlotType, since: datetime | None) -> list[Pair]:
    """The challenger's shadow rows (since `since`) paired with the same images' live classifications."""
    novel_alarm = bool(plot.novel_alarm)
    bad_labels = set(session.scalars(select(Label.id).where(Label.plot_type_id == plot.id, Label.is_bad.is_(True))))
    query = (select(ShadowInference.image_id, ShadowInference.run_number, ShadowInference.status,
                    ShadowInference.top_label_id, ShadowInference.confirmed, ShadowInference.is_bad,
                    ShadowInference.would_alarm, ShadowInference.predict_ms, Image.label_id)
             .join(Image, Image.id == ShadowInference.image_id)
             .where(ShadowInference.model_id == model.id, ShadowInference.purpose == PURPOSE))
    if since is not None:
        query = query.where(ShadowInference.classified_at >= since)
    shadow = session.execute(query.order_by(ShadowInference.run_number, ShadowInference.image_id)).all()
    live: dict[int, tuple[int, Judgement]] = {}  # image id -> (inference id, judgement): the newest live one
    ids = [row.image_id for row in shadow]
    for start in range(0, len(ids), 1000):
        rows = session.execute(
            select(Inference.image_id, Inference.id, Inference.top_label_id, Inference.confirmed, Inference.is_bad,
                   Inference.novelty, Inference.novelty_limit, Inference.predict_ms)
            .where(Inference.image_id.in_(ids[start : start + 1000]), Inference.status == "classified",
                   Inference.model_key != model.key))
        for image_id, inference_id, top, confirmed, is_bad, novelty, limit, ms in rows:
            if image_id in live and live[image_id][0] > inference_id:
                continue
            alarm = would_alarm(status="classified", confirmed=confirmed, is_bad=is_bad,
                                novel=is_novel(novelty, limit), novel_alarm=novel_alarm)
            live[image_id] = (inference_id, Judgement(top if confirmed else None, bool(confirmed and is_bad), alarm,
                                                      ms))
    pairs = []
    for row in shadow:
        mine = None if row.status != "classified" else Judgement(
            row.top_label_id if row.confirmed else None, bool(row.confirmed and row.is_bad), bool(row.would_alarm),
            row.predict_ms)
        active = live.get(row.image_id)
        pairs.append(Pair(row.run_number, mine, active[1] if active else None,
                          None if row.label_id is None else row.label_id in bad_labels))
    return pairs


def running_comparison(session: Session, plot_type: str, since: datetime | None = None,
                       version: str | None = None) -> ChallengerComparison:
    """Per run since `since`: the challenger (or `version`, e.g. one promoted since) against the live results."""
    from hydra_assets.ml.active import active_model_row

    plot = catalog.get_plot_type(session, plot_type)
    model = find_version(session, plot_type, version) if version else challenger_of(session, plot.id)
    active = active_model_row(session, plot_type)
    if model is None:
        return ChallengerComparison(plot.name, None, False, active.key if active else None, since, [], None)
    pairs = _pairs(session, model, plot, since)
    by_run: dict[int, list[Pair]] = {}
    for pair in pairs:
        by_run.setdefault(pair.run, []).append(pair)
    return ChallengerComparison(
        plot_type=plot.name, challenger=model.key, current=bool(model.challenger),
        active=active.key if active else None, since=since,
        runs=[summarize(part, run) for run, part in sorted(by_run.items())],
        totals=summarize(pairs) if pairs else None,
    )


__all__ = [
    "CHALLENGER_ALIAS", "ChallengerComparison", "ChallengerPass", "Pair", "RunComparison", "challenger_chunk",
    "challenger_of", "clear_challenger", "find_version", "model_problem", "promote", "running_comparison",
    "set_challenger", "summarize",
]
