"""Run conditions from CSV, JSON and a URL: merged into runs, bad rows reported by line and the rest
imported, unknown runs created (or skipped), a URL that times out refused within its timeout, and the file
sensor importing again only when the file changed."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from click.testing import CliRunner

from hydra_assets.db.models import Run, utcnow
from hydra_assets.resources.hydra import HydraResource
from hydra_assets.run_conditions import (
    RunConditionsError,
    file_changed,
    import_conditions,
    parse_csv,
    parse_json,
    parse_time,
)

CSV = """run,beam_energy,target,trigger,run_type,start,end
1001,11.6,LH2,physics_v3,production,2026-11-30T08:00:00Z,2026-11-30T10:30:00+01:00
1002,,LD2,,cosmics,,
1003x,10.0,LH2,,,,
1004,10.5,LH2,physics_v3,production,yesterday,
1005,10.5,LH2,physics_v3,production,2026-11-30T10:00:00,2026-11-30T09:00:00
1006,1,2,3,4,5,6,7
"""


def runs_of(db) -> dict[int, Run]:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    with db.read() as s:
        return {r.number: r for r in s.scalars(select(Run))}


def seen_run(db, number: int, conditions: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    now = utcnow()
    db.write(lambda s: s.add(Run(number=number, first_seen=now, last_seen=now, image_count=12, conditions=conditions)))


# ---- parsing -----------------------------------------------------------------------------------------


def test_csv_rows_values_and_problems_by_line():
    rows, problems = parse_csv(CSV)
    by_run = {r.run: r for r in rows}
    assert sorted(by_run) == [1001, 1002, 1004, 1005]
    assert by_run[1001].conditions == {"beam_energy": 11.6, "target": "LH2", "trigger": "physics_v3",
                                       "run_type": "production"}
    assert by_run[1001].started_at == datetime(2026, 11, 30, 8, 0)
    assert by_run[1001].ended_at == datetime(2026, 11, 30, 9, 30)  # +01:00 converted to UTC
    assert by_run[1002].conditions == {"target": "LD2", "run_type": "cosmics"}  # empty cells set nothing
    assert problems == [
        "line 4: run '1003x' is not a run number (row skipped)",
        "line 5: run 1004: start 'yesterday' is not a time (ISO 8601 or Unix seconds)",
        "line 6: run 1005: ends (2026-11-30 09:00:00) before it starts (2026-11-30 10:00:00); times not imported",
        "line 7: 8 values for 7 columns (row skipped)",
    ]
    assert by_run[1004].conditions["beam_energy"] == 10.5 and by_run[1004].started_at is None
    assert by_run[1005].started_at is None and by_run[1005].ended_at is None


def test_csv_with_semicolons_and_a_missing_run_column():
    rows, problems = parse_csv("Run;beam_energy\n7;6.5\n")
    assert [(r.run, r.conditions) for r in rows] == [(7, {"beam_energy": 6.5})] and problems == []
    with pytest.raises(RunConditionsError, match="no 'run' column"):
        parse_csv("beam,target\n1,2\n")


def test_json_forms_and_problems_by_item():
    listed, problems = parse_json(json.dumps([
        {"run": 1, "beam_energy": 11, "polarised": True, "start": 1764489600},
        {"run": 2, "magnet": {"current": 3}, "target": "C12"},
        {"beam_energy": 3},
        "run 4",
    ]))
    assert [(r.run, r.conditions) for r in listed] == [(1, {"beam_energy": 11, "polarised": True}),
                                                      (2, {"target": "C12"})]
    assert listed[0].started_at == datetime(2025, 11, 30, 8, 0)
    assert problems == ["item 2: run 2: value of 'magnet' is not a single text, number or true/false (skipped)",
                        "item 3: no run number (row skipped)", "item 4: not an object of run conditions (skipped)"]
    mapping, _ = parse_json('{"17": {"trigger": "minbias"}, "18": {"trigger": "cosmic", "end": "2026-12-01T06:00"}}')
    assert [(r.run, r.conditions, r.ended_at) for r in mapping] == [
        (17, {"trigger": "minbias"}, None), (18, {"trigger": "cosmic"}, datetime(2026, 12, 1, 6, 0))]
    wrapped, _ = parse_json('{"runs": [{"run_number": "19", "run_type": "test"}]}')
    assert [(r.run, r.conditions) for r in wrapped] == [(19, {"run_type": "test"})]
    with pytest.raises(RunConditionsError, match="not valid JSON: Expecting"):
        parse_json('[{"run": 1,}]')


def test_times():
    assert parse_time("2026-12-01T06:00:00Z") == datetime(2026, 12, 1, 6, 0)
    assert parse_time(1764489600000) == datetime(2025, 11, 30, 8, 0)  # milliseconds
    assert parse_time("soon") is None and parse_time(True) is None


# ---- importing ---------------------------------------------------------------------------------------


def test_import_merges_creates_unknown_runs_and_reports_the_rest(db, tmp_path):
    seen_run(db, 1001, {"beam_energy": 10.0, "shift_leader": "ana"})
    source = tmp_path / "conditions.csv"
    source.write_text(CSV)

    report = import_conditions(db, str(source))

    assert report.updated == [1001] and report.created == [1002, 1004, 1005] and len(report.problems) == 4
    assert report.summary() == (f"{source}: 4 row(s) read, 1 run(s) updated, 3 run(s) not seen yet created "
                                "(1002, 1004, 1005), 4 problem(s)")
    runs = runs_of(db)
    assert runs[1001].conditions == {"beam_energy": 11.6, "shift_leader": "ana", "target": "LH2",
                                     "trigger": "physics_v3", "run_type": "production"}
    assert runs[1001].image_count == 12 and runs[1001].started_at == datetime(2026, 11, 30, 8, 0)
    assert runs[1002].image_count == 0 and runs[1002].conditions == {"target": "LD2", "run_type": "cosmics"}
    assert 1003 not in runs


def test_skip_unknown_runs(db, tmp_path):
    seen_run(db, 1001, {})
    source = tmp_path / "c.json"
    source.write_text(json.dumps([{"run": 1001, "target": "LH2"}, {"run": 9999, "target": "LD2"}]))
    report = import_conditions(db, str(source), unknown="skip")
    assert report.updated == [1001] and report.skipped == [9999] and report.created == []
    assert sorted(runs_of(db)) == [1001]


def test_a_missing_file_is_refused_with_its_name(db, tmp_path):
    with pytest.raises(RunConditionsError, match="nope.csv does not exist"):
        import_conditions(db, str(tmp_path / "nope.csv"))


class Server:
    def __init__(self, body: bytes, status: int = 200) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/rcdb/runs"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def rcdb() -> Iterator[Server]:
    server = Server(json.dumps({"2001": {"beam_energy": 6.5, "run_type": "production"}}).encode())
    yield server
    server.close()


def test_import_from_a_url(db, rcdb):
    report = import_conditions(db, rcdb.url)
    assert report.created == [2001] and report.problems == []
    assert runs_of(db)[2001].conditions == {"beam_energy": 6.5, "run_type": "production"}


def test_a_url_that_times_out_or_fails_is_refused_within_its_timeout(db):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    started = time.monotonic()
    with pytest.raises(RunConditionsError, match="gave no answer within 1 s"):
        import_conditions(db, f"http://127.0.0.1:{listener.getsockname()[1]}/runs", timeout=1)
    assert time.monotonic() - started < 20  # bounded by the 1-s timeout: the listener never answers
    listener.close()
    missing = Server(b"{}", status=404)
    with pytest.raises(RunConditionsError, match="answered HTTP 404"):
        import_conditions(db, missing.url)
    missing.close()
    assert runs_of(db) == {}


# ---- the file sensor -----------------------------------------------------------------------------------


def test_file_changed_rule():
    signature = {"mtime_ns": 10**18, "size": 40}
    now = 10**18 + 5 * 10**9
    assert file_changed(None, signature, now, 1.0)
    assert not file_changed(json.dumps(signature), signature, now, 1.0)
    assert not file_changed(None, signature, 10**18 + 10**8, 1.0)  # written 0.1 s ago: wait
    assert not file_changed(None, None, now, 1.0)


def test_sensor_imports_when_the_file_changes(sqlite_db, hydra_home, tmp_path, monkeypatch):
    from hydra_assets.sensors.run_conditions import run_conditions

    source = tmp_path / "rcdb.csv"
    monkeypatch.setenv("HYDRA_RUN_CONDITIONS_FILE", str(source))
    monkeypatch.setenv("HYDRA_MIN_FILE_AGE_SECONDS", "0")

    def tick(cursor: str | None) -> dg.SensorResult:
        with dg.build_sensor_context(cursor=cursor, resources={"hydra": HydraResource()}) as context:
            return run_conditions(context)

    assert "does not exist" in tick(None).skip_reason.skip_message
    source.write_text("run,target\n5,LH2\n")
    first = tick(None)
    assert "1 run(s) not seen yet created (5)" in first.skip_reason.skip_message
    assert "unchanged" in tick(first.cursor).skip_reason.skip_message
    source.write_text("run,target\n5,LD2\n6,LD2\n")
    os.utime(source, ns=(time.time_ns(), time.time_ns() + 1000))
    second = tick(first.cursor)
    assert "1 run(s) updated" in second.skip_reason.skip_message and second.cursor != first.cursor
    assert {n: r.conditions["target"] for n, r in runs_of(sqlite_db).items()} == {5: "LD2", 6: "LD2"}
    source.write_text("{broken")
    os.utime(source, ns=(time.time_ns(), time.time_ns() + 2000))
    broken = tick(second.cursor)
    assert "not imported" in broken.skip_reason.skip_message and broken.cursor != second.cursor


# ---- the command line ---------------------------------------------------------------------------------


def test_cli_import_list_show(sqlite_db, hydra_home, tmp_path):
    from hydra_assets.cli.runs import runs

    source = tmp_path / "conditions.csv"
    source.write_text(CSV)
    runner = CliRunner()
    imported = runner.invoke(runs, ["import", str(source)])
    assert imported.exit_code == 1  # some rows refused, the rest imported
    assert "line 4: run '1003x' is not a run number" in imported.output
    assert "4 run(s) not seen yet created" in imported.output

    listed = runner.invoke(runs, ["list", "--where", "target=LH2"])
    assert listed.exit_code == 0, listed.output
    assert [line.split()[0] for line in listed.output.splitlines()] == ["1005", "1004", "1001"]
    as_json = json.loads(runner.invoke(runs, ["list", "--format", "json", "--limit", "1"]).output)
    assert [r["run"] for r in as_json] == [1005]

    shown = runner.invoke(runs, ["show", "1001"])
    assert shown.exit_code == 0 and "beam_energy: 11.6" in shown.output and "2026-11-30 08:00:00" in shown.output
    assert runner.invoke(runs, ["show", "77"]).exit_code == 2
    refused = runner.invoke(runs, ["import", str(tmp_path / "missing.json")])
    assert refused.exit_code == 2 and "does not exist" in refused.output


def test_conditions_stay_a_flat_object_of_scalars(db, tmp_path):
    source = tmp_path / "c.json"
    source.write_text(json.dumps([{"run": 1, "a": 1, "b": "x", "c": 1.5, "d": False, "e": [1], "f": None}]))
    import_conditions(db, str(source))
    conditions = runs_of(db)[1].conditions
    assert conditions == {"a": 1, "b": "x", "c": 1.5, "d": False}
    assert all(isinstance(v, str | int | float | bool) for v in conditions.values())


def test_path_is_read_as_given(tmp_path: Path):
    from hydra_assets.run_conditions import read_source

    (tmp_path / "conditions.txt").write_text('[{"run": 1}]')
    assert read_source(str(tmp_path / "conditions.txt"))[1] == "json"  # sniffed


def test_importing_needs_certify(sqlite_db, hydra_home, tmp_path):
    from hydra_assets import catalog
    from hydra_assets.cli.runs import runs

    sqlite_db.write(lambda s: catalog.add_user(s, "vera", role="viewer"))
    sqlite_db.write(lambda s: catalog.add_user(s, "cora", role="coordinator"))
    source = tmp_path / "c.csv"
    source.write_text("run,target\n1,LH2\n")
    refused = CliRunner().invoke(runs, ["import", str(source), "--user", "vera"])
    assert refused.exit_code == 3 and "needs 'certify'" in refused.output
    assert runs_of(sqlite_db) == {}
    done = CliRunner().invoke(runs, ["import", str(source), "--user", "cora"])
    assert done.exit_code == 0, done.output
    assert runs_of(sqlite_db)[1].conditions == {"target": "LH2"}
