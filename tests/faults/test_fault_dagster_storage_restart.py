"""Fault 3d in CI — the MariaDB server restarts under Dagster's own storage (issue 17, item 2).

Dagster's run, event-log and schedule storage (dagster-mysql, deploy/dagster-mysql.yaml with its
`mysql_url` form) and the Hydra database both sit on fresh MariaDB databases reached through
`fault_support.RestartableProxy`; the real `dagster-daemon run` ingests while "the server" is away for
`OUTAGE_S` seconds.  Nobody helps afterwards.

Checks: every file one image row, one inference, one keep decision; no failed run (or each failed run
retried to success); the daemon process still alive and all its daemons heartbeating after the restart;
the sensor ticking again: files dropped after the restart are classified too.  Prints the daemon log's
errors during the outage and how long recovery took (figures for docs/reliability.md).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path

import pytest
import yaml
from conftest import fresh_mysql_database
from fault_support import (
    PLOT,
    REPO,
    Daemon,
    RestartableProxy,
    all_kept,
    counts,
    dagster_home,
    drop_many,
    runs_settled,
    wait_until,
)
from test_ingest_support import SIZE, activate, model_files  # noqa: F401 - fixture

from hydra_assets import catalog
from hydra_assets.cli.up import stop_predictor
from hydra_assets.db.engine import HydraDB
from hydra_assets.db.migrate import upgrade

pytestmark = [pytest.mark.slow, pytest.mark.mysql]
FILES, LATE_FILES = 60, 20
OUTAGE_S = float(os.environ.get("HYDRA_FAULT_OUTAGE_S", "15"))  # longer by hand


def dagster_mysql_yaml(path, url: str):  # type: ignore[no-untyped-def]
    """deploy/dagster-mysql.yaml with its storage given as one `mysql_url` (the proxy's)."""
    config = yaml.safe_load((REPO / "deploy" / "dagster-mysql.yaml").read_text())
    config["storage"] = {"mysql": {"mysql_url": url}}
    path.write_text(yaml.safe_dump(config))
    return path


def failed_runs_without_a_successful_retry(home) -> list[str]:  # type: ignore[no-untyped-def]
    from dagster import DagsterInstance

    with DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
    succeeded_from = {r.tags.get("dagster/root_run_id") for r in runs if r.status.value == "SUCCESS"}
    return [r.run_id for r in runs if r.status.value == "FAILURE" and r.run_id not in succeeded_from
            and r.tags.get("dagster/root_run_id", r.run_id) not in succeeded_from]


def failure_reasons(home) -> list[str]:  # type: ignore[no-untyped-def]
    """Why the failed runs failed (their RUN_FAILURE message and the first failed step's error)."""
    from dagster import DagsterEventType, DagsterInstance

    reasons = []
    with DagsterInstance.from_config(str(home)) as instance:
        for run in instance.get_runs():
            if run.status.value != "FAILURE":
                continue
            events = instance.all_logs(run.run_id, of_type={DagsterEventType.RUN_FAILURE,
                                                            DagsterEventType.STEP_FAILURE})
            text = " / ".join((e.dagster_event.message or "")[:200] for e in events if e.dagster_event)
            reasons.append(f"{run.run_id[:8]} (retried: {run.tags.get('dagster/will_retry')}): {text}")
    return reasons


def log_summary(text: str) -> list[str]:
    """The daemon log's own lines (colours stripped; not tracebacks, DEBUG or routine INFO), counted."""
    import re
    from collections import Counter

    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    lines = Counter(line[26:200] for line in plain.splitlines()
                    if line[:4].isdigit() and (" - ERROR - " in line or " - WARNING - " in line
                                               or "MonitoringDaemon" in line) and "reference score" not in line)
    return [f"{n} x {line}" for line, n in lines.most_common(25)]


def daemon_health(home) -> tuple[dict[str, float], dict]:  # type: ignore[no-untyped-def]
    """Last heartbeat time of each daemon, and the run statuses."""
    from collections import Counter

    from dagster import DagsterInstance

    with DagsterInstance.from_config(str(home)) as instance:
        beats = {kind: beat.timestamp for kind, beat in instance.get_daemon_heartbeats().items()}
        return beats, dict(Counter(r.status.value for r in instance.get_runs()))


def incoming_ticks_since(home, since: float) -> list:  # type: ignore[no-untyped-def]
    from dagster import DagsterInstance

    with DagsterInstance.from_config(str(home)) as instance:
        states = [s for s in instance.all_instigator_state() if s.name == "incoming_images"]
        ticks = instance.get_ticks(states[0].instigator_origin_id, states[0].selector_id, limit=500)
    return [t for t in ticks if t.timestamp > since]


@pytest.mark.timeout(720)
def test_pipeline_recovers_by_itself_when_dagster_storage_restarts(mysql_server, hydra_home, model_files, tmp_path,
                                                                    monkeypatch):
    hydra_url, drop_hydra = fresh_mysql_database(mysql_server, prefix="hydra_faults")
    dagster_url, drop_dagster = fresh_mysql_database(mysql_server, prefix="hydra_faults")
    proxy = RestartableProxy().up()
    url = proxy.url(hydra_url)
    storage_url = proxy.url(dagster_url).replace("mysql+pymysql://", "mysql+mysqlconnector://").split("?")[0]
    monkeypatch.setenv("HYDRA_DB_URL", url)
    monkeypatch.setenv("HYDRA_PREDICTOR", "auto")
    hydra_home.ensure_folders()
    upgrade(url)
    db = HydraDB(url)
    daemon = None
    try:
        db.write(lambda s: catalog.add_plot_type(s, PLOT, "Good,Bad", "Bad", collect_percent=0.0, input_size=SIZE))
        activate(db, model_files["bad"])
        dhome = dagster_home(tmp_path / "dagster", dagster_mysql_yaml(tmp_path / "dagster.yaml", storage_url))
        daemon = Daemon(dhome, tmp_path / "daemon.log", env={"HYDRA_PREDICTOR": "auto"}).start()
        alive = lambda: daemon.process.poll() is None  # noqa: E731
        folder = hydra_home.input_dir
        drop_many(folder, FILES, runs=3)
        wait_until(lambda: counts(db, folder).registered > 0, 240, alive=alive)
        before = counts(db, folder)
        log_before = len(daemon.tail(10**8))

        proxy.down()
        time.sleep(OUTAGE_S)
        proxy.up()
        back = time.time()

        took = wait_until(lambda: all_kept(db, folder, FILES), 300, every=0.5, alive=alive)
        # the sensor ticks again: files dropped now (new run numbers) are classified too
        drop_many(folder, LATE_FILES, runs=2, first_run=122000, seed=7)
        late = wait_until(lambda: all_kept(db, folder, FILES + LATE_FILES), 300, every=0.5, alive=alive)
        wait_until(lambda: runs_settled(dhome), 180, alive=alive)
        # every daemon beats at least every 30 s (Dagster's heartbeat interval): wait for one beat of each
        # after the restart, bounded, instead of a fixed pause that a fast recovery made too short
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: all(at >= back for at in daemon_health(dhome)[0].values()), 90, every=2.0, alive=alive)
        beats, runs = daemon_health(dhome)
        c = counts(db, folder)
        outage_log = daemon.tail(10**8)[log_before:]
        if os.environ.get("HYDRA_KEEP_LOGS"):
            shutil.copyfile(daemon.log, Path(os.environ["HYDRA_KEEP_LOGS"]) / "dagster-storage-restart-daemon.log")
        print(f"\nbefore the restart: {before.as_dict()}\nafter: {c.as_dict()}, runs {runs}; first {FILES} files done "
              f"{took:.1f} s after the server came back (outage {OUTAGE_S:.0f} s), {LATE_FILES} late files "
              f"{late:.1f} s after being dropped\nfailed runs: {failure_reasons(dhome)}\ndaemon log from the outage "
              f"on ({outage_log.count('Traceback')} tracebacks):\n  " + "\n  ".join(log_summary(outage_log)))
        assert before.keep_decisions < FILES, "the work was finished before the restart: nothing was tested"
        total = FILES + LATE_FILES
        assert (c.registered, c.inferences, c.keep_decisions) == (total, total, total)
        assert c.duplicates == 0 and c.quarantined == 0 and c.files_left == 0
        assert failed_runs_without_a_successful_retry(dhome) == [], (runs, daemon.tail())
        assert alive(), daemon.tail()
        stale = {kind: round(back - at) for kind, at in beats.items() if at < back}
        assert beats and not stale, f"daemons with no heartbeat since the restart: {stale}"
        ticks = incoming_ticks_since(dhome, back)
        assert any(t.status.value == "SUCCESS" and t.run_ids for t in ticks), [t.status for t in ticks]
    finally:
        if daemon is not None:
            daemon.stop()
        stop_predictor(hydra_home)
        proxy.down()
        db.dispose()
        drop_hydra()
        drop_dagster()
