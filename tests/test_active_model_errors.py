"""A model version whose file cannot be fetched gives a ModelLoadError naming it, even from a detached row."""

from __future__ import annotations

import pytest

from hydra_assets import catalog
from hydra_assets.db.models import Model
from hydra_assets.ml import active
from hydra_assets.ml.active import ModelLoadError


def test_a_failed_fetch_of_a_detached_model_row_names_the_model(db, hydra_home, monkeypatch):
    def add(session):
        plot = catalog.add_plot_type(session, "CDC_timing", "Good,Bad", "Bad")
        model = Model(plot_type_id=plot.id, mlflow_name="hydra-CDC_timing", mlflow_version="3",
                      model_uri="models:/hydra-CDC_timing/3", topology="compact", input_height=32, input_width=32)
        session.add(model)
        session.flush()
        return model.id

    model_id = db.write(add)
    with db.read() as session:
        model = session.get(Model, model_id)
        session.expunge(model)  # detached, its plot_type relationship never loaded (as load_model_version leaves it)

    def unreachable(*args, **kwargs):
        raise RuntimeError("connection refused")

    monkeypatch.setattr(active, "fetch_model_file", unreachable)
    with pytest.raises(ModelLoadError, match=r"hydra-CDC_timing/3: cannot fetch models:/hydra-CDC_timing/3 .*refused"):
        active.model_file(hydra_home, model)
