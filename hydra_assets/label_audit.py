"""The label audit: which human labels a model version's out-of-fold predictions say are likely wrong, and
the expert's answer to each (docs/labeling-queues.md).

Out-of-fold weights: a training set split into cross-validation folds over runs already gives every labeled
image the weights of a model that did not see it (`ml/model_step._cross_validate`).  A training set with a
held-out split has such weights for its validation images only; there, a logistic regression on the
registered model's embedding (`ml/embedding.py`) is cross-validated over every image instead (scikit-learn
`cross_val_predict`, stratified 5 folds: a second or two, against minutes for refitting the network per
fold), so all images are judged by the same kind of model.  Training saves them beside the version
(``out_of_fold.npz``, logged to MLflow under ``label_audit/``) and writes the version's `LabelCheck` rows;
`hydra label audit T --recompute` writes them again from that file against the labels as they are now.

Resolving a check: `confirm` keeps the label, `fix` stores a new one through `labeling.apply_labels`
(history source "audit"); both are recorded on the check and in the audit log.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import case, delete, func, select
from sqlalchemy.orm import Session

from hydra_assets import catalog
from hydra_assets.catalog import CatalogError
from hydra_assets.db.models import Image, Label, LabelCheck, Model, User, utcnow
from hydra_assets.labeling import apply_labels
from hydra_assets.scores import label_audit

if TYPE_CHECKING:
    from hydra_assets.db.engine import HydraDB
    from hydra_assets.settings import HydraSettings
    from hydra_assets.tracking import TrackingService

log = logging.getLogger(__name__)
OUT_OF_FOLD_FILE = "out_of_fold.npz"
AUDIT_SOURCE = "audit"  # label history source of a fix
CONFIRMED, FIXED = "confirmed", "fixed"


@dataclass(frozen=True)
class AuditSummary:
    model_key: str
    checked: int  # labeled images judged
    issues: int  # likely mislabeled
    open_issues: int  # of those, not yet confirmed or fixed
    method: str  # where the out-of-fold weights came from

    @property
    def message(self) -> str:
        return (f"{self.model_key}: {self.checked} labeled image(s) checked ({self.method}), {self.issues} likely "
                f"mislabeled, {self.open_issues} waiting in the audit queue")


# ---- out-of-fold weights -------------------------------------------------------------------------------


def out_of_fold_weights(targets: np.ndarray, cross_validated: np.ndarray | None, features: np.ndarray | None,
                        n_labels: int, *, seed: int = 12345) -> tuple[np.ndarray, str] | None:
    """Weights per image from a model that did not see it, and how they were made; None when neither
    cross-validation weights nor an embedding exist, or too few images per label to cross-validate."""
    if cross_validated is not None:
        return np.asarray(cross_validated, dtype=np.float32), "cross-validation over runs"
    if features is None or len(targets) < label_audit.MIN_IMAGES:
        return None
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    present, counts = np.unique(targets, return_counts=True)
    folds = int(min(5, counts.min()))
    if len(present) < 2 or folds < 2:
        return None
    local = np.searchsorted(present, targets)
    probs = cross_val_predict(LogisticRegression(max_iter=1000), np.asarray(features, dtype=np.float64), local,
                              cv=StratifiedKFold(folds, shuffle=True, random_state=seed), method="predict_proba")
    weights = np.zeros((len(targets), n_labels), dtype=np.float32)
    weights[:, present] = probs
    return weights, "logistic regression on the embedding, 5-fold"


def save_out_of_fold(path: Path, image_ids: np.ndarray, weights: np.ndarray, method: str) -> None:
    np.savez_compressed(path, image_id=np.asarray(image_ids, dtype=np.int64), weights=weights, method=np.array(method))


def load_out_of_fold(config: HydraSettings, tracking: TrackingService | None, model: Model
                     ) -> tuple[np.ndarray, np.ndarray, str]:
    """(image ids, weights, method) saved by training: the cached file, else the version's MLflow artifact."""
    path = Path(config.models_dir) / model.mlflow_name / model.mlflow_version / OUT_OF_FOLD_FILE
    if not path.is_file():
        if not model.mlflow_run_id or tracking is None:
            raise CatalogError(f"model {model.key} has no out-of-fold predictions (not trained by Hydra); "
                               f"train a new version to audit its labels")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with tempfile.TemporaryDirectory(dir=path.parent) as staging:
                fetched = tracking.client.download_artifacts(model.mlflow_run_id,
                                                             f"label_audit/{OUT_OF_FOLD_FILE}", staging)
                Path(fetched).replace(path)
        except Exception as error:  # MLflow raises several kinds; the message says what to do
            raise CatalogError(f"model {model.key} has no out-of-fold predictions ({error}); it was trained "
                               f"before the label audit existed: train a new version to audit its labels") from error
    with np.load(path, allow_pickle=False) as data:
        return data["image_id"], data["weights"], str(data["method"])


