"""The label audit in the database: checks from out-of-fold weights, the audit queue, confirm and fix
(audited, history source "audit"), recompute keeps answers, and training writes a version's checks."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import func, select
from test_ml_training import toy_plot_type  # noqa: F401 - the fixture

from hydra_assets import catalog, label_audit
from hydra_assets.catalog import CatalogError, PermissionDenied
from hydra_assets.db.engine import HydraDB
from hydra_assets.db.models import AuditLog, Image, LabelCheck, LabelHistory, Model

N = 200


def _labeled_set(db: HydraDB, flipped_share: float = 0.05, seed: int = 1):
    """Plot type A (Good, Bad), N labeled images, a model version, and out-of-fold weights from a decent model
    with a share of the given labels flipped on purpose.  Returns (model, image ids, weights, flipped ids)."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, N)
    flipped = set(rng.choice(N, int(N * flipped_share), replace=False).tolist())
    given = np.array([1 - t if k in flipped else t for k, t in enumerate(truth)])
    logits = rng.normal(0.0, 1.0, (N, 2))
    logits[np.arange(N), truth] += 3.0
    weights = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)

    def write(s):
        plot = catalog.add_plot_type(s, "A", "Good,Bad", "Bad", input_size=(32, 32))
        s.flush()
        ids = {lab.name: lab.id for lab in catalog.labels_of(s, plot)}
        images = [Image(plot_type_id=plot.id, run_number=100 + k % 5, chunk=k, digest=f"{k:064d}",
                        file_name=f"A-{k}.png", label_id=ids[("Good", "Bad")[given[k]]]) for k in range(N)]
        s.add_all(images)
        model = Model(plot_type_id=plot.id, mlflow_name="hydra-A", mlflow_version="1", topology="compact",
                      input_height=32, input_width=32, label_names=["Good", "Bad"], active=True)
        s.add(model)
        catalog.add_user(s, "ann", role="labeler")
        catalog.add_user(s, "viv", role="viewer")
        s.flush()
        return model.id, [i.id for i in images]

    model_id, image_ids = db.write(write)
    return model_id, np.array(image_ids), weights, {image_ids[k] for k in flipped}


def _checks(db: HydraDB, model_id: int) -> list[LabelCheck]:
    with db.read() as s:
        return list(s.scalars(select(LabelCheck).where(LabelCheck.model_id == model_id).order_by(LabelCheck.rank)))


def test_checks_rank_flipped_labels_first_and_the_queue_shows_them(db: HydraDB):
    model_id, image_ids, weights, flipped = _labeled_set(db)
    summary = db.write(lambda s: label_audit.record_checks(s, s.get(Model, model_id), image_ids, weights, "test"))
    assert summary.checked == N and summary.issues == summary.open_issues > 0
    checks = _checks(db, model_id)
    assert [c.rank for c in checks] == list(range(N))
    first = {c.image_id for c in checks[:20]}
    assert len(first & flipped) >= 0.8 * len(flipped)
    with db.read() as s:
        labels = {lab.name: lab.id for lab in catalog.labels_of(s, catalog.get_plot_type(s, "A"))}
        queue = label_audit.open_checks(s, checks[0].plot_type_id)
    assert queue and all(c.is_issue for c in queue)
    assert [c.rank for c in queue] == sorted(c.rank for c in queue)
    top = queue[0]
    assert top.suggested_label_id != top.given_label_id and set(labels.values()) >= {top.suggested_label_id}


