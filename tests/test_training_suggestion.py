"""Suggested training (issue 15 item 4): the rule, the suggestion from the database, the Library's one action
(checked, audited, nothing started on bad runs) and `hydra train … --backtest-runs` refusals and end to end."""

from __future__ import annotations

from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, update

from hydra_assets import catalog, training_suggestion
from hydra_assets.db.models import AuditLog, Image, LabelHistory, Model, TrainingSet, TrainingSetItem, utcnow
from hydra_assets.training_suggestion import is_behind, labels_needed


def test_the_rule_fifty_labels_or_a_fifth_of_the_training_set_or_an_audit_fix():
    assert labels_needed(0) == 50 and labels_needed(100) == 50 and labels_needed(1000) == 200
    assert labels_needed(1001) == 201
    assert not is_behind(49, 100, 0) and is_behind(50, 100, 0)
    assert not is_behind(199, 1000, 0) and is_behind(200, 1000, 0)
    assert is_behind(0, 1000, 1)


def _plot_type_with_version(db, *, labeled: int = 120, in_training: int = 20):
    """Plot type S (Good, Bad), `labeled` labeled images, a version trained a day ago on the first
    `in_training` of them (training set size 100)."""
    day_ago = utcnow() - timedelta(days=1)

    def write(s):
        plot = catalog.add_plot_type(s, "S", "Good,Bad", "Bad", input_size=(32, 32))
        s.flush()
        good = catalog.labels_of(s, plot)[0].id
        images = [Image(plot_type_id=plot.id, run_number=500 + k % 4, chunk=k, digest=f"{k:064d}",
                        file_name=f"S-{k}.png", label_id=good) for k in range(labeled)]
        s.add_all(images)
        tset = TrainingSet(plot_type_id=plot.id, created_at=day_ago)
        s.add(tset)
        s.flush()
        s.add_all([TrainingSetItem(training_set_id=tset.id, image_id=i.id, label_id=good, split="train")
                   for i in images[:in_training]])
        s.add(Model(plot_type_id=plot.id, mlflow_name="hydra-S", mlflow_version="1", topology="compact",
                    input_height=32, input_width=32, label_names=["Good", "Bad"], training_set_id=tset.id,
                    training_set_size=100, created_at=day_ago, active=True))
        catalog.add_user(s, "eve", role="expert")
        catalog.add_user(s, "lou", role="labeler")
        return plot.id, [i.id for i in images], good

    return db.write(write)


def _history(db, image_ids, label_id, *, source="labeler", at=None):
    db.write(lambda s: s.add_all([LabelHistory(image_id=i, label_id=label_id, source=source,
                                               labeled_at=at or utcnow()) for i in image_ids]))


def test_suggestion_after_enough_new_labels_or_an_audit_fix(db):
    plot_id, images, good = _plot_type_with_version(db)
    with db.read() as s:
        assert training_suggestion.suggest_training(s, plot_id, "S") is None
    _history(db, images[:49], good, at=utcnow() - timedelta(days=2))  # before the version: not new
    _history(db, images[20:69], good)  # 49 new images
    _history(db, images[20:30], good)  # the same images again: counted once
    with db.read() as s:
        assert training_suggestion.new_labels_since(s, plot_id, utcnow() - timedelta(hours=1)) == 49
        assert training_suggestion.suggest_training(s, plot_id, "S") is None
    _history(db, images[69:70], good)
    with db.read() as s:
        found = training_suggestion.suggest_training(s, plot_id, "S")
    assert found is not None and found.new_labels == 50 and found.fixed_in_training_set == 0
    assert "50 new label(s) since hydra-S/1 was trained on 100 images" in found.message
    assert found.backtest_runs == "500-503"


def test_an_audit_fix_in_the_training_set_suggests_training(db):
    plot_id, images, good = _plot_type_with_version(db)
    _history(db, images[50:52], good, source="audit")  # fixes of images it did not train on: not its labels
    with db.read() as s:
        assert training_suggestion.suggest_training(s, plot_id, "S") is None
    _history(db, images[3:4], good, source="audit")
    with db.read() as s:
        found = training_suggestion.suggest_training(s, plot_id, "S")
    assert found is not None and found.fixed_in_training_set == 1
    assert "the audit fixed 1 label(s) it was trained on" in found.message


