"""`hydra inferences`, `hydra log` and `hydra classify` on a pipeline-filled database."""

from __future__ import annotations

import json

import dagster as dg
import pytest
from click.testing import CliRunner
from test_ingest_support import PLOT, activate, drop, home, ingest_all, model_files, png_bytes  # noqa: F401

from hydra_assets.cli import cli
from hydra_assets.cli.results import parse_duration
from hydra_assets.ingest.records import FIELDS

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("home")]


def invoke(*args: str):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result


@pytest.fixture
def filled(home, sqlite_db, model_files):
    """Run 300: two chunks classified Bad; run 301: one chunk without a model (before activation)."""
    instance = dg.DagsterInstance.ephemeral()
    drop(home.input_dir, f"{PLOT}-301-0001.png", png_bytes(9))
    ingest_all(instance)
    activate(sqlite_db, model_files["bad"])
    for chunk in (1, 2):
        drop(home.input_dir, f"{PLOT}-300-{chunk:04d}.png", png_bytes(chunk))
    ingest_all(instance)
    return home


def test_inferences_json_one_object_per_image(filled):
    result = invoke("inferences", "--run", "300", "--format", "json")
    assert result.exit_code == 0, result.output
    records = json.loads(result.output)
    assert [r["chunk"] for r in records] == [1, 2]
    assert all(set(FIELDS) <= set(r) for r in records)
    assert records[0]["label"] == "Bad" and records[0]["confirmed"] and records[0]["keep_reason"] == "bad"
    assert records[0]["gradcam"].endswith(".png") and records[0]["model"].startswith("local-RF_FDC/")
    assert records[0]["weights"]["Bad"] == pytest.approx(0.95, abs=1e-3)
    lines = invoke("inferences", "--run", "300", "--format", "jsonl").output.splitlines()
    assert [json.loads(line)["chunk"] for line in lines] == [1, 2]


def test_inferences_table_and_empty_run(filled):
    table = invoke("inferences", "--run", "300").output
    assert "RF_FDC-300-0001.png" in table and "Bad" in table and "yes" in table
    assert invoke("inferences", "--run", "999").output.strip() == "(no images)"
    assert json.loads(invoke("inferences", "--run", "301", "--format", "json").output)[0]["status"] == "no_model"


def test_log_lists_confirmed_bad_of_the_window(filled):
    records = json.loads(invoke("log", "--since", "24h", "--format", "json").output)
    assert sorted(r["image"] for r in records) == [f"{PLOT}-300-0001.png", f"{PLOT}-300-0002.png"]
    assert all(r["keep_reason"] == "bad" for r in records)  # the no-model image is not on the log
    assert "RF_FDC-300-0001.png" in invoke("log").output
    bad = invoke("log", "--since", "yesterday")
    assert bad.exit_code == 2 and "not a duration" in bad.output


def test_classify_offline_with_the_active_model(home, sqlite_db, model_files, tmp_path):
    activate(sqlite_db, model_files["bad"])
    good = tmp_path / f"{PLOT}-5-0001.png"
    good.write_bytes(png_bytes(1))
    offline = tmp_path / "calibration shot.png"  # any name: offline files need no run number
    offline.write_bytes(png_bytes(2))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"nope")
    result = invoke("classify", str(good), str(offline), str(broken), "--plot-type", PLOT,
                    "--gradcam-dir", str(tmp_path / "cams"))
    assert result.exit_code == 0, result.output
    first, second, third = json.loads(result.output)
    assert (first["run"], first["chunk"], first["label"], first["keep_reason"]) == (5, 1, "Bad", "bad")
    assert first["gradcam"] and (tmp_path / "cams").is_dir()
    assert second["run"] is None and second["label"] == "Bad"
    assert third["status"] == "error" and "not a readable image" in third["error"]
    assert invoke("inferences", "--run", "5", "--format", "json").output.strip() == "[]"  # nothing registered


def test_classify_refuses_unknown_plot_type_and_broken_model(home, sqlite_db, model_files, tmp_path):
    from hydra_assets.ml.active import register_local_model

    image = tmp_path / "x.png"
    image.write_bytes(png_bytes(1))
    unknown = invoke("classify", str(image), "--plot-type", "NOPE")
    assert unknown.exit_code == 2 and "unknown plot type" in unknown.output
    register_local_model(sqlite_db, PLOT, model_files["corrupt"], ["Good", "Bad"], input_size=(32, 32))
    broken = invoke("classify", str(image), "--plot-type", PLOT)
    assert broken.exit_code == 1 and "corrupt.keras" in broken.output


def test_classify_without_model_says_no_model(home, tmp_path):
    image = tmp_path / "x.png"
    image.write_bytes(png_bytes(1))
    (record,) = json.loads(invoke("classify", str(image), "--plot-type", PLOT).output)
    assert record["status"] == "no_model" and record["model"] is None


@pytest.mark.parametrize(("text", "seconds"), [("24h", 86400), ("90m", 5400), ("7d", 604800), ("30s", 30), ("2", 7200)])
def test_parse_duration(text, seconds):
    assert parse_duration(text).total_seconds() == seconds