def test_confirm_and_fix_are_recorded_audited_and_leave_the_queue(db: HydraDB):
    model_id, image_ids, weights, _ = _labeled_set(db)
    db.write(lambda s: label_audit.record_checks(s, s.get(Model, model_id), image_ids, weights, "test"))
    with db.read() as s:
        queue = label_audit.open_checks(s, s.get(Model, model_id).plot_type_id)
        first, second = queue[0].id, queue[1].id
        fix_to, fix_image = queue[1].suggested_label_id, queue[1].image_id
    assert label_audit.resolve_guarded(db, "ann", first, "confirm") == "confirmed"
    assert label_audit.resolve_guarded(db, "ann", second, "fix", fix_to) == "fixed"
    with pytest.raises(PermissionDenied):
        label_audit.resolve_guarded(db, "viv", queue[2].id, "confirm")
    with pytest.raises(CatalogError, match="already answered"):
        label_audit.resolve_guarded(db, "ann", first, "confirm")
    with db.read() as s:
        done = {c.id: c for c in s.scalars(select(LabelCheck).where(LabelCheck.id.in_([first, second])))}
        assert (done[first].resolution, done[first].resolved_by) == ("confirmed", "ann")
        assert done[second].resolution == "fixed" and done[second].resolved_at is not None
        assert s.get(Image, fix_image).label_id == fix_to
        history = s.scalars(select(LabelHistory).where(LabelHistory.image_id == fix_image)).all()
        assert [h.source for h in history] == ["audit"] and history[0].label_id == fix_to
        audit = s.scalars(select(AuditLog).where(AuditLog.action == "audit label").order_by(AuditLog.id)).all()
        assert [(a.user_name, a.allowed) for a in audit] == [("ann", True), ("ann", True), ("viv", False)]
        assert "confirm" in audit[0].detail and f"fix to label id {fix_to}" in audit[1].detail
        left = [c.id for c in label_audit.open_checks(s, done[first].plot_type_id)]
    assert first not in left and second not in left


def test_fix_refusals_write_nothing(db: HydraDB):
    model_id, image_ids, weights, _ = _labeled_set(db)
    db.write(lambda s: label_audit.record_checks(s, s.get(Model, model_id), image_ids, weights, "test"))
    with db.read() as s:
        check = label_audit.open_checks(s, s.get(Model, model_id).plot_type_id)[0]
    for label_id, message in [(None, "needs a label"), (check.given_label_id, "use confirm"), (99999, "needs a label")]:
        with pytest.raises(CatalogError, match=message):
            label_audit.resolve_guarded(db, "ann", check.id, "fix", label_id)
    with pytest.raises(CatalogError, match="confirm or fix"):
        label_audit.resolve_guarded(db, "ann", check.id, "ignore")
    with db.read() as s:
        assert s.get(LabelCheck, check.id).resolved_at is None
        assert s.scalar(select(func.count()).select_from(LabelHistory)) == 0


def test_recompute_keeps_answers_and_skips_relabeled_images(db: HydraDB):
    model_id, image_ids, weights, _ = _labeled_set(db)
    db.write(lambda s: label_audit.record_checks(s, s.get(Model, model_id), image_ids, weights, "test"))
    with db.read() as s:
        queue = label_audit.open_checks(s, s.get(Model, model_id).plot_type_id)
    label_audit.resolve_guarded(db, "ann", queue[0].id, "confirm")
    again = db.write(lambda s: label_audit.record_checks(s, s.get(Model, model_id), image_ids, weights, "test"))
    assert again.checked == N - 1  # the answered image keeps its answer
    checks = _checks(db, model_id)
    assert len(checks) == N and sum(c.resolution == "confirmed" for c in checks) == 1
    # An image relabeled elsewhere since the check leaves the queue (its label is no longer the one judged).
    other = queue[1]
    db.write(lambda s: setattr(s.get(Image, other.image_id), "label_id", other.suggested_label_id))
    with db.read() as s:
        assert other.image_id not in {c.image_id for c in label_audit.open_checks(s, other.plot_type_id)}
    with pytest.raises(CatalogError, match="label changed"):
        label_audit.resolve_guarded(db, "ann", next(c.id for c in _checks(db, model_id)
                                                    if c.image_id == other.image_id), "confirm")


def test_out_of_fold_weights_from_the_embedding_find_flipped_labels():
    rng = np.random.default_rng(4)
    truth = rng.integers(0, 2, 300)
    features = rng.normal(0, 1, (300, 16)) + truth[:, None] * 1.5
    given = truth.copy()
    flipped = rng.choice(300, 15, replace=False)
    given[flipped] = 1 - given[flipped]
    weights, method = label_audit.out_of_fold_weights(given, None, features, 3)
    assert weights.shape == (300, 3) and np.allclose(weights[:, 2], 0) and "logistic" in method
    checks = label_audit.label_audit.audit(given, weights)
    assert len({c.position for c in checks[:30]} & set(flipped.tolist())) >= 12
    assert label_audit.out_of_fold_weights(given, None, None, 2) is None
    cv = np.full((300, 2), 0.5, dtype=np.float32)
    assert label_audit.out_of_fold_weights(given, cv, features, 2)[1] == "cross-validation over runs"


