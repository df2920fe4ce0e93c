"""Long module: a backtest from its request to its report — validation, the per-run step, the comparison
with the active version, MLflow, the Labeler's disagreement queue and the warning at activation.

A backtest classifies every stored image of runs A–B of a plot type with a candidate model version, in
shadow (`hydra_assets/shadow.py`: never an alarm, a keep decision or a Run page change), and compares it
with the version that was active when it was requested: per run, alarms of each, how often they agree,
and where humans labeled images, Bad recall and false alarms of each.  The active version's side is its
live inference where it has one (what really happened), else a shadow classification of it.

The Dagster face runs `backtest_run` once per run-number partition (asset `backtest_inference`, a backfill
launched by `hydra model backtest` or, for the Library button, by the `backtest_requests` sensor); the
last partition to finish writes the report (`finish_if_complete`).  Everything is idempotent: a rerun
classifies nothing again and writes the same report.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from hydra_assets import catalog
from hydra_assets.catalog import CatalogError, guarded_write
from hydra_assets.db.models import Backtest, Image, Inference, Label, Model, PlotType, ShadowInference, utcnow
from hydra_assets.ingest.feeder import USABLE
from hydra_assets.rules import is_novel
from hydra_assets.shadow import ShadowCounts, classify_shadow, shadow_images, would_alarm

if TYPE_CHECKING:
    from hydra_assets.db.engine import HydraDB
    from hydra_assets.settings import HydraSettings

log = logging.getLogger(__name__)
PURPOSE = "backtest"
PERMISSION = "activate_models"  # who may activate may ask what a version would have done
DISAGREEMENTS_KEPT = 500  # disagreeing images listed in the stored report (the queue reads them all)
UNCONFIRMED = "unconfirmed"


# ---- request and validation --------------------------------------------------------------------------


def parse_runs(text: str) -> tuple[int, int]:
    """'A-B' (or one run 'A') as (first, last); a clear message otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:[-–]\s*(\d+))?\s*", text or "")
    if match is None:
        raise CatalogError(f"runs must be written A-B (e.g. 1200-1250), not {text!r}")
    first = int(match.group(1))
    last = int(match.group(2)) if match.group(2) else first
    if last < first:
        raise CatalogError(f"runs {first}-{last}: the first run must not be after the last")
    return first, last


def runs_with_images(session: Session, plot_type_id: int, first: int, last: int) -> list[int]:
    """Runs A–B that hold usable stored images of the plot type: the backfill's partitions."""
    return list(session.scalars(select(Image.run_number).distinct().where(
        Image.plot_type_id == plot_type_id, Image.run_number.between(first, last), Image.status.in_(USABLE))
        .order_by(Image.run_number)))


def count_images(session: Session, plot_type_id: int, first: int, last: int) -> int:
    return int(session.scalar(select(func.count(Image.id)).where(
        Image.plot_type_id == plot_type_id, Image.run_number.between(first, last),
        Image.status.in_(USABLE))) or 0)


def find_candidate(session: Session, plot_type: str, version: str) -> Model:
    """The version to backtest; a version of another plot type is named as such."""
    from hydra_assets.ml.registry import find_model

    plot = catalog.get_plot_type(session, plot_type)
    text = str(version).strip()
    if "/" in text:
        name, number = text.rsplit("/", 1)
        other = session.scalar(select(Model).where(Model.mlflow_name == name, Model.mlflow_version == number))
        if other is not None and other.plot_type_id != plot.id:
            owner = session.get(PlotType, other.plot_type_id)
            raise CatalogError(f"model {other.key} is a version of plot type {owner.name if owner else '?'}, "
                               f"not of {plot_type}: a backtest compares versions of one plot type")
    return find_model(session, plot_type, text)


def model_file_problem(config: HydraSettings, model: Model) -> str | None:
    """Why the version's model cannot be used (file missing, version deleted in MLflow), or None."""
    from pathlib import Path

    from hydra_assets.ml.active import LOCAL_PREFIX, model_file

    uri = model.model_uri or ""
    if model.mlflow_name.startswith(LOCAL_PREFIX) or not re.match(r"^[A-Za-z][A-Za-z0-9+.\-]+:/", uri) \
            or uri.startswith("file://"):
        path = model_file(config, model) if uri else Path("")
        return None if uri and path.is_file() else f"model {model.key}: its model file {uri or '(none)'} is missing"
    cached = Path(config.models_dir) / model.mlflow_name / str(model.mlflow_version)
    try:
        from hydra_assets.tracking import TrackingService

        TrackingService.from_settings(config).client.get_model_version(model.mlflow_name, model.mlflow_version)
    except Exception as error:  # MLflow raises RestException or MlflowException
        if cached.is_dir() and any(cached.rglob("*.keras")):
            log.info("model %s is not in MLflow (%s) but its file is cached", model.key, error)
            return None
        return (f"model {model.key} is no longer in the MLflow registry (deleted?) and its file is not cached: "
                f"{str(error).splitlines()[0] if str(error) else type(error).__name__}")
    return None


