"""`hydra flags` end to end on a small run: compute, show, rules, sign-off, export, and bad input messages."""

from __future__ import annotations

import csv
import io
import json

import pytest
from click.testing import CliRunner
from flags_support import add_run, setup_groups

from hydra_assets.cli import cli

RUN = 301


def hydra(*args: str, code: int = 0):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


@pytest.fixture
def home(sqlite_db):
    setup_groups(sqlite_db)
    add_run(sqlite_db, RUN, range(50), lambda pt, c: "bad" if pt == "A" and c >= 40 else "good")
    add_run(sqlite_db, RUN + 1, range(10), lambda pt, c: "good")
    hydra("flags", "compute", str(RUN), str(RUN + 1))
    return sqlite_db


def test_compute_and_show(home):
    out = hydra("flags", "compute", str(RUN)).output
    assert "run 301: 50 chunks, 150 images" in out
    shown = hydra("flags", "show", str(RUN)).output
    assert "group Tracker: Bad" in shown
    assert "chunks 0-39: Good" in shown and "chunks 40-49: Bad  A Bad in chunks 40-49 (confirmed Bad)" in shown
    data = json.loads(hydra("flags", "show", str(RUN), "--json").output)
    tracker = next(f for f in data if f["group"] == "Tracker")
    assert [(r["first_chunk"], r["last_chunk"], r["flag"]) for r in tracker["ranges"]] == [(0, 39, "Good"),
                                                                                             (40, 49, "Bad")]


def test_rule_set_list_and_recompute(home):
    out = hydra("flags", "rule", "set", "Tracker", "--rule", "consecutive", "--consecutive", "20",
                "--ignore-label", "NoData", "--user", "carol").output
    assert "Bad from 20 Bad chunks in a row; ignoring NoData" in out
    listed = hydra("flags", "rule", "list").output
    assert "Tracker" in listed and "set by carol" in listed and "Detector" in listed and "default" in listed
    hydra("flags", "compute", str(RUN))
    assert "chunks 40-49: Medium" in hydra("flags", "show", str(RUN)).output


def test_signoff_override_then_export(home, tmp_path):
    out = hydra("flags", "signoff", str(RUN), "Tracker", "--override", "Good", "--chunks", "40-44",
                "--comment", "beam tuning", "--user", "carol").output
    assert "chunks 40-44: Bad -> Good (override by carol)" in out
    hydra("flags", "compute", str(RUN))  # the override survives
    assert "chunks 40-44: Good (computed Bad)" in hydra("flags", "show", str(RUN)).output
    golden = tmp_path / "golden.json"
    hydra("flags", "export", "--format", "json", "--group", "Tracker", "--runs", f"{RUN}-{RUN + 1}",
          "--output", str(golden))
    assert json.loads(golden.read_text()) == {str(RUN): [[0, 44]], str(RUN + 1): [[0, 9]]}
    text = hydra("flags", "export", "--format", "csv", "--runs", str(RUN)).output
    rows = list(csv.DictReader(io.StringIO(text)))
    assert any(r["flag"] == "Good" and r["computed_flag"] == "Bad" and r["comment"] == "beam tuning" for r in rows)


@pytest.mark.parametrize(("args", "code", "message"), [
    (["flags", "rule", "set", "Trackr"], 2, "unknown plot group 'Trackr'; known plot groups: Calo, Tracker"),
    (["flags", "rule", "set", "Tracker", "--rule", "bad_share", "--bad-share", "2"], 2,
     "bad share 2.0 is not a share between 0 and 1"),
    (["flags", "rule", "set", "Tracker", "--user", "vic"], 3, "needs 'certify'"),
    (["flags", "signoff", str(RUN), "Tracker", "--override", "Good", "--chunks", "44-40", "--comment", "x",
      "--user", "carol"], 2, "chunk range 44-40 is reversed: write 40-44"),
    (["flags", "signoff", str(RUN), "Tracker", "--override", "Good", "--chunks", "0-10,5-20", "--comment", "x",
      "--user", "carol"], 2, "chunk ranges 0-10 and 5-20 overlap"),
    (["flags", "signoff", str(RUN), "Tracker", "--confirm", "--override", "Good", "--user", "carol"], 2,
     "either --confirm or --override"),
    (["flags", "signoff", str(RUN), "Tracker", "--override", "Good", "--comment", "x", "--user", "vic"], 3,
     "needs 'certify'"),
    (["flags", "signoff", str(RUN), "Nope", "--confirm", "--user", "carol"], 2, "unknown plot group 'Nope'"),
    (["flags", "export", "--format", "json", "--runs", "310-300", "--group", "Tracker"], 2,
     "runs 310-300 is reversed"),
    (["flags", "export", "--format", "json", "--runs", str(RUN)], 2, "name at least one group"),
    (["flags", "show", "999"], 2, "run 999 has no flags yet"),
])
def test_bad_input_gets_a_clear_message(home, args, code, message):
    result = hydra(*args, code=code)
    assert message in result.output
    assert "Traceback" not in result.output
