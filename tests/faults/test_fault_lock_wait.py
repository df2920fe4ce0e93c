"""No hangs: nothing the suite or the pipeline leaves behind may hold MariaDB locks that DDL then waits on.

The 8-minute hang in the teardown of test_fault_database_restart.py (issue 17): `DROP DATABASE` waited on
a metadata lock of a server connection that slept inside an open transaction.  Its client had died
mid-transaction (the daemon's process group is killed at teardown), but `RestartableProxy` closed the two
sockets of that connection without shutting them down while its other pump thread was still blocked in
`recv()` on the server side: Linux keeps a socket open while a thread is inside a call on it, so the server
never saw the client go and kept the transaction, and its locks, until the test process ended.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pymysql
import pytest
from conftest import DropBlocked, fresh_mysql_database
from fault_support import RestartableProxy
from sqlalchemy import select, text

from hydra_assets.db.engine import HydraDB, lock_holders
from hydra_assets.db.migrate import upgrade
from hydra_assets.db.models import PlotType

pytestmark = [pytest.mark.mysql]
LOCK_WAIT_S = 5

# A client that reads inside a transaction (the MDL is held) and then waits to be killed.
CLIENT = """
import sys, time, pymysql
c = pymysql.connect(host="127.0.0.1", port=int(sys.argv[1]), user="root", database=sys.argv[2], autocommit=False)
with c.cursor() as cur:
    cur.execute("SELECT COUNT(*) FROM plot_types")