@dataclass(frozen=True)
class BacktestRequest:
    id: int
    plot_type: str
    candidate: str
    active: str | None
    first_run: int
    last_run: int
    runs: list[int]
    n_images: int


def request_backtest(
    db: HydraDB, config: HydraSettings, plot_type: str, version: str, runs: str | tuple[int, int], user: str,
) -> BacktestRequest:
    """Validate and record a backtest (status `requested`); any bad input raises `CatalogError` before
    anything is written: runs without images, a version of another plot type, a model that cannot be
    loaded (file missing, deleted in MLflow), the active version itself.  Needs `activate_models`."""
    from hydra_assets.ml.active import active_model_row

    first, last = parse_runs(runs) if isinstance(runs, str) else (int(runs[0]), int(runs[1]))
    if last < first:
        raise CatalogError(f"runs {first}-{last}: the first run must not be after the last")
    with db.read() as s:
        plot = catalog.get_plot_type(s, plot_type)
        candidate = find_candidate(s, plot_type, version)
        active = active_model_row(s, plot_type)
        n_images = count_images(s, plot.id, first, last)
        run_list = runs_with_images(s, plot.id, first, last)
        s.expunge(candidate)
        plot_type_id, candidate_id, active_id = plot.id, candidate.id, active.id if active else None
        active_key = active.key if active else None
    if active_id == candidate_id:
        raise CatalogError(f"{candidate.key} is the active model of {plot_type}: a backtest compares another "
                           "version with the active one")
    if n_images == 0:
        raise CatalogError(f"plot type {plot_type} has no stored images in runs {first}-{last}: nothing to backtest")
    problem = model_file_problem(config, candidate)
    if problem:
        raise CatalogError(problem)

    def work(session: Session) -> int:
        row = Backtest(plot_type_id=plot_type_id, candidate_model_id=candidate_id, active_model_id=active_id,
                       first_run=first, last_run=last, status="requested", requested_by=user, n_images=n_images,
                       message=f"requested: {n_images} images in {len(run_list)} runs")
        session.add(row)
        session.flush()
        return row.id

    backtest_id = guarded_write(db, user, PERMISSION, plot_type_id, f"backtest model {candidate.key}", work,
                                detail=f"runs {first}-{last}")
    return BacktestRequest(backtest_id, plot_type, candidate.key, active_key, first, last, run_list, n_images)


def claim(db: HydraDB, backtest_id: int, *, backfill_id: str, how: str) -> bool:
    """requested -> running, once: whoever claims it (the CLI, the sensor) launches it."""

    def work(session: Session) -> bool:
        done = session.execute(update(Backtest).where(Backtest.id == backtest_id, Backtest.status == "requested")
                               .values(status="running", dagster_backfill_id=backfill_id,
                                       message=f"running: {how}"))
        return bool(done.rowcount)

    return db.write(work, what="claim backtest")


def set_backfill_id(db: HydraDB, backtest_id: int, backfill_id: str, how: str) -> None:
    def work(session: Session) -> None:
        row = session.get(Backtest, backtest_id)
        if row is not None:
            row.dagster_backfill_id, row.message = backfill_id, f"running: {how}"

    db.write(work, what="backtest backfill id")


def fail(db: HydraDB, backtest_id: int, message: str) -> None:
    def work(session: Session) -> None:
        row = session.get(Backtest, backtest_id)
        if row is not None and row.status != "done":
            row.status, row.message, row.finished_at = "failed", message[:4000], utcnow()

    db.write(work, what="backtest failed")


def requested_backtests(session: Session) -> list[tuple[int, list[int]]]:
    """Backtests waiting to be launched (the Library's button), with their runs."""
    out = []
    for row in session.scalars(select(Backtest).where(Backtest.status == "requested").order_by(Backtest.id)):
        out.append((row.id, runs_with_images(session, row.plot_type_id, row.first_run, row.last_run)))
    return out