@pytest.mark.slow
def test_training_writes_the_new_versions_checks_and_audit_recomputes(sqlite_db, hydra_home, toy_plot_type):
    from test_ml_training import _train

    from hydra_assets.tracking import TrackingService

    tracking = TrackingService.from_settings(hydra_home)
    _, model, *_ = _train(sqlite_db, hydra_home, tracking, activate="always")
    checks = _checks(sqlite_db, model.model_id)
    assert len(checks) == 30  # every image of the balanced training set (12 + 12 + 6), train part included
    assert [c.rank for c in checks] == list(range(30))
    assert all(0.0 <= c.self_confidence <= 1.0 for c in checks)
    path = hydra_home.models_dir / model.name / model.version / label_audit.OUT_OF_FOLD_FILE
    assert path.is_file()
    stored = label_audit.audit_model(sqlite_db, hydra_home, tracking, "T1")
    assert stored.checked == 30 and stored.method == "stored"
    path.unlink()  # recompute fetches the file from the version's MLflow run
    again = label_audit.audit_model(sqlite_db, hydra_home, tracking, "T1", recompute=True)
    assert again.checked == 30 and again.method.startswith("logistic regression")
    assert len(_checks(sqlite_db, model.model_id)) == 30


# ---- the Labeler's queue selector (page logic; the browser test is tests/ui/test_queues_ui.py) -----------


def add_audit_checks(db: HydraDB, plot_type_id: int, model_id: int, *, issues: int = 3) -> list[int]:
    """Label checks for the plot type's labeled images as if the model's out-of-fold predictions doubted the
    labels of the first `issues` of them (suggesting another label).  Returns those images' ids."""
    from hydra_assets.db.models import Label

    def write(s):
        labels = [lab.id for lab in s.scalars(select(Label).where(Label.plot_type_id == plot_type_id)
                                              .order_by(Label.order, Label.id))]
        rows = s.execute(select(Image.id, Image.label_id).where(Image.plot_type_id == plot_type_id,
                                                                  Image.label_id.is_not(None))
                         .order_by(Image.id)).all()
        doubted = []
        for rank, (image_id, label_id) in enumerate(rows):
            issue = rank < issues
            other = next(lid for lid in labels if lid != label_id)
            s.add(LabelCheck(model_id=model_id, plot_type_id=plot_type_id, image_id=image_id, given_label_id=label_id,
                             suggested_label_id=other if issue else label_id, self_confidence=0.05 if issue else 0.9,
                             is_issue=issue, rank=rank))
            if issue:
                doubted.append(image_id)
        return doubted

    return db.write(write)


@pytest.fixture(scope="module")
def pages_template(tmp_path_factory):
    from pages_factory import populate, template_database

    return template_database(tmp_path_factory.mktemp("queues_pages"), populate)


@pytest.fixture
def demo(pages_template, tmp_path):
    from pages_factory import database_copy

    from panel_app.store import SHARED

    settings, made = pages_template
    database, settings = database_copy(settings, tmp_path)
    SHARED.clear()
    yield database, settings, made
    database.dispose()


def _labeler(db, settings, user="labeler", **args):
    from panel_app.config import PagesConfig
    from panel_app.pages.labeler import LabelerPage
    from panel_app.store import HydraStore

    return LabelerPage(HydraStore(db, PagesConfig(settings=settings, sync_mlflow_alias=False), user=user),
                       args={k: str(v) for k, v in args.items()})


def test_most_uncertain_queue_shows_the_smallest_margins_first(demo):
    from hydra_assets.db.models import Inference
    from hydra_assets.scores.queues import margins

    db, settings, made = demo
    name = "CDC_occupancy"
    page = _labeler(db, settings, queue="uncertain", plot_type=name)
    page.plot_type = made.plot_types[name]
    assert page.queue == "uncertain" and page.ranked()
    shown = [t.image_id for t in page.tiles]
    assert shown and set(shown) <= set(made.queue[name])
    with db.read() as s:
        weights = {}
        for row in s.scalars(select(Inference).where(Inference.image_id.in_(shown)).order_by(Inference.id)):
            weights[row.image_id] = list(row.weights.values())
    got = [float(margins(np.array([weights[i]]))[0]) for i in shown]
    assert got == sorted(got)
    assert "most uncertain" in page.queue_header.object
    page.queue = "arrival"  # back to arrival order: the unranked queue, unconfirmed and Bad first
    assert not page.ranked() and page.tiles[0].priority == 0


