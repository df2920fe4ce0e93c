"""Connecting to the Hydra database: one code path for SQLite and MySQL/MariaDB.

SQLite runs in WAL mode with a busy timeout so the pages can read while the pipeline writes; MySQL
connections are pinged before use and recycled before the server's `wait_timeout`.  Writes go through
`HydraDB.write(fn)`, which retries the *whole* transaction on deadlocks and lost connections.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

# MySQL/MariaDB error codes worth retrying a whole transaction for.
RETRYABLE_MYSQL_CODES = {
    1205,  # lock wait timeout
    1213,  # deadlock found
    2006,  # server has gone away
    2013,  # lost connection during query
    2014,  # commands out of sync (after a dropped connection)
    2055,  # lost connection (system error)
    1927,  # MariaDB: connection was killed
    1053,  # server shutdown in progress
    4031,  # disconnected by the server because of inactivity
    2003,  # can't connect (server down or restarting)
    2002,  # can't connect through the socket
}
# The subset that means "the server is not there": worth waiting for (a restart), unlike a deadlock.
OUTAGE_MYSQL_CODES = {2002, 2003, 2006, 2013, 2055, 1053}
SQLITE_BUSY_TIMEOUT_MS = 30_000
# MariaDB ends a session of ours that sits idle inside a transaction this long: an open transaction holds
# metadata locks, and every DDL (`hydra init` migrations, DROP) waits behind it with no end otherwise.
IDLE_TRANSACTION_S = 600


def is_retryable(error: BaseException) -> bool:
    """True for errors after which running the same transaction again can succeed."""
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    if not isinstance(error, OperationalError):
        return False
    orig = getattr(error, "orig", None)
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int) and args[0] in RETRYABLE_MYSQL_CODES:
        return True
    message = str(orig or error).lower()
    return "database is locked" in message or "lost connection" in message or "gone away" in message or (
        "can't connect" in message)


class DatabaseUnavailable(RuntimeError):
    """The Hydra database could not be reached (down or restarting): the work can be done again later."""


def is_outage(error: BaseException) -> bool:
    """True when the database server is not there (refused, gone away, shutting down), as opposed to an
    error in the work itself: the pipeline waits and runs its step again instead of failing the chunk."""
    if isinstance(error, DatabaseUnavailable):
        return True
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    if not isinstance(error, OperationalError):
        return False
    args = getattr(getattr(error, "orig", None), "args", ())
    if args and isinstance(args[0], int):
        return args[0] in OUTAGE_MYSQL_CODES
    message = str(error).lower()
    return "can't connect" in message or "lost connection" in message or "gone away" in message


def outage_waits(budget_s: float, *, first_s: float = 2.0, longest_s: float = 30.0) -> list[float]:
    """Seconds to wait before each new attempt while the database is away: doubling from `first_s` up to
    `longest_s`, until together they cover `budget_s` (a server restart takes seconds to a few minutes)."""
    waits: list[float] = []
    wait = first_s
    while sum(waits) < budget_s:
        waits.append(min(wait, longest_s, budget_s - sum(waits)))
        wait *= 2
    return waits


def ensure_sqlite_folder(url: str) -> None:
    """SQLite cannot create the folder of its file; do it for it."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """Create an engine tuned for the backend behind `url` (creating the SQLite folder if needed)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        ensure_sqlite_folder(url)
        engine = create_engine(
            url, echo=echo, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    engine = create_engine(
        url,
        echo=echo,
        pool_pre_ping=True,
        pool_recycle=280,  # below the shortest wait_timeout we expect in production
        pool_size=5,
        max_overflow=10,
        pool_reset_on_return="rollback",  # a connection back in the pool holds no transaction, hence no lock
        isolation_level="READ COMMITTED",  # fewer gap locks, fewer deadlocks between pipeline writers
    )

    @event.listens_for(engine, "connect")
    def _bound_idle_transactions(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        if "mariadb" in str(getattr(dbapi_connection, "get_server_info", lambda: "")()).lower():
            cursor = dbapi_connection.cursor()
            cursor.execute(f"SET SESSION idle_transaction_timeout = {IDLE_TRANSACTION_S}")
            cursor.close()

    return engine


@dataclass(frozen=True)
class LockHolder:
    """A server connection that may hold the locks a DDL statement waits for, as the processlist shows it."""

    id: int
    user: str
    host: str
    db: str | None
    command: str
    time_s: int
    state: str
    info: str | None
    in_transaction_s: int | None  # how long its InnoDB transaction has been open; None: no transaction

    def __str__(self) -> str:
        transaction = "" if self.in_transaction_s is None else f", transaction open {self.in_transaction_s} s"
        return (f"connection id {self.id} {self.user}@{self.host} db={self.db} {self.command} {self.time_s} s"
                f"{transaction}, state {self.state or '-'!r}, statement {self.info or '-'!r}")


def lock_holders(dbapi_connection: Any, database: str) -> list[LockHolder]:
    """Connections on `database` (or holding its metadata locks, where MariaDB's METADATA_LOCK_INFO plugin
    is loaded), those inside a transaction first: who to blame, or KILL, when a DDL waits for a lock."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'information_schema'"
                       " AND table_name = 'METADATA_LOCK_INFO'")
        mdl = bool(cursor.fetchone()[0])
        also = (" OR p.id IN (SELECT thread_id FROM information_schema.metadata_lock_info WHERE table_schema = %s)"
                if mdl else "")
        cursor.execute(
            "SELECT p.id, p.user, p.host, p.db, p.command, p.time, p.state, LEFT(p.info, 300),"
            " TIMESTAMPDIFF(SECOND, t.trx_started, NOW())"
            " FROM information_schema.processlist p"
            " LEFT JOIN information_schema.innodb_trx t ON t.trx_mysql_thread_id = p.id"
            f" WHERE p.id <> CONNECTION_ID() AND (p.db = %s{also})"
            " ORDER BY t.trx_started IS NULL, t.trx_started, p.id", (database, database) if mdl else (database,))
        return [LockHolder(int(r[0]), str(r[1]), str(r[2]), r[3], str(r[4]), int(r[5] or 0), str(r[6] or ""), r[7],
                           None if r[8] is None else int(r[8])) for r in cursor.fetchall()]
    finally:
        cursor.close()


def is_lock_wait_timeout(error: BaseException) -> bool:
    """MySQL/MariaDB error 1205: a lock (row or metadata) was not granted within the session's limit."""
    args = getattr(getattr(error, "orig", error), "args", ())
    return bool(args) and args[0] == 1205


class HydraDB:
    """The Hydra database: sessions for reading, retried transactions for writing."""

    def __init__(self, url: str, *, engine: Engine | None = None) -> None:
        self.url = url
        self.engine = engine or make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for queries; nothing it does is committed."""
        with self.sessions() as session:
            yield session

    def write[T](self, work: Callable[[Session], T], *, attempts: int = 6, what: str = "write") -> T:
        """Run `work(session)` in one transaction, retrying the whole of it on deadlock or lost connection."""
        for attempt in range(1, attempts + 1):
            try:
                with self.sessions.begin() as session:
                    return work(session)
            except (OperationalError, DBAPIError) as error:
                if attempt == attempts or not is_retryable(error):
                    raise
                delay = min(0.05 * 2**attempt, 2.0) * (0.5 + random.random())
                log.warning("%s failed (%s); retrying whole transaction in %.2fs", what, error.orig, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def dispose(self) -> None:
        self.engine.dispose()