# ---- checks --------------------------------------------------------------------------------------------


def record_checks(session: Session, model: Model, image_ids: np.ndarray, weights: np.ndarray, method: str
                  ) -> AuditSummary:
    """Judge the images' labels as they are now against the out-of-fold weights; replaces the version's open
    checks (answered ones stay).  An image an expert already confirmed with the same label is not asked again."""
    label_names = list(model.label_names or [])
    labels = {lab.id: lab.name for lab in session.scalars(select(Label).where(Label.plot_type_id == model.plot_type_id))}
    ids_by_name = {name: lid for lid, name in labels.items()}
    current = {}
    for part in _parts([int(i) for i in image_ids]):
        current.update(session.execute(select(Image.id, Image.label_id).where(
            Image.id.in_(part), Image.label_id.is_not(None))).all())
    index = {name: k for k, name in enumerate(label_names)}
    rows = [(k, int(image_id), index[labels[current[int(image_id)]]]) for k, image_id in enumerate(image_ids)
            if int(image_id) in current and labels.get(current[int(image_id)]) in index]
    answered = set(session.scalars(select(LabelCheck.image_id).where(LabelCheck.model_id == model.id,
                                                                     LabelCheck.resolved_at.is_not(None))))
    rows = [r for r in rows if r[1] not in answered]
    session.execute(delete(LabelCheck).where(LabelCheck.model_id == model.id, LabelCheck.resolved_at.is_(None)))
    if not rows:
        return AuditSummary(model.key, 0, 0, 0, method)
    at = np.array([r[0] for r in rows])
    checks = label_audit.audit(np.array([r[2] for r in rows]), np.asarray(weights)[at])
    confirmed_before = {}
    for part in _parts([r[1] for r in rows]):
        confirmed_before.update(session.execute(
            select(LabelCheck.image_id, LabelCheck.given_label_id).where(
                LabelCheck.plot_type_id == model.plot_type_id, LabelCheck.resolution == CONFIRMED,
                LabelCheck.image_id.in_(part))).all())
    now, issues, open_issues = utcnow(), 0, 0
    for check in checks:
        image_id = rows[check.position][1]
        given_id = current[image_id]
        kept = check.is_issue and confirmed_before.get(image_id) == given_id
        session.add(LabelCheck(
            model_id=model.id, plot_type_id=model.plot_type_id, image_id=image_id, given_label_id=given_id,
            suggested_label_id=ids_by_name.get(label_names[check.suggested]), self_confidence=check.self_confidence,
            is_issue=check.is_issue, rank=check.rank, created_at=now,
            resolved_at=now if kept else None, resolved_by="earlier confirmation" if kept else None,
            resolution=CONFIRMED if kept else None))
        issues += check.is_issue
        open_issues += check.is_issue and not kept
    session.flush()
    return AuditSummary(model.key, len(checks), issues, open_issues, method)


def _parts(ids: list[int], size: int = 10_000) -> list[list[int]]:
    """Id lists in parts (SQLite refuses more than 32,766 bound values in one statement)."""
    return [ids[k:k + size] for k in range(0, len(ids), size)]


def record_after_training(db: HydraDB, model_id: int, image_ids: np.ndarray, weights: np.ndarray, method: str,
                          logger: Any = log) -> AuditSummary | None:
    """Training's last step: the new version's label checks.  A set the audit cannot judge (too few images,
    one label) is said in the log and training still succeeds."""
    try:
        result = db.write(lambda s: record_checks(s, s.get(Model, model_id), image_ids, weights, method),
                          what="record label checks")
    except ValueError as refusal:
        logger.warning(f"label audit skipped: {refusal}")
        return None
    logger.info(f"label audit: {result.message}")
    return result


def audit_model(db: HydraDB, config: HydraSettings, tracking: TrackingService | None, plot_type: str, *,
                recompute: bool = False, version: str | None = None) -> AuditSummary:
    """The label checks of the plot type's active version (or `version`): computed when missing or when
    `recompute` is asked, else the stored ones summarised."""
    from hydra_assets.ml import registry

    with db.read() as s:
        plot = catalog.get_plot_type(s, plot_type)
        if version is not None:
            model = registry.find_model(s, plot_type, version)
        else:
            model = s.scalar(select(Model).where(Model.plot_type_id == plot.id, Model.active.is_(True)))
            if model is None:
                raise CatalogError(f"plot type {plot_type} has no active model version; name one with --version")
        s.expunge(model)
        stored = summary(s, model.id, model.key)
    if stored is not None and not recompute:
        return stored
    image_ids, weights, method = load_out_of_fold(config, tracking, model)
    return db.write(lambda s: record_checks(s, s.merge(model), image_ids, weights, method),
                    what="record label checks")


