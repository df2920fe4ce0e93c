"""Retraining suggestions counted from the database (hydra_assets/suggestions.py).

A plot type whose active model expects 1 % novel and 5 % unconfirmed images (its training metrics) meets a
run where most images are novel, and a run that looks like its validation: only the first is suggested,
and its queue lists the novel images, unlabeled first.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from hydra_assets import catalog
from hydra_assets.db.engine import HydraDB
from hydra_assets.db.models import Image, Inference, Model, utcnow
from hydra_assets.ml.active import mark_active
from hydra_assets.suggestions import expected_shares, retraining_suggestions, run_shares, suggested_images

PLOT = "RF_FDC"
METRICS = {"novelty": {"validation_rate": 0.01, "limit": 0.3},
           "validation": {"unconfirmed_rate": 0.05}}


def add_model(session: Session, version: str, *, metrics: dict | None = None, active: bool = True) -> Model:
    plot = catalog.get_plot_type(session, PLOT)
    model = Model(plot_type_id=plot.id, mlflow_name=f"hydra-{PLOT}", mlflow_version=version, topology="compact",
                  input_height=32, input_width=32, label_names=["Good", "Bad"], metrics=metrics or {})
    session.add(model)
    session.flush()
    if active:
        mark_active(session, model, by="test")
    return model


def add_inference(session: Session, model: Model, run: int, chunk: int, *, novelty: float | None,
                  confirmed: bool, labeled: bool = False, limit: float | None = 0.3, age_days: float = 0) -> int:
    plot = catalog.get_plot_type(session, PLOT)
    good = next(lab for lab in catalog.labels_of(session, plot) if lab.name == "Good")
    image = Image(plot_type_id=plot.id, run_number=run, chunk=chunk, digest=f"{run}-{chunk}-{model.id}",
                  file_name=f"{PLOT}_{run}_{chunk}.png", label_id=good.id if labeled else None)
    session.add(image)
    session.flush()
    session.add(Inference(image_id=image.id, plot_type_id=plot.id, run_number=run, chunk=chunk, model_id=model.id,
                          model_key=model.key, weights={"Good": 0.9, "Bad": 0.1}, top_weight=0.9,
                          confirmed=confirmed, novelty=novelty, novelty_limit=limit,
                          classified_at=utcnow() - timedelta(days=age_days)))
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