def test_audit_queue_confirm_and_fix_from_the_labeler(demo):
    db, settings, made = demo
    name = "CDC_occupancy"
    plot_type_id, model_id = made.plot_types[name], made.models[name][-1]
    doubted = add_audit_checks(db, plot_type_id, model_id)
    page = _labeler(db, settings, queue="audit")
    page.plot_type = plot_type_id
    assert page.auditing() and page.grid.images == []
    assert [t.image_id for t in page.tiles] == doubted
    panel = page.queues.audit
    assert panel.rows.visible and len(panel.rows.objects) == 3
    items = page.queues.audit_items
    assert panel.answer(items[0].check_id, "confirm") == "confirmed"
    assert panel.answer(items[1].check_id, "fix", items[1].suggested_label_id) == "fixed"
    assert [t.image_id for t in page.tiles] == doubted[2:]
    with db.read() as s:
        assert s.get(Image, doubted[1]).label_id == items[1].suggested_label_id
        assert s.scalar(select(LabelHistory.source).where(LabelHistory.image_id == doubted[1])
                        .order_by(LabelHistory.id.desc()).limit(1)) == "audit"
    viewer = _labeler(db, settings, user="viewer", queue="audit")
    viewer.plot_type = plot_type_id
    assert viewer.queues.audit.answer(items[2].check_id, "confirm") is None
    assert "Refused" in viewer.queues.audit.note.object


def test_an_empty_queue_says_so_and_writes_nothing(demo):
    db, settings, made = demo
    with db.read() as s:
        before = (s.scalar(select(func.count()).select_from(LabelHistory)),
                  s.scalar(select(func.count()).select_from(AuditLog)))
    page = _labeler(db, settings, queue="disagreement")
    page.plot_type = made.plot_types["CDC_occupancy"]
    assert page.tiles == [] and page.empty.visible
    assert "Nothing in this queue: disagreement: active vs challenger" in page.empty.object
    page.queue = "audit"
    assert page.tiles == [] and "Nothing in this queue: likely mislabeled" in page.empty.object
    wrong = _labeler(db, settings, queue="loudest")
    assert wrong.queue == "arrival" and "No queue named" in wrong.feedback.object
    with db.read() as s:
        assert (s.scalar(select(func.count()).select_from(LabelHistory)),
                s.scalar(select(func.count()).select_from(AuditLog))) == before


def test_queue_links_name_their_plot_type_and_the_report_links_to_the_audit_queue(demo):
    import panel as pn

    from panel_app.config import PagesConfig
    from panel_app.pages.report import ReportPage
    from panel_app.store import HydraStore

    db, settings, made = demo
    page = _labeler(db, settings, queue="audit", plot_type="TOF_timing")
    assert page.plot_type == made.plot_types["TOF_timing"] and page.queue == "audit"
    assert not page.feedback.visible  # a queue link is not a retraining suggestion with a run missing
    report = ReportPage(HydraStore(db, PagesConfig(settings=settings, sync_mlflow_alias=False), user="expert"))
    report.plot_type = made.plot_types["CDC_occupancy"]
    html = " ".join(p.object for p in pn.panel(report).select(pn.pane.HTML) if isinstance(p.object, str))
    assert 'href="./labeler?queue=audit&amp;plot_type=CDC_occupancy"' in html


def test_most_novel_queue_puts_the_images_furthest_above_their_limit_first(demo):
    from pages_factory import add_novel_image

    db, settings, made = demo
    name = "TOF_timing"
    ids = [add_novel_image(db, settings, name, 121290, chunk, seed=60 + chunk, novelty=score, limit=1.5)
           for chunk, score in ((1, 2.0), (2, 6.0), (3, 3.0))]
    page = _labeler(db, settings, queue="novel", plot_type=name)
    assert page.plot_type == made.plot_types[name]
    assert [t.image_id for t in page.tiles][:3] == [ids[1], ids[2], ids[0]]


