"""Security — a user without permission forges a label, threshold or activation write by calling the page
callback directly (the widget hidden or disabled for them, re-enabled by hand): refused, the database is
unchanged, the attempt is in the audit log.  The same calls by a permitted user succeed (the test can fail).
"""

from __future__ import annotations

import pytest
from pages_factory import populate, template_database
from sqlalchemy import func, select

from hydra_assets.db.engine import HydraDB
from hydra_assets.db.models import AuditLog, Image, LabelHistory, Model, Threshold
from panel_app.config import PagesConfig
from panel_app.pages.labeler import LabelerPage
from panel_app.pages.library import LibraryPage
from panel_app.store import SHARED, HydraStore


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    settings, made = template_database(tmp_path_factory.mktemp("security_writes"), populate)
    db = HydraDB(settings.db_url)
    yield db, settings, made
    db.dispose()


def page_store(db, settings, user):  # type: ignore[no-untyped-def]
    SHARED.clear()
    return HydraStore(db, PagesConfig(settings=settings, sync_mlflow_alias=False), user=user)


def snapshot(db: HydraDB) -> dict:
    with db.read() as s:
        return {
            "labels": dict(s.execute(select(Image.id, Image.label_id)).all()),
            "history": s.scalar(select(func.count(LabelHistory.id))),
            "thresholds": {(t.model_id, t.label_id): t.value for t in s.scalars(select(Threshold))},
            "active": sorted(s.scalars(select(Model.id).where(Model.active.is_(True)))),
        }


def refusals(db: HydraDB, user: str) -> list[AuditLog]:
    with db.read() as s:
        return list(s.scalars(select(AuditLog).where(AuditLog.user_name == user, AuditLog.allowed.is_(False))))


def test_forged_label_threshold_and_activation_writes_are_refused_and_logged(demo):
    db, settings, made = demo
    plot = next(iter(made.plot_types))
    before = snapshot(db)
    audited = len(refusals(db, "viewer"))

    labeler = LabelerPage(page_store(db, settings, "viewer"))
    labeler.plot_type = made.plot_types[plot]
    shown = [t.image_id for t in labeler.tiles]
    assert shown, "the Labeler showed nothing: nothing would be forged"
    bad = made.labels[plot]["Bad"]
    labeler.grid.painted = {str(i): bad for i in shown}  # painting, then "Apply" fired by hand
    assert labeler.apply() is None and "Refused" in labeler.feedback.object

    library = LibraryPage(page_store(db, settings, "viewer"))
    library.plot_type = made.plot_types[plot]
    assert not library.save_threshold.visible  # hidden for a viewer...
    library.save_threshold.visible, library.save_threshold.disabled = True, False  # ...re-enabled by hand
    library.threshold_input.value, library.label_select.value = "0.01", bad
    library.save_threshold.clicks += 1  # the click event a forged browser message produces
    assert "Refused" in library.feedback.object
    old_version = made.models[plot][0]
    library.model_id = old_version
    library.activate_button.visible, library.activate_button.disabled = True, False
    library.activate_button.clicks += 1
    assert "Refused" in library.feedback.object

    assert snapshot(db) == before, "a refused write changed the database"
    logged = refusals(db, "viewer")[audited:]
    assert {a.action for a in logged} >= {"apply labels"} and len(logged) >= 3, [(a.action, a.detail) for a in logged]
    assert all("viewer" in a.detail for a in logged)

    # the control: an expert's identical calls go through (the refusals above are not an artefact)
    expert = LibraryPage(page_store(db, settings, "expert"))
    expert.plot_type = made.plot_types[plot]
    assert expert.edit_threshold(bad, 0.42) is True
    assert snapshot(db)["thresholds"] != before["thresholds"]