print("in transaction", flush=True)
time.sleep(600)
"""


def _database(url: str) -> str:
    return url.rsplit("/", 1)[1].split("?")[0]


def _ddl(database: str, statement: str) -> float:
    """Run `statement` with a lock wait limit; seconds it took."""
    connection = pymysql.connect(host="127.0.0.1", port=3306, user="root", database=database, autocommit=True)
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"SET SESSION lock_wait_timeout = {LOCK_WAIT_S}")
            started = time.monotonic()
            cursor.execute(statement)
            return time.monotonic() - started
    finally:
        connection.close()


@pytest.fixture
def migrated(mysql_server):
    url, drop = fresh_mysql_database(mysql_server, prefix="hydra_faults")
    upgrade(url)
    yield url
    drop()


def test_client_killed_mid_transaction_through_the_proxy_leaves_no_lock(migrated):
    proxy = RestartableProxy().up()
    client = subprocess.Popen([sys.executable, "-c", CLIENT, str(proxy.port), _database(migrated)],
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert client.stdout.readline().strip() == "in transaction"
        os.killpg(client.pid, signal.SIGKILL)  # as daemon.stop() kills a run worker mid-transaction
        client.wait(timeout=10)
        # the server must see the client go: its transaction rolled back, the DDL gets its lock at once
        took = _ddl(_database(migrated), "ALTER TABLE plot_types ADD COLUMN lock_probe INT NULL")
        assert took < LOCK_WAIT_S
    finally:
        if client.poll() is None:
            os.killpg(client.pid, signal.SIGKILL)
        proxy.down()


def test_proxy_down_mid_transaction_ends_the_server_side_too(migrated):
    proxy = RestartableProxy().up()
    connection = pymysql.connect(host="127.0.0.1", port=proxy.port, user="root", database=_database(migrated),
                                 autocommit=False)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM plot_types")
        proxy.down()  # "the server restarts": the transaction must not outlive it on the real server
        took = _ddl(_database(migrated), "ALTER TABLE plot_types ADD COLUMN lock_probe INT NULL")
        assert took < LOCK_WAIT_S
    finally:
        connection.close()
        proxy.down()


def test_hydra_reads_end_their_transaction(migrated):
    """After `db.read()` (and a pooled connection kept for the next one) DDL does not wait."""
    db = HydraDB(migrated)
    try:
        with db.read() as s:
            s.scalar(select(PlotType.id).limit(1))
        with db.engine.connect() as connection:  # a pooled connection, returned without commit or rollback
            connection.execute(text("SELECT COUNT(*) FROM plot_types"))
        assert db.engine.pool.checkedin() >= 1
        took = _ddl(_database(migrated), "ALTER TABLE plot_types ADD COLUMN lock_probe INT NULL")
        assert took < LOCK_WAIT_S
    finally:
        db.dispose()


def test_a_blocked_drop_fails_fast_and_names_the_connection(mysql_server):
    url, drop = fresh_mysql_database(mysql_server, prefix="hydra_faults", lock_wait_s=2)
    upgrade(url)
    holder = pymysql.connect(host="127.0.0.1", port=3306, user="root", database=_database(url), autocommit=False)
    try:
        with holder.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM plot_types /* the culprit */")
            cursor.execute("SELECT CONNECTION_ID()")
            holder_id = cursor.fetchone()[0]
        observer = pymysql.connect(host="127.0.0.1", port=3306, user="root")
        try:
            holders = lock_holders(observer, _database(url))
        finally:
            observer.close()
        assert [h.id for h in holders] == [holder_id] and holders[0].in_transaction_s is not None
        started = time.monotonic()
        with pytest.raises(DropBlocked) as blocked:
            drop()
        message = str(blocked.value)
        assert time.monotonic() - started < 30
        assert f"id {holder_id}" in message and "root@" in message and "Sleep" in message
    finally:
        holder.close()
    # the teardown killed the culprit and dropped the database all the same
    check = pymysql.connect(host="127.0.0.1", port=3306, user="root")
    with check.cursor() as cursor:
        assert cursor.execute("SHOW DATABASES LIKE %s", (_database(url),)) == 0
    check.close()


def test_a_blocked_migration_fails_fast_and_names_the_connection(mysql_server):
    from hydra_assets.db.migrate import MigrationBlocked, current_revision, downgrade

    url, drop = fresh_mysql_database(mysql_server, prefix="hydra_faults")
    try:
        upgrade(url)
        head = current_revision(url)
        downgrade(url, "-1")  # the last migration is then to run again, behind a lock
        holder = pymysql.connect(host="127.0.0.1", port=3306, user="root", database=_database(url),
                                 autocommit=False)
        try:
            with holder.cursor() as cursor:  # a read inside a transaction: metadata locks on every table read
                for (table,) in list(_tables(url)):
                    cursor.execute(f"SELECT 1 FROM `{table}` LIMIT 1")
                cursor.execute("SELECT CONNECTION_ID()")
                holder_id = cursor.fetchone()[0]
            time.sleep(6)  # idle inside its transaction
            started = time.monotonic()
            with pytest.raises(MigrationBlocked) as blocked:
                upgrade(url, lock_wait_s=2)
            assert time.monotonic() - started < 30
            assert f"connection id {holder_id} root@" in str(blocked.value), blocked.value
            assert current_revision(url) != head  # refused before its first statement: nothing half-done
        finally:
            holder.close()
        upgrade(url, lock_wait_s=2)  # once the transaction is gone the migration runs
        assert current_revision(url) == head
    finally:
        drop()


def _tables(url: str) -> list[tuple[str]]:
    connection = pymysql.connect(host="127.0.0.1", port=3306, user="root", database=_database(url))
    try:
        with connection.cursor() as cursor:
            cursor.execute("SHOW TABLES")
            return [row for row in cursor.fetchall() if row[0] != "alembic_version"]
    finally:
        connection.close()


def test_a_migration_that_meets_a_lock_midway_stops_after_its_lock_wait(mysql_server, monkeypatch):
    from hydra_assets.db import migrate

    monkeypatch.setattr(migrate, "IDLE_S", 10**6)  # no refusal up front: the ALTER itself waits
    url, drop = fresh_mysql_database(mysql_server, prefix="hydra_faults")
    try:
        upgrade(url)
        migrate.downgrade(url, "-1")
        holder = pymysql.connect(host="127.0.0.1", port=3306, user="root", database=_database(url),
                                 autocommit=False)
        try:
            with holder.cursor() as cursor:
                for (table,) in _tables(url):
                    cursor.execute(f"SELECT 1 FROM `{table}` LIMIT 1")
                cursor.execute("SELECT CONNECTION_ID()")
                holder_id = cursor.fetchone()[0]
            with pytest.raises(migrate.MigrationBlocked, match=f"waited 2 s for a lock held by: connection id "
                                                                f"{holder_id} root@"):
                upgrade(url, lock_wait_s=2)
        finally:
            holder.close()
    finally:
        drop()