# ---- one run (partition) -----------------------------------------------------------------------------


def _live_active(session: Session, image_ids: list[int], active_key: str) -> set[int]:
    """Images with a classified live inference of the active version (its side needs no shadow row)."""
    found: set[int] = set()
    for start in range(0, len(image_ids), 1000):
        found |= set(session.scalars(select(Inference.image_id).where(
            Inference.image_id.in_(image_ids[start : start + 1000]), Inference.model_key == active_key,
            Inference.status == "classified")))
    return found


def backtest_run(db: HydraDB, config: HydraSettings, backtest_id: int, run: int, *,
                 dagster_run_id: str = "") -> dict[str, ShadowCounts]:
    """Classify run `run`'s images of the backtest: the candidate in shadow, and the active version where it
    has no live inference; then write the report if every run is done.  Idempotent; a run outside the
    backtest's range does nothing ({})."""
    with db.read() as s:
        backtest = s.get(Backtest, backtest_id)
        if backtest is None:
            raise CatalogError(f"no backtest {backtest_id}")
        if not backtest.first_run <= run <= backtest.last_run:
            return {}  # a Dagster run over a range of partitions may hold other run numbers: not ours
        candidate = s.get(Model, backtest.candidate_model_id)
        active = s.get(Model, backtest.active_model_id) if backtest.active_model_id else None
        images = shadow_images(s, backtest.plot_type_id, [run])
        live = _live_active(s, [i.id for i in images], active.key) if active else set()
        for row in (candidate, active):
            if row is not None:
                s.expunge(row)
    out = {}
    if active is not None:  # first: the report waits for the candidate's rows only (runs finish in any order)
        out["active"] = classify_shadow(db, config, active, [i for i in images if i.id not in live], PURPOSE,
                                        backtest_id, dagster_run_id)
    out["candidate"] = classify_shadow(db, config, candidate, images, PURPOSE, backtest_id, dagster_run_id)
    finish_if_complete(db, config, backtest_id)
    return out


# ---- progress and report -----------------------------------------------------------------------------


def progress(session: Session, backtest: Backtest) -> tuple[int, int]:
    """(images the candidate has classified or failed on, images of the backtest)."""
    candidate = session.get(Model, backtest.candidate_model_id)
    candidate_key = candidate.key if candidate is not None else ""
    done = session.scalar(select(func.count(ShadowInference.id)).join(Image, Image.id == ShadowInference.image_id)
                          .where(ShadowInference.model_key == candidate_key, ShadowInference.purpose == PURPOSE,
                                 ShadowInference.plot_type_id == backtest.plot_type_id,
                                 ShadowInference.run_number.between(backtest.first_run, backtest.last_run),
                                 Image.status.in_(USABLE)))
    return int(done or 0), count_images(session, backtest.plot_type_id, backtest.first_run, backtest.last_run)


@dataclass
class _Side:
    """One version's judgement of one image."""

    decided: str  # confirmed top label, "unconfirmed" or "error"
    alarm: bool


def _sides(session: Session, backtest: Backtest, image_ids: list[int], model: Model | None, *,
           live: bool, novel_alarm: bool, names: dict[int, str]) -> dict[int, _Side]:
    if model is None:
        return {}
    out: dict[int, _Side] = {}
    for start in range(0, len(image_ids), 1000):
        part = image_ids[start : start + 1000]
        shadow = session.execute(select(ShadowInference.image_id, ShadowInference.status,
                                        ShadowInference.top_label_id, ShadowInference.confirmed,
                                        ShadowInference.would_alarm)
                                 .where(ShadowInference.image_id.in_(part), ShadowInference.model_key == model.key,
                                        ShadowInference.purpose == PURPOSE))
        for image_id, status, top, confirmed, alarm in shadow:
            out[image_id] = _Side(_decided(status, top, confirmed, names), bool(alarm))
        if live:
            rows = session.execute(select(Inference.image_id, Inference.status, Inference.top_label_id,
                                          Inference.confirmed, Inference.is_bad, Inference.novelty,
                                          Inference.novelty_limit)
                                   .where(Inference.image_id.in_(part), Inference.model_key == model.key,
                                          Inference.status == "classified"))
            for image_id, status, top, confirmed, is_bad, novelty, limit in rows:
                alarm = would_alarm(status=status, confirmed=confirmed, is_bad=is_bad,
                                    novel=is_novel(novelty, limit), novel_alarm=novel_alarm)
                out[image_id] = _Side(_decided(status, top, confirmed, names), alarm)  # live wins
    return out