def test_hydra_label_audit_computes_stored_checks_and_lists_the_queue(sqlite_db, hydra_home):
    from click.testing import CliRunner

    from hydra_assets.cli import cli

    model_id, image_ids, weights, flipped = _labeled_set(sqlite_db)
    folder = hydra_home.models_dir / "hydra-A" / "1"
    folder.mkdir(parents=True)
    label_audit.save_out_of_fold(folder / label_audit.OUT_OF_FOLD_FILE, image_ids, weights, "test weights")
    runner = CliRunner()
    result = runner.invoke(cli, ["label", "audit", "A", "--show", "3"])
    assert result.exit_code == 0, result.output
    assert f"hydra-A/1: {N} labeled image(s) checked (test weights)" in result.output
    assert result.output.count("suggested") == 3
    again = runner.invoke(cli, ["label", "audit", "A"])
    assert "checked (stored)" in again.output  # not computed twice
    assert len(_checks(sqlite_db, model_id)) == N
    sqlite_db.write(lambda s: setattr(s.get(Model, model_id), "active", False))
    refused = runner.invoke(cli, ["label", "audit", "A"])
    assert refused.exit_code != 0 and "no active model version" in refused.output


def test_disagreement_queue_lists_images_the_challenger_labels_otherwise(demo):
    from hydra_assets.db.models import Inference, Label, ShadowInference

    db, settings, made = demo
    name = "CDC_occupancy"
    plot_id = made.plot_types[name]
    old, _active = made.models[name][:2]

    def write(s):
        s.get(Model, old).challenger = True
        labels = list(s.scalars(select(Label.id).where(Label.plot_type_id == plot_id)))
        chosen = {}
        queued = made.queue[name][:6]
        latest = {}
        for row in s.scalars(select(Inference).where(Inference.image_id.in_(queued)).order_by(Inference.id)):
            latest[row.image_id] = row
        for k, image_id in enumerate(i for i in queued if i in latest):
            live = latest[image_id]
            other = next(lid for lid in labels if lid != live.top_label_id) if k % 2 == 0 else live.top_label_id
            s.add(ShadowInference(image_id=image_id, plot_type_id=plot_id, run_number=live.run_number,
                                  chunk=live.chunk, model_id=old, model_key=f"hydra-{name}/1", purpose="challenger",
                                  top_label_id=other, top_weight=0.5 + k / 20))
            if k % 2 == 0:
                chosen[image_id] = 0.5 + k / 20
        return sorted(chosen, key=lambda i: -chosen[i])

    expected = db.write(write)
    assert expected
    page = _labeler(db, settings, queue="disagreement", plot_type=name)
    assert [t.image_id for t in page.tiles] == expected  # only those, the challenger's most confident first
    assert "challenger hydra-CDC_occupancy/1" in page.queue_header.object


def test_backtest_link_opens_the_disagreement_queue_of_its_images(demo, monkeypatch):
    from hydra_assets import backtest
    from hydra_assets.db.models import Backtest

    db, settings, made = demo
    name = "FCAL_hits"
    plot_id = made.plot_types[name]
    old, active = made.models[name][:2]
    backtest_id = db.write(lambda s: (s.add(row := Backtest(plot_type_id=plot_id, candidate_model_id=old,
                                                            active_model_id=active, first_run=1, last_run=2,
                                                            status="done")), s.flush(), row.id)[-1])
    chosen = made.queue[name][:3][::-1]
    monkeypatch.setattr(backtest, "disagreeing_images", lambda session, wanted: chosen if wanted == backtest_id else [])
    page = _labeler(db, settings, backtest=backtest_id, plot_type=name)
    assert page.plot_type == plot_id and page.queue == "disagreement"
    assert [t.image_id for t in page.tiles] == chosen
    assert f"backtest {backtest_id}'s candidate" in page.queue_header.object
    missing = _labeler(db, settings, backtest=backtest_id + 99)
    missing.plot_type = plot_id
    assert missing.tiles == [] and f"backtest {backtest_id + 99} does not exist" in missing.empty.object
