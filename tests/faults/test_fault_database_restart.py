"""Fault 3b in CI — the database server "restarts" mid-run under the real `dagster-daemon run`.

CI cannot stop the shared MariaDB server (other tests use it), so the Hydra database is reached through
`fault_support.RestartableProxy`: taking it down drops every open connection mid-query and refuses new
ones, which is what clients see of a server restart.  (`tests/faults/mariadb_restart.py` restarts the real
server, by hand.)  The predictor is the production default (`auto`: the warm service, which has its own
connections to the database).  Nobody helps after the restart: the sensor's ticks fail while the server is
away and the steps caught by the outage wait for it (`waiting_out_database_outages`).

Checks: every file one image row, one inference, one keep decision; no run failed; a step really was caught
by the outage.  Prints how long after the server's return everything was done (a figure for
docs/reliability.md, not an assertion: timings on shared CI cores are not a test).
"""

from __future__ import annotations

import time

import pytest
from conftest import fresh_mysql_database
from fault_support import (
    PLOT,
    Daemon,
    RestartableProxy,
    all_kept,
    counts,
    dagster_home,
    drop_many,
    runs_by_status,
    runs_settled,
    wait_until,
)
from test_ingest_support import SIZE, activate, model_files  # noqa: F401 - fixture

from hydra_assets import catalog
from hydra_assets.cli.up import stop_predictor
from hydra_assets.db.engine import HydraDB
from hydra_assets.db.migrate import upgrade

pytestmark = [pytest.mark.slow, pytest.mark.mysql]
FILES = 60
OUTAGE_S = 12.0


def test_pipeline_recovers_by_itself_from_a_database_restart(mysql_server, hydra_home, model_files, tmp_path,
                                                              monkeypatch):
    server_url, drop_database = fresh_mysql_database(mysql_server)
    proxy = RestartableProxy().up()
    url = proxy.url(server_url)
    monkeypatch.setenv("HYDRA_DB_URL", url)
    monkeypatch.setenv("HYDRA_PREDICTOR", "auto")
    hydra_home.ensure_folders()
    upgrade(url)
    db = HydraDB(url)
    daemon = None
    try:
        db.write(lambda s: catalog.add_plot_type(s, PLOT, "Good,Bad", "Bad", collect_percent=0.0, input_size=SIZE))
        activate(db, model_files["bad"])  # every image Bad: GradCAM, kept copy and alarm, more writes to lose
        dhome = dagster_home(tmp_path / "dagster")
        daemon = Daemon(dhome, tmp_path / "daemon.log", env={"HYDRA_PREDICTOR": "auto"}).start()
        alive = lambda: daemon.process.poll() is None  # noqa: E731
        drop_many(hydra_home.input_dir, FILES, runs=3)
        wait_until(lambda: counts(db, hydra_home.input_dir).registered > 0, 240, alive=alive)
        before = counts(db, hydra_home.input_dir)

        proxy.down()
        time.sleep(OUTAGE_S)
        proxy.up()

        took = wait_until(lambda: all_kept(db, hydra_home.input_dir, FILES), 240, every=0.5, alive=alive)
        wait_until(lambda: runs_settled(dhome), 120, alive=alive)
        c = counts(db, hydra_home.input_dir)
        runs = runs_by_status(dhome)
        print(f"\nbefore the restart: {before.as_dict()}\nafter: {c.as_dict()}, runs {runs}; "
              f"everything done {took:.1f} s after the server came back (outage {OUTAGE_S:.0f} s)")
        assert before.keep_decisions < FILES, "the chunk was finished before the restart: nothing was tested"
        assert (c.registered, c.inferences, c.keep_decisions) == (FILES, FILES, FILES)
        assert c.duplicates == 0 and c.quarantined == 0 and c.files_left == 0
        assert runs.get("FAILURE", 0) == 0, daemon.tail()
        assert set(runs) == {"SUCCESS"}, runs
        assert "database unavailable" in daemon.tail(10**7), "no step was caught by the outage"
    finally:
        if daemon is not None:
            daemon.stop()
        stop_predictor(hydra_home)  # started detached by a run; the session's sweep only finds SQLite homes
        proxy.down()
        db.dispose()
        drop_database()