def _decided(status: str, top: int | None, confirmed: bool, names: dict[int, str]) -> str:
    if status != "classified":
        return "error"
    return names.get(top, "?") if confirmed and top is not None else UNCONFIRMED


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts of one run (or all): alarms of each side, agreement, and against human labels."""
    n = len(rows)
    both = [r for r in rows if r["active"] is not None and r["candidate"] is not None]
    agree = sum(r["active"] == r["candidate"] and r["active_alarm"] == r["candidate_alarm"] for r in both)
    labeled = [r for r in rows if r["human"] is not None]
    bad = [r for r in labeled if r["human_bad"]]
    good = [r for r in labeled if not r["human_bad"]]
    out: dict[str, Any] = {
        "images": n,
        "candidate_classified": sum(r["candidate"] not in (None, "error") for r in rows),
        "active_classified": sum(r["active"] not in (None, "error") for r in rows),
        "errors": sum(r["candidate"] == "error" for r in rows),
        "alarms_active": sum(r["active_alarm"] for r in rows),
        "alarms_candidate": sum(r["candidate_alarm"] for r in rows),
        "compared": len(both),
        "agreement": _share(agree, len(both)),
        "disagreements": len(both) - agree,
        "labeled": len(labeled),
        "labeled_bad": len(bad),
    }
    for side in ("active", "candidate"):
        out[f"bad_recall_{side}"] = _share(sum(r[f"{side}_alarm"] for r in bad), len(bad))
        out[f"false_alarms_{side}"] = sum(r[f"{side}_alarm"] for r in good)
    return out


def image_rows(session: Session, backtest: Backtest) -> list[dict[str, Any]]:
    """Every image of the backtest with both versions' judgements and its human label (None: not yet)."""
    plot = session.get(PlotType, backtest.plot_type_id)
    labels = {lab.id: lab for lab in session.scalars(select(Label).where(Label.plot_type_id == plot.id))}
    names = {lid: lab.name for lid, lab in labels.items()}
    candidate = session.get(Model, backtest.candidate_model_id)
    active = session.get(Model, backtest.active_model_id) if backtest.active_model_id else None
    images = session.execute(select(Image.id, Image.run_number, Image.chunk, Image.label_id).where(
        Image.plot_type_id == plot.id, Image.run_number.between(backtest.first_run, backtest.last_run),
        Image.status.in_(USABLE)).order_by(Image.run_number, Image.chunk, Image.id)).all()
    ids = [i.id for i in images]
    novel_alarm = bool(plot.novel_alarm)
    cand = _sides(session, backtest, ids, candidate, live=False, novel_alarm=novel_alarm, names=names)
    act = _sides(session, backtest, ids, active, live=True, novel_alarm=novel_alarm, names=names)
    rows = []
    for image_id, run, chunk, label_id in images:
        c, a = cand.get(image_id), act.get(image_id)
        human = labels.get(label_id)
        rows.append({"image_id": image_id, "run": run, "chunk": chunk,
                     "candidate": c.decided if c else None, "candidate_alarm": bool(c and c.alarm),
                     "active": a.decided if a else None, "active_alarm": bool(a and a.alarm),
                     "human": human.name if human else None, "human_bad": bool(human and human.is_bad)})
    return rows


def _disagrees(row: dict[str, Any]) -> bool:
    return (row["active"] is not None and row["candidate"] is not None
            and (row["active"] != row["candidate"] or row["active_alarm"] != row["candidate_alarm"]))


