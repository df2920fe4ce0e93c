"""`hydra reference` and the reference options of `hydra plot-type edit`, end to end on a fresh home."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from test_cli_manage import run
from test_reference_scores import curve

PLOT = "FDC_occupancy"


@pytest.fixture
def home(hydra_home, tmp_path: Path):
    run("init")
    run("plot-type", "add", PLOT, "--labels", "Good,Bad", "--bad", "Bad")
    run("user", "add", "erin", "--role", "expert")
    run("user", "add", "vic", "--role", "viewer")
    rng = np.random.default_rng(20)
    folder = tmp_path / "labeled" / "Good"
    folder.mkdir(parents=True)
    for chunk in range(6):
        PILImage.fromarray(curve(rng)).save(folder / f"{PLOT}-1001-{chunk:04d}.png")
    run("label", "import", str(tmp_path / "labeled"), "--plot-type", PLOT, "--user", "erin")
    return hydra_home


def test_an_expert_sets_a_reference_and_sees_its_history(home):
    refused = run("reference", "set", PLOT, "--runs", "1001", "--user", "vic", ok=False)
    assert refused.exit_code == 3 and "needs 'edit_reference'" in refused.output

    out = run("reference", "set", PLOT, "--runs", "1001", "--user", "erin", "--comment", "clean run").output
    assert f"{PLOT}: reference version 1 from run 1001 (6 images, limit " in out

    empty = run("reference", "set", PLOT, "--runs", "77", "--user", "erin", ok=False)
    assert empty.exit_code == 2 and "run 77 holds no usable image of this plot type" in empty.output

    shown = run("reference", "show", PLOT).output
    assert f"{PLOT}: rule expert, reference alarm off, quantile 0.99" in shown
    assert "* v1   expert runs 1001  6 images 64x48" in shown and "erin" in shown and "clean run" in shown
    data = json.loads(run("reference", "show", PLOT, "--format", "json").output)
    assert [(v["version"], v["active"], v["runs"]) for v in data["versions"]] == [(1, True, [1001])]

    scored = run("reference", "score", "--run", "1001").output
    assert scored.startswith("run 1001: 6 scored, ") and "0 already scored" in scored
    assert "6 already scored" in run("reference", "score", "--run", "1001").output


def test_auto_waits_for_a_finished_good_run_and_keeps_the_current_reference(home):
    out = run("reference", "auto", PLOT, "--user", "erin").output
    assert "no run qualifies for an automatic reference yet" in out and "stays none" in out
    assert f"{PLOT}: rule auto" in run("reference", "show", PLOT).output


def test_plot_type_edit_sets_the_reference_alarm_and_quantile(home):
    out = run("plot-type", "edit", PLOT, "--reference-alarm", "--reference-quantile", "0.95").output
    assert "reference alarm on, reference quantile 0.95" in out
    bad = run("plot-type", "edit", PLOT, "--reference-quantile", "1.5", ok=False)
    assert bad.exit_code == 2 and "must be between 0 and 1" in bad.output
    assert "reference alarm on" in run("reference", "show", PLOT).output
