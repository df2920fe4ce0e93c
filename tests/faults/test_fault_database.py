"""Fault 3 — database faults on MariaDB: a `KILL` of the connection in the middle of a transaction, a
connection dropped by a short `wait_timeout` while idle in the pool, forced deadlocks between concurrent
writers, and a `KILL` inside the pipeline's own inference write.  `HydraDB.write` runs the whole transaction
again; nothing is lost, nothing is written twice.  (A server restart is `mariadb_restart.py`, run by hand.)
"""

from __future__ import annotations

import threading
import time

import pymysql
import pytest
from conftest import fresh_mysql_database
from sqlalchemy import func, select, text
from test_ingest_support import model_files  # noqa: F401 - fixture

from hydra_assets import catalog
from hydra_assets.db.engine import HydraDB
from hydra_assets.db.migrate import upgrade
from hydra_assets.db.models import Heartbeat, Image, Inference, KeepDecision

pytestmark = [pytest.mark.mysql]


def admin() -> pymysql.connections.Connection:
    return pymysql.connect(host="127.0.0.1", port=3306, user="root", autocommit=True)


def kill(connection_id: int) -> None:
    with admin() as connection, connection.cursor() as cursor:
        cursor.execute(f"KILL {int(connection_id)}")


@pytest.fixture
def maria(mysql_server):
    url, drop = fresh_mysql_database(mysql_server)
    upgrade(url)
    db = HydraDB(url)
    yield db
    db.dispose()
    drop()


def test_killed_connection_mid_transaction_runs_the_whole_transaction_again(maria):
    attempts = []

    def work(session):  # type: ignore[no-untyped-def]
        attempts.append(1)
        session.add(Heartbeat(stage="first", detail="written before the kill"))
        session.flush()
        if len(attempts) == 1:
            kill(session.execute(text("SELECT CONNECTION_ID()")).scalar_one())
        session.add(Heartbeat(stage="second", detail="written after the kill"))
        session.flush()
        return len(attempts)

    assert maria.write(work, what="killed write") == 2
    with maria.read() as s:
        assert sorted(s.scalars(select(Heartbeat.stage))) == ["first", "second"]  # once each, nothing half


def test_connection_dropped_by_a_short_wait_timeout_is_replaced(maria):
    with maria.engine.connect() as connection:  # this pooled connection will be timed out by the server
        connection.execute(text("SET SESSION wait_timeout = 1"))
        old_id = connection.execute(text("SELECT CONNECTION_ID()")).scalar_one()
    time.sleep(2.5)
    maria.write(lambda s: s.add(Heartbeat(stage="after-timeout", detail="")), what="after wait_timeout")
    with maria.engine.connect() as connection:
        assert connection.execute(text("SELECT CONNECTION_ID()")).scalar_one() != old_id
    with maria.read() as s:
        assert s.scalar(select(func.count()).select_from(Heartbeat)) == 1


def test_forced_deadlocks_between_concurrent_writers_are_retried(maria):
    maria.write(lambda s: s.add_all([Heartbeat(stage="a", detail="0"), Heartbeat(stage="b", detail="0")]))
    rounds = 5
    barrier = threading.Barrier(2)
    tries = {"ab": 0, "ba": 0}
    errors: list[BaseException] = []

    def writer(first: str, second: str) -> None:
        key = first + second
        for _ in range(rounds):
            state = {"waited": False}

            def work(session, state=state):  # type: ignore[no-untyped-def]
                tries[key] += 1
                row = session.get(Heartbeat, first, with_for_update=True)
                row.detail = str(int(row.detail) + 1)
                session.flush()
                if not state["waited"]:  # both hold their first row: each now wants the other's
                    state["waited"] = True
                    try:
                        barrier.wait(timeout=10)
                    except threading.BrokenBarrierError:
                        pass
                other = session.get(Heartbeat, second, with_for_update=True)
                other.detail = str(int(other.detail) + 1)
                session.flush()

            try:
                maria.write(work, what=f"deadlock {key}", attempts=8)
            except BaseException as error:
                errors.append(error)
                barrier.abort()
                return
            barrier.reset() if barrier.broken else None

    threads = [threading.Thread(target=writer, args=("a", "b")), threading.Thread(target=writer, args=("b", "a"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    retried = tries["ab"] + tries["ba"] - 2 * rounds
    assert retried >= 1, "no deadlock happened: the test did not test anything"
    with maria.read() as s:
        values = {row.stage: int(row.detail) for row in s.scalars(select(Heartbeat))}
    assert values == {"a": 2 * rounds, "b": 2 * rounds}  # every committed increment exactly once
    print(f"\ndeadlock retries: {retried} over {2 * rounds} transactions")


@pytest.mark.slow
def test_pipeline_survives_a_kill_inside_its_inference_write(mysql_server, hydra_home, monkeypatch, model_files):
    """A live chunk on MariaDB; the connection is KILLed in the middle of Predict's transaction."""
    import dagster as dg
    from test_ingest_support import PLOT, SIZE, activate, drop, png_bytes, run_request, tick

    url, drop_database = fresh_mysql_database(mysql_server)
    monkeypatch.setenv("HYDRA_DB_URL", url)
    hydra_home.ensure_folders()
    upgrade(url)
    db = HydraDB(url)
    try:
        db.write(lambda s: catalog.add_plot_type(s, PLOT, "Good,Bad", "Bad", collect_percent=0.0, input_size=SIZE))
        activate(db, model_files["good"])
        for chunk in range(30):
            drop(hydra_home.input_dir, f"{PLOT}-42-{chunk:04d}.png", png_bytes(chunk, size=(16, 16)))

        killed = []
        original = HydraDB.write

        def write(self, work, *, attempts=6, what="write"):  # type: ignore[no-untyped-def]
            if not what.startswith("record inferences") or killed:
                return original(self, work, attempts=attempts, what=what)

            def sabotaged(session):  # type: ignore[no-untyped-def]
                if not killed:
                    session.execute(select(func.count(Inference.id)))
                    killed.append(session.execute(text("SELECT CONNECTION_ID()")).scalar_one())
                    kill(killed[0])
                return work(session)

            return original(self, sabotaged, attempts=attempts, what=what)

        monkeypatch.setattr(HydraDB, "write", write)
        instance = dg.DagsterInstance.ephemeral()
        (request,) = tick(instance).run_requests
        assert run_request(instance, request).success
        assert killed, "the fault was not injected"
        with db.read() as s:
            assert s.scalar(select(func.count(Image.id))) == 30
            assert s.scalar(select(func.count(Inference.id))) == 30
            assert s.scalar(select(func.count(func.distinct(Inference.image_id)))) == 30
            assert s.scalar(select(func.count(KeepDecision.id))) == 30
    finally:
        db.dispose()
        drop_database()