def test_library_action_is_checked_audited_and_starts_training_with_a_backtest(sqlite_db, hydra_home, monkeypatch):
    from panel_app.config import PagesConfig
    from panel_app.pages.library import LibraryPage
    from panel_app.store import HydraStore

    db = sqlite_db
    plot_id, images, good = _plot_type_with_version(db)
    _history(db, images[:60], good)
    started = []
    monkeypatch.setattr(training_suggestion, "start_training",
                        lambda config, plot_type, runs, user: started.append((plot_type, runs, user)) or (4242, "x.log"))

    def library(user):
        return LibraryPage(HydraStore(db, PagesConfig(settings=hydra_home, sync_mlflow_alias=False), user=user))

    page = library("eve")
    section = page.training
    assert section.box.visible and "Training suggested" in section.banner.object
    assert section.runs.value == "500-503"  # the newest runs with images, offered
    section.runs.value = "900-910"
    assert not section.train() and "no stored images in runs 900-910" in section.note.object
    section.runs.value = "five"
    assert not section.train() and "runs must be written A-B" in section.note.object
    assert started == []
    viewer = library("lou").training
    viewer.runs.value = "500-503"
    assert not viewer.train() and "Nothing started" in viewer.note.object and started == []
    section.runs.value = "500-503"
    assert section.train() and "Started" in section.note.object and "4242" in section.note.object
    assert started == [("S", "500-503", "eve")]
    assert training_suggestion.training_command("S", "500-503", "eve") == [
        "train", "S", "--no-activate", "--backtest-runs", "500-503", "--user", "eve", "--no-progress"]
    with db.read() as s:
        audit = s.scalars(select(AuditLog).where(AuditLog.action == "train and backtest").order_by(AuditLog.id)).all()
    assert [(a.user_name, a.allowed) for a in audit] == [("lou", False), ("eve", True)]
    db.write(lambda s: s.execute(update(Model).values(created_at=utcnow())))  # a fresh version: no suggestion
    assert not library("eve").training.box.visible


def test_train_with_backtest_runs_refuses_bad_runs_before_training(sqlite_db, hydra_home):
    from hydra_assets.cli import cli as main

    _plot_type_with_version(sqlite_db)
    runner = CliRunner()
    result = runner.invoke(main, ["train", "S", "--backtest-runs", "900-910"])
    assert result.exit_code != 0 and "no stored images in runs 900-910; nothing trained" in result.output
    result = runner.invoke(main, ["train", "S", "--activate", "--backtest-runs", "500-503"])
    assert result.exit_code != 0 and "train with --no-activate" in result.output
    result = runner.invoke(main, ["train", "S", "--backtest-runs", "x-y"])
    assert result.exit_code != 0 and "runs must be written A-B" in result.output
    with sqlite_db.read() as s:
        assert s.scalar(select(func.count()).select_from(Model)) == 1  # nothing trained


@pytest.mark.slow
@pytest.mark.timeout(420)  # alone ~30-80 s on the shared cores; once it hung 13 min while the tree was mid-edit
def test_hydra_train_with_backtest_runs_trains_backtests_and_offers_activation(sqlite_db, hydra_home, tmp_path):
    import json

    from test_ml_split import spread_over_runs

    from hydra_assets.cli import cli
    from hydra_assets.db.models import Backtest
    from hydra_assets.label_import import import_labeled_folder
    from hydra_assets.ml.active import clear_model_cache
    from hydra_assets.ml.toy import write_toy_labeled

    hydra_home.ensure_folders()
    sqlite_db.write(lambda s: catalog.add_plot_type(s, "T1", "Good,Bad", "Bad", input_size=(32, 32)))
    folder = write_toy_labeled(tmp_path / "toy", per_label={"Good": 14, "Bad": 10}, size=32)
    import_labeled_folder(sqlite_db, hydra_home, spread_over_runs(folder, "T1", list(range(21, 45))), "T1")
    clear_model_cache()
    runner = CliRunner()
    args = ["train", "T1", "--epochs", "1", "--min-per-label", "5", "--batch-size", "8", "--no-progress"]
    first = runner.invoke(cli, [*args, "--activate"], catch_exceptions=False)
    assert first.exit_code == 0, first.output
    result = runner.invoke(cli, [*args, "--backtest-runs", "21-26"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["model"] == "hydra-T1/2" and not summary["activated"]  # offered, not activated
    backtest = summary["backtest"]
    assert backtest["status"] == "done" and backtest["dagster_runs"] == 6
    assert any(n.startswith("backtest ") for n in backtest["activation_notes"])
    assert "to activate it: hydra model activate T1 2" in result.stderr
    with sqlite_db.read() as s:
        row = s.get(Backtest, backtest["id"])
        assert (row.first_run, row.last_run, row.status) == (21, 26, "done")
        assert s.get(Model, row.candidate_model_id).mlflow_version == "2"


def test_start_training_runs_hydra_train_detached_against_this_home(sqlite_db, hydra_home):
    import time

    pid, log_path = training_suggestion.start_training(hydra_home, "Nope", "1-2", "cli")
    assert pid > 0 and log_path.parent == hydra_home.home / "run"
    deadline = time.monotonic() + 90
    while "unknown plot type 'Nope'" not in log_path.read_text(errors="replace"):
        assert time.monotonic() < deadline, log_path.read_text(errors="replace")
        time.sleep(0.2)
