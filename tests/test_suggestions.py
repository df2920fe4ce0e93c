"""Retraining suggestions counted from the database (hydra_assets/suggestions.py).

A plot type whose active model expects 1 % novel and 5 % unconfirmed images (its training metrics) meets a
run where most images are novel, and a run that looks like its validation: only the first is suggested,
and its queue lists the novel images, unlabeled first.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import case, event, func, select
from sqlalchemy.orm import Session

from hydra_assets import catalog
from hydra_assets.db.engine import HydraDB
from hydra_assets.db.models import Image, Inference, Model, PlotType, utcnow
from hydra_assets.ml.active import mark_active
from hydra_assets.scores.suggestions import RunShares, suggest
from hydra_assets.suggestions import (
    _novel_clause,
    active_models,
    expected_shares,
    retraining_suggestions,
    run_shares,
    suggested_images,
)

PLOT = "RF_FDC"
METRICS = {"novelty": {"validation_rate": 0.01, "limit": 0.3},
           "validation": {"unconfirmed_rate": 0.05}}


def add_model(session: Session, version: str, *, metrics: dict | None = None, active: bool = True,
              plot_type: str = PLOT) -> Model:
    plot = catalog.get_plot_type(session, plot_type)
    model = Model(plot_type_id=plot.id, mlflow_name=f"hydra-{plot_type}", mlflow_version=version, topology="compact",
                  input_height=32, input_width=32, label_names=["Good", "Bad"], metrics=metrics or {})
    session.add(model)
    session.flush()
    if active:
        mark_active(session, model, by="test")
    return model


def add_inference(session: Session, model: Model, run: int, chunk: int, *, novelty: float | None,
                  confirmed: bool, labeled: bool = False, limit: float | None = 0.3, age_days: float = 0,
                  status: str = "classified") -> int:
    plot = session.get(PlotType, model.plot_type_id)
    assert plot is not None
    good = next(lab for lab in catalog.labels_of(session, plot) if lab.name == "Good")
    image = Image(plot_type_id=plot.id, run_number=run, chunk=chunk, digest=f"{run}-{chunk}-{model.id}",
                  file_name=f"{plot.name}_{run}_{chunk}.png", label_id=good.id if labeled else None)
    session.add(image)
    session.flush()
    session.add(Inference(image_id=image.id, plot_type_id=plot.id, run_number=run, chunk=chunk, model_id=model.id,
                          model_key=model.key, weights={"Good": 0.9, "Bad": 0.1}, top_weight=0.9,
                          confirmed=confirmed, novelty=novelty, novelty_limit=limit,
                          classified_at=utcnow() - timedelta(days=age_days), status=status))
    return image.id


@pytest.fixture
def plot_db(db: HydraDB) -> HydraDB:
    """The database (SQLite and MariaDB) with the plot type."""
    db.write(lambda s: catalog.add_plot_type(s, PLOT, "Good,Bad", "Bad", input_size=(32, 32)))
    return db


def fill(db: HydraDB) -> dict[str, list[int]]:
    """Run 1: like validation (20 images, none novel).  Run 2: 16 of 20 novel, 2 of them labeled."""
    ids: dict[str, list[int]] = {"novel": [], "labeled": []}

    def write(s: Session) -> None:
        model = add_model(s, "1", metrics=METRICS)
        for chunk in range(20):
            add_inference(s, model, 1, chunk, novelty=0.1, confirmed=True)
        for chunk in range(20):
            novel = chunk < 16
            labeled = chunk < 2
            image = add_inference(s, model, 2, chunk, novelty=0.9 - chunk * 0.01 if novel else 0.1,
                                  confirmed=not novel, labeled=labeled)
            if novel:
                ids["novel"].append(image)
            if labeled:
                ids["labeled"].append(image)

    db.write(write)
    return ids


def test_a_run_unlike_training_is_suggested_with_its_images(plot_db: HydraDB) -> None:
    db = plot_db
    ids = fill(db)
    with db.read() as s:
        shares = {row.run: row for row in run_shares(s)}
        suggestions = retraining_suggestions(s)
        queue = suggested_images(s, PLOT, 2, "novel")
        unconfirmed = suggested_images(s, PLOT, 2, "unconfirmed")
    assert (shares[1].images, shares[1].novel, shares[1].unconfirmed) == (20, 0, 0)
    assert (shares[2].images, shares[2].novel, shares[2].unconfirmed) == (20, 16, 16)
    assert shares[2].expected_novel == 0.01 and shares[2].expected_unconfirmed == 0.05
    assert [(x.plot_type, x.run, x.kind) for x in suggestions] == [(PLOT, 2, "novel")]
    assert "run 2: 80% of 20 images unlike the training data" in suggestions[0].message
    assert sorted(queue) == sorted(ids["novel"]) and sorted(unconfirmed) == sorted(ids["novel"])
    unlabeled = [i for i in ids["novel"] if i not in ids["labeled"]]
    assert queue[:len(unlabeled)] == unlabeled  # unlabeled first, most novel first
    assert queue[len(unlabeled):] == ids["labeled"]


def test_since_plot_type_and_inactive_models_filter(plot_db: HydraDB) -> None:
    db = plot_db
    fill(db)
    with db.read() as s:
        assert retraining_suggestions(s, since=utcnow() + timedelta(minutes=1)) == []
        assert len(retraining_suggestions(s, plot_type=PLOT)) == 1
        assert retraining_suggestions(s, plot_type="OTHER") == []
    db.write(lambda s: add_model(s, "2", metrics=METRICS))  # a new active model has classified nothing yet
    with db.read() as s:
        assert retraining_suggestions(s) == []
        assert suggested_images(s, PLOT, 2, "novel") == []
        with pytest.raises(ValueError, match="kind"):
            suggested_images(s, PLOT, 2, "weird")


def test_a_model_without_novelty_is_judged_by_unconfirmed_alone(plot_db: HydraDB) -> None:
    db = plot_db
    def write(s: Session) -> None:
        model = add_model(s, "1", metrics={"validation": {"unconfirmed_rate": 0.02}})
        for chunk in range(12):
            add_inference(s, model, 5, chunk, novelty=None, limit=None, confirmed=chunk >= 6)

    db.write(write)
    with db.read() as s:
        (suggestion,) = retraining_suggestions(s)
        model = s.query(Model).one()
        assert expected_shares(model) == (None, 0.02)
    assert (suggestion.run, suggestion.kind, suggestion.to_label) == (5, "unconfirmed", 6)


def test_missing_metrics_suggest_nothing(plot_db: HydraDB) -> None:
    db = plot_db
    def write(s: Session) -> None:
        model = add_model(s, "1", metrics={"novelty": {"validation_rate": "n/a"}})
        for chunk in range(12):
            add_inference(s, model, 5, chunk, novelty=0.9, confirmed=False)

    db.write(write)
    with db.read() as s:
        assert run_shares(s)[0].expected_novel is None
        assert retraining_suggestions(s) == []


def per_model_run_shares(session: Session, *, since: datetime | None = None, plot_type: str | None = None,
                         run: int | None = None) -> list[RunShares]:
    """The former `run_shares`, one query per active model: what the grouped query must equal."""
    rows: list[RunShares] = []
    for name, model in active_models(session, plot_type):
        expected_novel, expected_unconfirmed = expected_shares(model)
        query = (select(Inference.run_number, func.count(Inference.id),
                        func.sum(case((_novel_clause(), 1), else_=0)),
                        func.sum(case((Inference.confirmed.is_(False), 1), else_=0)))
                 .where(Inference.plot_type_id == model.plot_type_id, Inference.model_id == model.id,
                        Inference.status == "classified")
                 .group_by(Inference.run_number).order_by(Inference.run_number))
        if since is not None:
            query = query.where(Inference.classified_at >= since)
        if run is not None:
            query = query.where(Inference.run_number == run)
        for number, images, novel, unconfirmed in session.execute(query):
            rows.append(RunShares(name, int(number), model.key, int(images), int(novel or 0), int(unconfirmed or 0),
                                  expected_novel, expected_unconfirmed))
    return rows


def many_plot_types(db: HydraDB, count: int) -> list[str]:
    """`count` plot types, each with an active model over runs 1-3 (shares differing by plot type), an older
    inactive model that also classified run 2, and images that failed; plot type 0 has no active model."""
    names = [f"PT_{i:03d}" for i in range(count)]

    def write(s: Session) -> None:
        for i, name in enumerate(names):
            catalog.add_plot_type(s, name, "Good,Bad", "Bad", input_size=(32, 32))
            old = add_model(s, "1", metrics=METRICS, plot_type=name)
            for chunk in range(12):
                add_inference(s, old, 2, 100 + chunk, novelty=0.9, confirmed=False)
            if i == 0:
                mark_active(s, None, plot_type_id=old.plot_type_id, by="test")
                continue
            model = add_model(s, "2", metrics=METRICS if i % 3 else {"validation": {"unconfirmed_rate": 0.02}},
                              plot_type=name)
            for run in (1, 2, 3):
                for chunk in range(10 + i % 4 + run):
                    novel = chunk < (i * run) % 11
                    add_inference(s, model, run, chunk, novelty=0.9 if novel else (None if chunk % 5 == 0 else 0.1),
                                  confirmed=not novel and chunk % 4 != 0, age_days=run - 1)
            add_inference(s, model, 2, 99, novelty=0.9, confirmed=False, status="error")

    db.write(write)
    return names


def test_grouped_counts_equal_the_per_model_queries(plot_db: HydraDB) -> None:
    db = plot_db
    fill(db)
    names = many_plot_types(db, 7)
    with db.read() as s:
        every = run_shares(s)
        assert every == per_model_run_shares(s)
        assert {row.plot_type for row in every} == {PLOT, *names[1:]}  # no active model, no row
        assert len(every) == 1 * 2 + 6 * 3
        for filters in ({"run": 2}, {"run": 3}, {"run": 7}, {"plot_type": names[4]}, {"plot_type": names[0]},
                        {"plot_type": names[5], "run": 1}, {"since": utcnow() - timedelta(hours=12)},
                        {"since": utcnow() - timedelta(days=1, hours=12), "run": 2}):
            expected = per_model_run_shares(s, **filters)
            assert run_shares(s, **filters) == expected, filters
            assert retraining_suggestions(s, **filters) == suggest(expected), filters
        assert retraining_suggestions(s, run=2)  # the comparison is not between two empty lists
        assert {x.kind for x in retraining_suggestions(s)} == {"novel", "unconfirmed"}


@contextmanager
def counted_statements(db: HydraDB) -> Iterator[list[str]]:
    """The SQL statements sent to the database inside the block."""
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(db.engine, "before_cursor_execute", count)


def many_plot_types_extra(db: HydraDB, count: int) -> None:
    """`count` more plot types with an active model and a run 2 like the others'."""
    def write(s: Session) -> None:
        for i in range(count):
            name = f"EXTRA_{i:03d}"
            catalog.add_plot_type(s, name, "Good,Bad", "Bad", input_size=(32, 32))
            model = add_model(s, "1", metrics=METRICS, plot_type=name)
            for chunk in range(12):
                add_inference(s, model, 2, chunk, novelty=0.9, confirmed=False)

    db.write(write)


def test_the_keep_step_query_count_does_not_grow_with_plot_types(db: HydraDB) -> None:
    """The keep step of every chunk job asks for its run's suggestions: a constant number of statements."""
    names = many_plot_types(db, 3)
    counts = []
    for more in (0, 9):
        if more:
            many_plot_types_extra(db, more)
        with db.read() as s:
            with counted_statements(db) as statements:
                found = retraining_suggestions(s, run=2)
            counts.append(len(statements))
        assert found and {x.plot_type for x in found} <= set(names) | {f"EXTRA_{i:03d}" for i in range(more)}
    assert counts == [2, 2]

