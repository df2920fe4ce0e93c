"""Alembic migrations run programmatically, so `hydra init` needs no alembic.ini in the working folder.

On MySQL/MariaDB a migration waits at most `MIGRATION_LOCK_WAIT_S` for a lock (the server's default is a
day): a connection idle inside an open transaction holds a metadata lock that every ALTER TABLE waits for,
and `hydra init` then fails naming that connection instead of hanging.
"""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATION_LOCK_WAIT_S = int(os.environ.get("HYDRA_MIGRATION_LOCK_WAIT_SECONDS", "60"))
IDLE_S = 5  # a session asleep this long inside a transaction is not about to commit


class MigrationBlocked(RuntimeError):
    """A migration could not get a lock in time; the message names the connections that held one."""


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head", *, lock_wait_s: int | None = None) -> None:
    """Bring the schema at `url` up to `revision` (idempotent)."""
    from sqlalchemy import create_engine, pool, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    from hydra_assets.db.engine import ensure_sqlite_folder, is_lock_wait_timeout, lock_holders

    ensure_sqlite_folder(url)
    if make_url(url).get_backend_name() != "mysql":
        command.upgrade(alembic_config(url), revision)
        return
    wait = MIGRATION_LOCK_WAIT_S if lock_wait_s is None else lock_wait_s
    database = make_url(url).database or ""
    engine = create_engine(url, poolclass=pool.NullPool)

    def blocked(holders: list, how: str) -> MigrationBlocked:
        return MigrationBlocked(
            f"the migration of database {database!r} {how}: "
            + ("; ".join(map(str, holders)) or "a connection gone meanwhile (run `hydra init` again)")
            + ". End that transaction (or KILL the connection) and run `hydra init` again.")

    try:
        try:
            with engine.connect() as connection:
                connection.execute(text(f"SET SESSION lock_wait_timeout = {int(wait)}"))
                config = alembic_config(url)
                if _pending(connection, config, revision):
                    # MySQL DDL is not transactional: a migration stopped half-way by a lock leaves half a
                    # schema, so refuse before the first statement while a session sits in a transaction
                    idle = [h for h in lock_holders(connection.connection.dbapi_connection, database)
                            if h.in_transaction_s is not None and h.command == "Sleep" and h.time_s >= IDLE_S]
                    if idle:
                        raise blocked(idle, "would wait for sessions idle inside a transaction")
                connection.commit()  # so that alembic begins (and commits) its own transaction
                config.attributes["connection"] = connection  # env.py migrates on this session
                command.upgrade(config, revision)
                connection.commit()
        except OperationalError as error:
            if not is_lock_wait_timeout(error):
                raise
            with engine.connect() as connection:
                holders = lock_holders(connection.connection.dbapi_connection, database)
            raise blocked(holders, f"waited {wait} s for a lock held by") from error
    finally:
        engine.dispose()


def _pending(connection, config: Config, revision: str) -> bool:  # type: ignore[no-untyped-def]
    """True when the schema is not at `revision` yet (so the upgrade will run DDL)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    current = MigrationContext.configure(connection).get_current_revision()
    if revision != "head":
        return True
    return current != ScriptDirectory.from_config(config).get_current_head()


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)


def current_revision(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