def summary(session: Session, model_id: int, model_key: str = "") -> AuditSummary | None:
    """The stored checks of a version, or None when it has none."""
    total, issues, open_issues = session.execute(select(
        func.count(LabelCheck.id), func.sum(case((LabelCheck.is_issue.is_(True), 1), else_=0)),
        func.sum(case((LabelCheck.is_issue.is_(True) & LabelCheck.resolved_at.is_(None), 1), else_=0)),
    ).where(LabelCheck.model_id == model_id)).one()
    if not total:
        return None
    return AuditSummary(model_key, int(total), int(issues or 0), int(open_issues or 0), "stored")


def audit_queue_model(session: Session, plot_type_id: int) -> Model | None:
    """The version whose checks the audit queue shows: the active one when it has checks, else the newest
    version that has them."""
    with_checks = select(LabelCheck.model_id).where(LabelCheck.plot_type_id == plot_type_id).distinct()
    active = session.scalar(select(Model).where(Model.plot_type_id == plot_type_id, Model.active.is_(True),
                                                Model.id.in_(with_checks)))
    return active or session.scalar(select(Model).where(Model.id.in_(with_checks)).order_by(Model.id.desc()).limit(1))


def open_checks(session: Session, plot_type_id: int, *, limit: int = 100) -> list[LabelCheck]:
    """The audit queue: likely mislabeled, not yet answered, whose label is still the one judged, most
    likely first."""
    model = audit_queue_model(session, plot_type_id)
    if model is None:
        return []
    return list(session.scalars(
        select(LabelCheck).join(Image, Image.id == LabelCheck.image_id)
        .where(LabelCheck.model_id == model.id, LabelCheck.is_issue.is_(True), LabelCheck.resolved_at.is_(None),
               Image.label_id == LabelCheck.given_label_id)
        .order_by(LabelCheck.rank, LabelCheck.id).limit(limit)))


def resolve(session: Session, check_id: int, action: str, *, user: str, label_id: int | None = None) -> LabelCheck:
    """Answer one check in the caller's (guarded) transaction: `confirm` keeps the label, `fix` stores
    `label_id` (history source "audit").  Every open check of the same image and given label is answered
    with it, so the image leaves the queue of every version."""
    check = session.get(LabelCheck, check_id)
    if check is None:
        raise CatalogError(f"no label check {check_id}")
    if check.resolved_at is not None:
        raise CatalogError(f"label check {check_id} was already answered ({check.resolution} by {check.resolved_by})")
    if action not in ("confirm", "fix"):
        raise CatalogError(f"unknown answer {action!r}: confirm or fix")
    image = session.get(Image, check.image_id)
    if image is None or image.label_id != check.given_label_id:
        raise CatalogError(f"image {check.image_id}'s label changed since the check; nothing written")
    if action == "fix":
        label = session.get(Label, label_id) if label_id is not None else None
        if label is None or label.plot_type_id != check.plot_type_id:
            raise CatalogError("fix needs a label of the image's plot type")
        if label.id == check.given_label_id:
            raise CatalogError("the new label is the label given: use confirm to keep it")
        user_id = session.scalar(select(User.id).where(User.name == user)) if user else None
        apply_labels(session, {image.id: label.id}, user_id=user_id, source=AUDIT_SOURCE)
    now = utcnow()
    same = session.scalars(select(LabelCheck).where(
        LabelCheck.image_id == check.image_id, LabelCheck.given_label_id == check.given_label_id,
        LabelCheck.resolved_at.is_(None)))
    for row in {check, *same}:
        row.resolved_at, row.resolved_by = now, user or "unknown"
        row.resolution = CONFIRMED if action == "confirm" else FIXED
    session.flush()
    return check


def resolve_guarded(db: HydraDB, user: str | None, check_id: int, action: str, label_id: int | None = None) -> str:
    """`resolve` for a user with `label` permission on the plot type; audited whether allowed or refused."""
    with db.read() as s:
        check = s.get(LabelCheck, check_id)
        if check is None:
            raise CatalogError(f"no label check {check_id}")
        plot_type_id, image_id = check.plot_type_id, check.image_id
    what = "confirm" if action == "confirm" else f"fix to label id {label_id}"
    return catalog.guarded_write(db, user, "label", plot_type_id, "audit label",
                                 lambda s: resolve(s, check_id, action, user=user or "", label_id=label_id).resolution,
                                 detail=f"label check {check_id}, image {image_id}: {what}")


__all__ = ["AUDIT_SOURCE", "AuditSummary", "CONFIRMED", "FIXED", "OUT_OF_FOLD_FILE", "audit_model",
           "audit_queue_model", "load_out_of_fold", "open_checks", "out_of_fold_weights", "record_after_training",
           "record_checks",
           "resolve", "resolve_guarded", "save_out_of_fold", "summary"]