def compute_report(session: Session, backtest: Backtest) -> dict[str, Any]:
    """The comparison, from stored rows only: per run, totals, and the images where the versions disagree."""
    rows = image_rows(session, backtest)
    candidate = session.get(Model, backtest.candidate_model_id)
    active = session.get(Model, backtest.active_model_id) if backtest.active_model_id else None
    plot = session.get(PlotType, backtest.plot_type_id)
    by_run: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        by_run.setdefault(row["run"], []).append(row)
    disagreeing = sorted((r for r in rows if _disagrees(r)),
                         key=lambda r: (r["active_alarm"] == r["candidate_alarm"], r["run"], r["chunk"]))
    return {
        "backtest_id": backtest.id,
        "plot_type": plot.name,
        "candidate": candidate.key,
        "active": active.key if active else None,
        "runs": f"{backtest.first_run}-{backtest.last_run}",
        "per_run": [{"run": run, **_stats(part)} for run, part in sorted(by_run.items())],
        "totals": _stats(rows),
        "disagreements": [{k: r[k] for k in ("image_id", "run", "chunk", "active", "candidate", "active_alarm",
                                               "candidate_alarm", "human")} for r in disagreeing[:DISAGREEMENTS_KEPT]],
        "errors": dict(Counter(e for (e,) in session.execute(
            select(ShadowInference.error).where(ShadowInference.model_key == candidate.key,
                                                ShadowInference.purpose == PURPOSE,
                                                ShadowInference.plot_type_id == plot.id,
                                                ShadowInference.status == "error",
                                                ShadowInference.run_number.between(backtest.first_run,
                                                                                   backtest.last_run)))).most_common(5)),
    }


def disagreeing_images(session: Session, backtest_id: int) -> list[int]:
    """Image ids where the candidate and the active version disagree (alarm first): the Labeler's queue."""
    backtest = session.get(Backtest, backtest_id)
    if backtest is None:
        return []
    rows = [r for r in image_rows(session, backtest) if _disagrees(r)]
    rows.sort(key=lambda r: (r["active_alarm"] == r["candidate_alarm"], r["run"], r["chunk"], r["image_id"]))
    return [r["image_id"] for r in rows]


def finish_if_complete(db: HydraDB, config: HydraSettings, backtest_id: int) -> bool:
    """Write the report once every image has its candidate row; True when this call wrote it (once)."""
    with db.read() as s:
        backtest = s.get(Backtest, backtest_id)
        if backtest is None or backtest.status == "done":
            return False
        done, total = progress(s, backtest)
        if done < total:
            return False
        report = compute_report(s, backtest)

    def claim_done(session: Session) -> bool:
        result = session.execute(update(Backtest).where(Backtest.id == backtest_id, Backtest.status != "done")
                                 .values(status="done", report=report, finished_at=utcnow(),
                                         message=f"done: {total} images"))
        return bool(result.rowcount)

    if not db.write(claim_done, what="backtest report"):
        return False  # another partition wrote it
    try:
        run_id = log_to_mlflow(config, report)
    except Exception as error:  # MLflow down: the report stands in the database
        log.warning("backtest %s: report not logged to MLflow: %s", backtest_id, error)
        run_id, note = "", f"done: {total} images (not logged to MLflow: {str(error).splitlines()[0]})"
    else:
        note = f"done: {total} images"

    def store(session: Session) -> None:
        row = session.get(Backtest, backtest_id)
        row.report, row.mlflow_run_id, row.message = report, run_id, note

    db.write(store, what="backtest report")
    return True


def log_to_mlflow(config: HydraSettings, report: dict[str, Any]) -> str:
    """A run in the training experiment, tagged with the plot type and nested under the candidate's training
    run when it has one: totals as metrics, the report as `backtest.json`."""
    import mlflow

    from hydra_assets.tracking import TrackingService

    metrics = {k: float(v) for k, v in report["totals"].items() if isinstance(v, int | float) and v is not None}
    tags = {"hydra.plot_type": report["plot_type"], "hydra.step": "backtest",
            "hydra.backtest_id": report["backtest_id"], "hydra.model": report["candidate"],
            "hydra.active_model": report["active"] or ""}
    tracking = TrackingService.from_settings(config)
    with tracking.start_run(run_name=f"{report['plot_type']} backtest {report['candidate']} runs {report['runs']}",
                            tags=tags) as run:
        mlflow.log_params({"candidate": report["candidate"], "active": report["active"] or "none",
                           "runs": report["runs"]})
        mlflow.log_metrics(metrics)
        mlflow.log_text(json.dumps(report, indent=1, default=str), "backtest.json")
        return str(run.info.run_id)


# ---- reading backtests (CLI, Library, activation) ----------------------------------------------------


def latest_backtest(session: Session, model_id: int) -> Backtest | None:
    return session.scalar(select(Backtest).where(Backtest.candidate_model_id == model_id)
                          .order_by(Backtest.requested_at.desc(), Backtest.id.desc()).limit(1))


