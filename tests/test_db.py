"""The Hydra database on SQLite and MariaDB: migrations, engine settings, retried transactions."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError, OperationalError

from hydra_assets import catalog
from hydra_assets.db.engine import DatabaseUnavailable, HydraDB, is_outage, is_retryable, outage_waits
from hydra_assets.db.migrate import current_revision, downgrade, upgrade
from hydra_assets.db.models import Base, Image, Inference, PlotType

PAGE_INDEXES = {
    "images": {"ix_images_labeler_queue", "ix_images_editor", "ix_images_browser_run", "ix_images_received"},
    "inferences": {"ix_inferences_log", "ix_inferences_trend", "ix_inferences_run"},
    "stage_timings": {"ix_stage_timings_stage_time"},
    "label_history": {"ix_label_history_image", "ix_label_history_user_time"},
}


def test_upgrade_from_empty_then_downgrade_and_again(db_url):
    upgrade(db_url)
    assert current_revision(db_url) == "0005"
    db = HydraDB(db_url)
    tables = set(inspect(db.engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    for table, wanted in PAGE_INDEXES.items():
        names = {ix["name"] for ix in inspect(db.engine).get_indexes(table)}
        assert wanted <= names, f"{table} lacks {wanted - names}"
    db.dispose()
    downgrade(db_url)
    db = HydraDB(db_url)
    assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
    db.dispose()
    upgrade(db_url)
    upgrade(db_url)  # idempotent
    assert current_revision(db_url) == "0005"


def test_models_match_migration(db):
    """The migration creates exactly the columns the models declare (no drift)."""
    inspector = inspect(db.engine)
    for table in Base.metadata.sorted_tables:
        declared = {c.name for c in table.columns}
        migrated = {c["name"] for c in inspector.get_columns(table.name)}
        assert declared == migrated, table.name


def test_backend_tuning(db):
    if db.backend == "sqlite":
        with db.engine.connect() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert connection.execute(text("PRAGMA busy_timeout")).scalar() >= 10_000
    else:
        assert db.engine.pool._pre_ping is True
        assert 0 < db.engine.pool._recycle < 28_800


def test_image_identity_is_unique(db):
    def add(session):
        plot = catalog.add_plot_type(session, "FDC_occupancy", "Good,Bad", "Bad")
        for _ in range(2):
            session.add(Image(plot_type_id=plot.id, run_number=1, chunk=1, digest="a" * 64, file_name="f.png"))
            session.flush()

    with pytest.raises(IntegrityError):
        db.write(add)
    with db.read() as s:  # the whole transaction rolled back: not even the plot type stayed
        assert s.scalar(select(PlotType.id)) is None


def test_one_inference_per_image_and_model_version(db):
    def setup(session):
        plot = catalog.add_plot_type(session, "CDC_timing", "Good,Bad", "Bad")
        image = Image(plot_type_id=plot.id, run_number=7, chunk=0, digest="b" * 64, file_name="x.png")
        session.add(image)
        session.flush()
        return plot.id, image.id

    plot_id, image_id = db.write(setup)

    def infer(session, key):
        session.add(Inference(image_id=image_id, plot_type_id=plot_id, run_number=7, chunk=0, model_key=key,
                              weights={"Good": 0.9, "Bad": 0.1}))

    db.write(lambda s: infer(s, "hydra-CDC_timing/1"))
    db.write(lambda s: infer(s, "hydra-CDC_timing/2"))
    with pytest.raises(IntegrityError):
        db.write(lambda s: infer(s, "hydra-CDC_timing/1"))
    with db.read() as s:
        rows = s.scalars(select(Inference).order_by(Inference.id)).all()
        assert [r.model_key for r in rows] == ["hydra-CDC_timing/1", "hydra-CDC_timing/2"]
        assert rows[0].weights == {"Good": 0.9, "Bad": 0.1}


class _FakeDriverError(Exception):
    pass


def _operational(code: int, message: str) -> OperationalError:
    return OperationalError("UPDATE …", {}, _FakeDriverError(code, message))


def test_retryable_errors():
    assert is_retryable(_operational(1213, "Deadlock found when trying to get lock"))
    assert is_retryable(_operational(2013, "Lost connection to MySQL server during query"))
    assert is_retryable(OperationalError("x", {}, Exception("database is locked")))
    assert not is_retryable(_operational(1054, "Unknown column"))
    assert not is_retryable(ValueError("no"))
    assert is_retryable(_operational(2003, "Can't connect to MySQL server on '127.0.0.1'"))


def test_outage_is_the_server_being_away_not_a_conflict():
    """A restart (refused, gone away, shutting down) is waited out; a deadlock or a bad query is not an outage."""
    assert is_outage(_operational(2003, "Can't connect to MySQL server on '127.0.0.1' (111)"))
    assert is_outage(_operational(2006, "MySQL server has gone away"))
    assert is_outage(_operational(1053, "Server shutdown in progress"))
    assert is_outage(DatabaseUnavailable("predictor service: (2003, ...)"))
    assert not is_outage(_operational(1213, "Deadlock found when trying to get lock"))
    assert not is_outage(_operational(1054, "Unknown column"))
    assert not is_outage(OperationalError("x", {}, Exception("database is locked")))
    assert not is_outage(RuntimeError("model file missing"))


def test_outage_waits_cover_the_budget_without_long_gaps():
    waits = outage_waits(300, first_s=1, longest_s=10)
    assert waits[:5] == [1, 2, 4, 8, 10]
    assert sum(waits) == 300 and max(waits) == 10
    assert outage_waits(0) == []
    assert outage_waits(5, first_s=2, longest_s=30) == [2, 3]


def test_write_retries_the_whole_transaction(sqlite_db):
    """A transient failure rolls back everything done so far and runs the work again from the start."""
    attempts = []

    def work(session):
        attempts.append(1)
        catalog.add_plot_type(session, f"P{len(attempts)}", "Good,Bad", "Bad")
        session.flush()
        if len(attempts) < 3:
            raise _operational(1213, "Deadlock found")
        return len(attempts)

    assert sqlite_db.write(work) == 3
    with sqlite_db.read() as s:
        assert s.scalars(select(PlotType.name)).all() == ["P3"]  # P1 and P2 were rolled back


def test_write_gives_up_on_non_retryable(sqlite_db):
    calls = []

    def work(session):
        calls.append(1)
        raise _operational(1054, "Unknown column")

    with pytest.raises(OperationalError):
        sqlite_db.write(work)
    assert len(calls) == 1


@pytest.mark.mysql
def test_killed_connection_is_recovered(mysql_server):
    """KILL of the server-side connection between transactions: the next write reconnects and succeeds."""
    from tests.conftest import fresh_mysql_database

    url, drop = fresh_mysql_database(mysql_server)
    try:
        upgrade(url)
        db = HydraDB(url)
        db.write(lambda s: catalog.add_plot_type(s, "A", "Good,Bad", "Bad"))
        with db.engine.connect() as connection:
            connection_id = connection.execute(text("SELECT CONNECTION_ID()")).scalar()
        import pymysql

        admin = pymysql.connect(host="127.0.0.1", user="root", autocommit=True)
        with admin.cursor() as cursor:
            cursor.execute(f"KILL {int(connection_id)}")
        admin.close()
        db.write(lambda s: catalog.add_plot_type(s, "B", "Good,Bad", "Bad"))
        with db.read() as s:
            assert s.scalars(select(PlotType.name).order_by(PlotType.name)).all() == ["A", "B"]
        db.dispose()
    finally:
        drop()


@pytest.mark.mysql
def test_deadlock_between_writers_is_retried(mysql_server):
    """Two transactions locking rows in opposite order: MariaDB kills one, `write` reruns it, both land."""
    import threading

    from tests.conftest import fresh_mysql_database

    url, drop = fresh_mysql_database(mysql_server)
    try:
        upgrade(url)
        db = HydraDB(url)
        ids = db.write(lambda s: [catalog.add_plot_type(s, n, "Good,Bad", "Bad").id for n in ("A", "B")])
        barrier = threading.Barrier(2, timeout=10)
        attempts = {"x": 0, "y": 0}
        errors: list[BaseException] = []

        def writer(name: str, first: int, second: int) -> None:
            def work(session):
                attempts[name] += 1
                session.get(PlotType, first, with_for_update=True).description = name
                if attempts[name] == 1:
                    barrier.wait()  # both hold their first lock before asking for the second
                session.get(PlotType, second, with_for_update=True).description = name

            try:
                db.write(work, what=f"writer {name}")
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=writer, args=("x", ids[0], ids[1])),
                   threading.Thread(target=writer, args=("y", ids[1], ids[0]))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        assert attempts["x"] + attempts["y"] >= 3  # one of them was retried
        with db.read() as s:
            descriptions = {p.description for p in s.scalars(select(PlotType))}
        assert len(descriptions) == 1 and descriptions <= {"x", "y"}  # the later writer won both rows
        db.dispose()
    finally:
        drop()
