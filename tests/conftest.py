"""Shared fixtures: a Hydra home in tmp_path, and databases on SQLite and on the MariaDB server."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hydra_assets.db.engine import HydraDB
from hydra_assets.db.migrate import upgrade
from hydra_assets.settings import HydraSettings, load_settings

MYSQL_SERVER = os.environ.get("HYDRA_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306")
ENV_KEYS = ("HYDRA_DB_URL", "MLFLOW_TRACKING_URI", "DAGSTER_HOME", "HYDRA_INPUT_DIR", "HYDRA_IMAGES_DIR",
            "HYDRA_KEPT_DIR", "HYDRA_QUARANTINE_DIR", "HYDRA_GRADCAM_DIR", "HYDRA_MODELS_DIR")


SLOW_TEST_TIMEOUT_S = 900  # the `timeout` in pyproject.toml (300 s) is for tests not marked as below
LONG_MARKERS = ("slow", "ui", "distributed")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow, UI and distributed tests get a longer bound unless they carry their own `timeout` marker."""
    for item in items:
        if any(item.get_closest_marker(m) for m in LONG_MARKERS) and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TEST_TIMEOUT_S))


def _mysql_available() -> str | None:
    """None when the server answers, else the reason."""
    try:
        import pymysql

        connection = pymysql.connect(host="127.0.0.1", port=3306, user="root", connect_timeout=3)
        connection.close()
        return None
    except Exception as error:
        return str(error)


@pytest.fixture(scope="session")
def mysql_server() -> str:
    """The MariaDB server URL; skips locally when it is down, fails under CI (it must be there)."""
    reason = _mysql_available()
    if reason:
        message = f"MariaDB at 127.0.0.1:3306 unreachable: {reason}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return MYSQL_SERVER


class DropBlocked(RuntimeError):
    """A test database could not be dropped at once: a connection held a lock on it (named in the message)."""


def fresh_mysql_database(server: str, *, prefix: str = "hydra_test", lock_wait_s: int = 30
                         ) -> tuple[str, Callable[[], None]]:
    """A new, empty MariaDB database and the function that drops it.

    The DROP waits at most `lock_wait_s` for its metadata lock (the server's default is a day): a connection
    left inside an open transaction then fails the teardown with that connection named, is killed, and the
    database is dropped all the same, instead of hanging the suite."""
    import pymysql

    from hydra_assets.db.engine import lock_holders

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    connection = pymysql.connect(host="127.0.0.1", port=3306, user="root", autocommit=True)
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")

    def drop() -> None:
        connection.ping(reconnect=True)  # the server may have been restarted meanwhile (fault scripts)
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"SET SESSION lock_wait_timeout = {lock_wait_s}")
                try:
                    cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
                    return
                except pymysql.err.OperationalError as error:
                    if error.args[0] != 1205:  # lock wait timeout
                        raise
                    holders = lock_holders(connection, name)
                    for holder in holders:
                        try:
                            cursor.execute(f"KILL {holder.id}")
                        except pymysql.err.OperationalError:
                            pass  # gone meanwhile
                    cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
                    raise DropBlocked(
                        f"DROP DATABASE {name} waited {lock_wait_s} s for a lock held by: "
                        + ("; ".join(map(str, holders)) or "nobody left on it")
                        + " — killed, and the database dropped; find who left that transaction open") from error
        finally:
            connection.close()

    return f"{server}/{name}?charset=utf8mb4", drop


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database (no schema) on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hydra.db'}"
        return
    server = request.getfixturevalue("mysql_server")
    url, drop = fresh_mysql_database(server)
    yield url
    drop()


@pytest.fixture
def db(db_url: str) -> Iterator[HydraDB]:
    """The Hydra database with the schema migrated to head, on SQLite and on MariaDB."""
    upgrade(db_url)
    database = HydraDB(db_url)
    yield database
    database.dispose()


@pytest.fixture
def hydra_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HydraSettings:
    """A Hydra home in tmp_path with every location at its embedded default."""
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HYDRA_HOME", str(tmp_path / "home"))
    return load_settings()


@pytest.fixture
def sqlite_db(hydra_home: HydraSettings) -> Iterator[HydraDB]:
    """A migrated SQLite Hydra database inside `hydra_home` (for tests that are not about the backend)."""
    upgrade(hydra_home.db_url)
    database = HydraDB(hydra_home.db_url)
    yield database
    database.dispose()


@pytest.fixture(scope="session", autouse=True)
def no_predictor_survives(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Predictor services started by tests run detached (as in production); stop those of this session."""
    yield
    from hydra_assets.cli.up import stop_predictor

    base = tmp_path_factory.getbasetemp()
    for home in {p.parent for p in base.rglob("hydra.db")}:
        stop_predictor(load_settings(home=home), grace=5.0)