def activation_notes(session: Session, model: Model) -> list[str]:
    """What activation says about the version's latest backtest: its summary, or a warning (none yet; more
    false alarms on labeled images than the active version; compared with another active version)."""
    backtest = latest_backtest(session, model.id)
    if backtest is None:
        return [f"warning: {model.key} has no backtest; `hydra model backtest` shows what it would have done "
                "on stored runs before it alarms on live ones"]
    if backtest.status != "done":
        return [f"warning: the backtest of {model.key} (runs {backtest.first_run}-{backtest.last_run}) is "
                f"{backtest.status}: {backtest.message}"]
    totals = (backtest.report or {}).get("totals", {})
    notes = [f"backtest {backtest.id} on runs {backtest.first_run}-{backtest.last_run}: alarms "
             f"{totals.get('alarms_active')} (active) vs {totals.get('alarms_candidate')} (candidate), agreement "
             f"{totals.get('agreement')}, false alarms on labeled images {totals.get('false_alarms_active')} vs "
             f"{totals.get('false_alarms_candidate')}, Bad recall {totals.get('bad_recall_active')} vs "
             f"{totals.get('bad_recall_candidate')}"]
    if (totals.get("false_alarms_candidate") or 0) > (totals.get("false_alarms_active") or 0):
        notes.append(f"warning: {model.key} raised more false alarms on labeled images than the active version "
                     f"({totals.get('false_alarms_candidate')} vs {totals.get('false_alarms_active')})")
    current = session.scalar(select(Model.id).where(Model.plot_type_id == model.plot_type_id,
                                                    Model.active.is_(True)))
    if current is not None and current != backtest.active_model_id and current != model.id:
        notes.append("warning: the backtest compared with a version that is no longer the active one")
    return notes


def describe_backtest(session: Session, backtest: Backtest) -> dict[str, Any]:
    """A backtest as the CLI and the Library show it (report included when done)."""
    done, total = progress(session, backtest)
    candidate = session.get(Model, backtest.candidate_model_id)
    active = session.get(Model, backtest.active_model_id) if backtest.active_model_id else None
    return {"id": backtest.id, "candidate": candidate.key if candidate else None,
            "active": active.key if active else None, "runs": f"{backtest.first_run}-{backtest.last_run}",
            "status": backtest.status, "message": backtest.message, "progress": [done, total],
            "requested_by": backtest.requested_by, "requested_at": backtest.requested_at,
            "finished_at": backtest.finished_at, "mlflow_run_id": backtest.mlflow_run_id or None,
            "dagster_backfill_id": backtest.dagster_backfill_id or None, "report": backtest.report or {}}


def labeler_link(plot_type: str, backtest_id: int) -> str:
    """The Labeler opened on the images where the two versions disagree."""
    from urllib.parse import urlencode

    return "/labeler?" + urlencode({"plot_type": plot_type, "backtest": backtest_id})


def _num(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def report_lines(report: dict[str, Any]) -> list[str]:
    """The report as text: one line per run and the totals (active / candidate in each pair)."""
    if not report:
        return ["no report yet"]
    head = (f"{'run':>10} {'images':>7} {'alarms a/c':>11} {'agree':>6} {'labeled':>7} "
            f"{'Bad recall a/c':>15} {'false alarms a/c':>17}")
    lines = [f"{report['plot_type']}: candidate {report['candidate']} vs active {report['active'] or '(none)'}, "
             f"runs {report['runs']}", head]
    for name, row in [*((str(r["run"]), r) for r in report["per_run"]), ("all", report["totals"])]:
        lines.append(f"{name:>10} {row['images']:>7} {row['alarms_active']:>5}/{row['alarms_candidate']:<5} "
                     f"{_num(row['agreement']):>6} {row['labeled']:>7} "
                     f"{_num(row['bad_recall_active']):>7}/{_num(row['bad_recall_candidate']):<7} "
                     f"{row['false_alarms_active']:>8}/{row['false_alarms_candidate']:<8}")
    total = report["totals"]
    lines.append(f"{total['disagreements']} image(s) where they disagree: "
                 f"{labeler_link(report['plot_type'], report['backtest_id'])}")
    for error, n in (report.get("errors") or {}).items():
        lines.append(f"{n} image(s) not classified: {error}")
    return lines


__all__ = [
    "BacktestRequest", "activation_notes", "backtest_run", "claim", "compute_report", "describe_backtest",
    "disagreeing_images", "fail", "labeler_link", "report_lines", "finish_if_complete", "latest_backtest", "parse_runs", "progress",
    "request_backtest", "requested_backtests", "runs_with_images",
]
