"""The management CLI end to end: init, plot types, users, permissions, label import."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image as PILImage
from sqlalchemy import func, select

from hydra_assets.cli import cli
from hydra_assets.db.engine import HydraDB
from hydra_assets.db.models import Image, Label, LabelHistory


def run(*args: str, ok: bool = True):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def png(path: Path, colour=(10, 20, 30), size=(40, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.new("RGB", size, colour).save(path)
    return path


@pytest.fixture
def home(hydra_home):
    run("init")
    run("plot-type", "add", "FDC_occupancy", "--labels", "Good,Bad,NoData", "--bad", "Bad,NoData",
        "--group", "FDC", "--super-group", "Tracking")
    return hydra_home


def labeled_folder(root: Path) -> Path:
    for i in range(3):
        png(root / "Good" / f"FDC_occupancy-1001-{i:04d}.png", colour=(0, 100 + i, 0))
    for i in range(2):
        png(root / "Bad" / f"scan_{i}.png", colour=(200, i, 0))
    (root / "Bad" / "scan_0.json").write_text("{}")  # side-cars are ignored
    return root


def test_init_is_idempotent_and_creates_everything(hydra_home):
    first = run("init").output
    second = run("init").output
    assert first == second
    for folder in hydra_home.folders.values():
        assert folder.is_dir()
    assert (hydra_home.dagster_home / "dagster.yaml").is_file()
    assert (hydra_home.home / "mlflow.db").is_file()


def test_commands_refuse_before_init(hydra_home):
    result = run("plot-type", "list", ok=False)
    assert result.exit_code != 0 and "hydra init" in result.output


def test_label_import_then_query(home, tmp_path):
    folder = labeled_folder(tmp_path / "set")
    run("user", "add", "alice", "--role", "labeler")
    out = run("label", "import", str(folder), "--plot-type", "FDC_occupancy", "--user", "alice").output
    assert "imported 5 new image(s)" in out and "Bad=2" in out and "Good=3" in out
    again = run("label", "import", str(folder), "--plot-type", "FDC_occupancy").output
    assert "imported 0 new image(s)" in again and "5 unchanged" in again
    db = HydraDB(home.db_url)
    with db.read() as s:  # the query the README shows
        counts = dict(s.execute(select(Label.name, func.count(Image.id)).join(Image, Image.label_id == Label.id)
                                .group_by(Label.name)).all())
        assert counts == {"Good": 3, "Bad": 2}
        stored = s.scalars(select(Image.stored_path)).all()
        assert all(Path(p).is_file() and str(home.images_dir) in p for p in stored)
        runs = sorted(s.scalars(select(Image.run_number)).all())
        assert runs == [0, 0, 1001, 1001, 1001]
        assert s.scalar(select(func.count(LabelHistory.id))) == 5
    db.dispose()
    listing = json.loads(run("plot-type", "list", "--format", "json").output)
    assert listing[0]["labeled_images"] == 5 and listing[0]["groups"] == ["FDC"]


def _assert_nothing_imported(home):
    db = HydraDB(home.db_url)
    with db.read() as s:
        assert s.scalar(select(func.count(Image.id))) == 0
    db.dispose()


def test_import_refuses_unknown_label_folder(home, tmp_path):
    folder = labeled_folder(tmp_path / "set")
    png(folder / "Broken" / "x.png")
    result = run("label", "import", str(folder), "--plot-type", "FDC_occupancy", ok=False)
    assert result.exit_code == 2
    assert "Broken" in result.output and "valid labels: Good, Bad, NoData" in result.output
    _assert_nothing_imported(home)


def test_import_refuses_unreadable_image_naming_it(home, tmp_path):
    folder = labeled_folder(tmp_path / "set")
    good = png(folder / "Good" / "truncated.png", size=(300, 300))
    good.write_bytes(good.read_bytes()[:200])
    result = run("label", "import", str(folder), "--plot-type", "FDC_occupancy", ok=False)
    assert result.exit_code == 2 and "truncated.png" in result.output
    _assert_nothing_imported(home)


def test_import_unknown_plot_type(home, tmp_path):
    folder = labeled_folder(tmp_path / "set")
    result = run("label", "import", str(folder), "--plot-type", "Nope", ok=False)
    assert result.exit_code == 2 and "unknown plot type 'Nope'" in result.output
    assert "FDC_occupancy" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["plot-type", "add", "X", "--labels", "Good,GOOD", "--bad", "GOOD"], "collide"),
        (["plot-type", "add", "X", "--labels", "Good,Bad", "--bad", "Bad", "--collect-percent", "150"],
         "between 0 and 100"),
        (["plot-type", "add", "X", "--labels", "Good,Bad", "--bad", "Bad", "--input-size", "big"], "size like"),
        (["plot-type", "add", "X", "--labels", "Good,Bad", "--bad", "Bad", "--precision-target", "1.5"],
         "above 0 and at most 1"),
        (["plot-type", "edit", "FDC_occupancy", "--precision-target", "0"], "above 0 and at most 1"),
        (["plot-type", "edit", "FDC_occupancy"], "nothing to change"),
        (["plot-type", "edit", "Nope", "--novel-alarm"], "unknown plot type"),
        (["user", "add", "bob", "--role", "god"], "Invalid value"),
        (["permission", "grant", "ghost", "label"], "unknown user 'ghost'"),
        (["permission", "revoke", "admin_missing", "label"], "unknown user"),
    ],
)
def test_bad_arguments_give_clear_errors(home, args, message):
    result = run(*args, ok=False)
    assert result.exit_code == 2
    assert message in result.output


def test_plot_type_precision_target_and_novel_alarm(home):
    run("plot-type", "add", "CDC_timing", "--labels", "Good,Bad", "--bad", "Bad", "--precision-target", "0.9",
        "--novel-alarm")
    shown = {r["plot_type"]: r for r in json.loads(run("plot-type", "list", "--format", "json").output)}
    assert (shown["CDC_timing"]["precision_target"], shown["CDC_timing"]["novel_alarm"]) == (0.9, True)
    assert (shown["FDC_occupancy"]["precision_target"], shown["FDC_occupancy"]["novel_alarm"]) == (0.95, False)
    out = run("plot-type", "edit", "CDC_timing", "--precision-target", "0.99", "--no-novel-alarm").output
    assert "precision target 0.99, novel alarm off" in out
    run("plot-type", "edit", "CDC_timing", "--collect-percent", "2")  # the rest stays as it was
    shown = {r["plot_type"]: r for r in json.loads(run("plot-type", "list", "--format", "json").output)}
    assert (shown["CDC_timing"]["precision_target"], shown["CDC_timing"]["novel_alarm"],
            shown["CDC_timing"]["collect_percent"]) == (0.99, False, 2.0)


def test_permission_grant_and_revoke(home):
    run("user", "add", "eve", "--role", "viewer")
    assert "granted label to eve on FDC_occupancy" in run(
        "permission", "grant", "eve", "label", "--plot-type", "FDC_occupancy").output
    run("permission", "revoke", "eve", "label", "--plot-type", "FDC_occupancy")
    result = run("permission", "revoke", "eve", "label", "--plot-type", "FDC_occupancy", ok=False)
    assert result.exit_code == 2 and "holds no own grant" in result.output


def test_help_explains():
    out = run("--help").output
    for command in ("init", "plot-type", "label", "user", "permission", "doctor"):
        assert command in out
    assert "DIR/<label>" in run("label", "import", "--help").output.replace("FOLDER", "DIR")


def test_doctor_reports_a_sound_installation():
    result = run("doctor")
    assert "install check ok" in result.output and "dagster 1." in result.output


def test_doctor_names_each_problem_and_exits_1(monkeypatch):
    problems = ["dagster-mysql 0.12.0 belongs to dagster 1.-4.0, not 1.13.27", "import dagster_mysql failed: boom"]
    monkeypatch.setattr("hydra_assets.install_check.check_installation", lambda: problems)
    result = run("doctor", ok=False)
    assert result.exit_code == 1
    assert "the installation is broken" in result.output
    for line in problems:
        assert f"  - {line}" in result.output
    assert "install check ok" not in result.output
