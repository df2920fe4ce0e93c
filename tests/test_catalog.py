"""Plot types, labels, users, permissions and labeling history, on SQLite and MariaDB."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from hydra_assets import catalog
from hydra_assets.catalog import CatalogError, PermissionDenied
from hydra_assets.db.models import AuditLog, Image, LabelHistory, PlotGroup, SuperGroup
from hydra_assets.labeling import apply_labels


def test_plot_type_with_labels_groups_and_colours(db):
    def add(session):
        return catalog.add_plot_type(session, "BCAL_eta_phi", "Good,Bad,NoData", "Bad,NoData",
                                     groups=["BCAL"], super_group="Calorimetry", collect_percent=2.5)

    db.write(add)
    with db.read() as s:
        plot = catalog.get_plot_type(s, "BCAL_eta_phi")
        assert [(lab.name, lab.is_bad, lab.order) for lab in plot.labels] == [
            ("Good", False, 0), ("Bad", True, 1), ("NoData", True, 2)]
        assert len({lab.colour for lab in plot.labels}) == 3
        assert [g.name for g in plot.groups] == ["BCAL"]
        group = s.scalar(select(PlotGroup).where(PlotGroup.name == "BCAL"))
        assert s.get(SuperGroup, group.super_group_id).name == "Calorimetry"
        assert plot.collect_percent == 2.5


@pytest.mark.parametrize(
    ("labels", "bad", "message"),
    [
        ("Good,good", "good", "collide"),
        ("Good", "Good", "at least two labels"),
        ("Good,Bad", "Broken", "not among the labels"),
        ("Good,Bad", "", "at least one label as bad"),
        ("Good,Bad", "Good,Bad", "at least one label must be good"),
        ("Good,<b>Bad</b>", "<b>Bad</b>", "may hold only"),
    ],
)
def test_bad_label_sets_are_refused(sqlite_db, labels, bad, message):
    with pytest.raises(CatalogError, match=message):
        sqlite_db.write(lambda s: catalog.add_plot_type(s, "X", labels, bad))


def test_duplicate_or_invalid_plot_type(sqlite_db):
    sqlite_db.write(lambda s: catalog.add_plot_type(s, "X", "Good,Bad", "Bad"))
    with pytest.raises(CatalogError, match="already exists"):
        sqlite_db.write(lambda s: catalog.add_plot_type(s, "X", "Good,Bad", "Bad"))
    with pytest.raises(CatalogError, match="only letters"):
        sqlite_db.write(lambda s: catalog.add_plot_type(s, "../x", "Good,Bad", "Bad"))
    with pytest.raises(CatalogError, match="unknown topology"):
        sqlite_db.write(lambda s: catalog.add_plot_type(s, "Y", "Good,Bad", "Bad", topology="resnet9000"))
    with pytest.raises(CatalogError, match="75x75"):
        sqlite_db.write(lambda s: catalog.add_plot_type(s, "Z", "Good,Bad", "Bad", topology="inceptionv3",
                                                        input_size=(64, 64)))
    with sqlite_db.read() as s, pytest.raises(CatalogError, match="known plot types: X"):
        catalog.get_plot_type(s, "Nope")


@pytest.mark.parametrize("target", [0.0, -0.1, 1.01, float("nan")])
def test_precision_target_is_a_share_above_zero(sqlite_db, target):
    with pytest.raises(CatalogError, match="above 0 and at most 1"):
        sqlite_db.write(lambda s: catalog.add_plot_type(s, "X", "Good,Bad", "Bad", precision_target=target))
    sqlite_db.write(lambda s: catalog.add_plot_type(s, "Y", "Good,Bad", "Bad"))
    with pytest.raises(CatalogError, match="above 0 and at most 1"):
        sqlite_db.write(lambda s: catalog.edit_plot_type(s, "Y", precision_target=target))


def test_edit_plot_type_changes_only_what_is_given(db):
    db.write(lambda s: catalog.add_plot_type(s, "A", "Good,Bad", "Bad", precision_target=0.9, novel_alarm=True,
                                             collect_percent=3.0))
    db.write(lambda s: catalog.edit_plot_type(s, "A", novel_alarm=False))
    with db.read() as s:
        plot = catalog.get_plot_type(s, "A")
        assert (plot.precision_target, plot.novel_alarm, plot.collect_percent) == (0.9, False, 3.0)
    db.write(lambda s: catalog.edit_plot_type(s, "A", precision_target=1.0, collect_percent=0.0))
    with db.read() as s:
        plot = catalog.get_plot_type(s, "A")
        assert (plot.precision_target, plot.novel_alarm, plot.collect_percent) == (1.0, False, 0.0)


def test_roles_and_per_plot_type_permissions(db):
    def setup(session):
        catalog.add_plot_type(session, "A", "Good,Bad", "Bad")
        catalog.add_plot_type(session, "B", "Good,Bad", "Bad")
        catalog.add_user(session, "viewer1", role="viewer")
        catalog.add_user(session, "lab", role="labeler")
        catalog.add_user(session, "boss", role="admin")
        catalog.add_user(session, "expert_a", role="viewer")
        catalog.grant(session, "expert_a", "edit_thresholds", plot_type="A", by="test")

    db.write(setup)
    with db.read() as s:
        a = catalog.get_plot_type(s, "A").id
        b = catalog.get_plot_type(s, "B").id
        assert not catalog.has_permission(s, "viewer1", "label", a)
        assert catalog.has_permission(s, "lab", "label", a) and catalog.has_permission(s, "lab", "label", b)
        assert not catalog.has_permission(s, "lab", "activate_models", a)
        assert catalog.has_permission(s, "boss", "activate_models", b)
        assert catalog.has_permission(s, "expert_a", "edit_thresholds", a)
        assert not catalog.has_permission(s, "expert_a", "edit_thresholds", b)
        assert not catalog.has_permission(s, "nobody", "label", a)
        assert not catalog.has_permission(s, None, "label", a)
    assert db.write(lambda s: catalog.revoke(s, "expert_a", "edit_thresholds", plot_type="A")) == 1
    with db.read() as s:
        assert not catalog.has_permission(s, "expert_a", "edit_thresholds", a)
    with pytest.raises(CatalogError, match="unknown permission"):
        db.write(lambda s: catalog.grant(s, "lab", "delete_everything"))
    with pytest.raises(CatalogError, match="unknown user"):
        db.write(lambda s: catalog.grant(s, "ghost", "label"))


def _image(session, plot_id, n):
    image = Image(plot_type_id=plot_id, run_number=1, chunk=n, digest=f"{n:064d}", file_name=f"A-1-{n}.png",
                  queue_priority=0)
    session.add(image)
    session.flush()
    return image.id


def test_labels_keep_full_history_and_leave_the_queue(db):
    def setup(session):
        plot = catalog.add_plot_type(session, "A", "Good,Bad", "Bad")
        user = catalog.add_user(session, "lab", role="labeler")
        return plot.id, {lab.name: lab.id for lab in plot.labels}, user.id, [_image(session, plot.id, n) for n in range(3)]

    plot_id, labels, user_id, images = db.write(setup)
    assert db.write(lambda s: apply_labels(s, {images[0]: labels["Bad"], images[1]: labels["Good"]}, user_id=user_id)) == 2
    assert db.write(lambda s: apply_labels(s, {images[0]: labels["Good"]}, user_id=user_id)) == 1
    assert db.write(lambda s: apply_labels(s, {images[0]: labels["Good"]}, user_id=user_id)) == 0  # no change
    assert db.write(lambda s: apply_labels(s, {images[1]: None}, user_id=user_id)) == 1  # erase
    with db.read() as s:
        history = s.scalars(select(LabelHistory).where(LabelHistory.image_id == images[0])
                            .order_by(LabelHistory.id)).all()
        assert [(h.previous_label_id, h.label_id) for h in history] == [(None, labels["Bad"]),
                                                                        (labels["Bad"], labels["Good"])]
        assert all(h.user_id == user_id for h in history)
        first = s.get(Image, images[0])
        assert first.label_id == labels["Good"] and first.queue_priority is None
        assert s.get(Image, images[1]).label_id is None
        assert s.get(Image, images[2]).queue_priority == 0


def test_label_of_another_plot_type_is_refused(sqlite_db):
    def setup(session):
        a = catalog.add_plot_type(session, "A", "Good,Bad", "Bad")
        b = catalog.add_plot_type(session, "B", "Good,Bad", "Bad")
        return _image(session, a.id, 1), b.labels[0].id

    image_id, foreign_label = sqlite_db.write(setup)
    with pytest.raises(CatalogError, match="not a label"):
        sqlite_db.write(lambda s: apply_labels(s, {image_id: foreign_label}, user_id=None))


def test_guarded_write_refuses_and_audits(db):
    def setup(session):
        plot = catalog.add_plot_type(session, "A", "Good,Bad", "Bad")
        catalog.add_user(session, "viewer1", role="viewer")
        catalog.add_user(session, "lab", role="labeler")
        return plot.id, plot.labels[1].id, _image(session, plot.id, 1)

    plot_id, bad_label, image_id = db.write(setup)
    paint = {image_id: bad_label}
    with pytest.raises(PermissionDenied):
        catalog.guarded_write(db, "viewer1", "label", plot_id, "apply labels",
                              lambda s: apply_labels(s, paint, user_id=None))
    with db.read() as s:
        assert s.get(Image, image_id).label_id is None  # unchanged
        refused = s.scalars(select(AuditLog).where(AuditLog.allowed.is_(False))).all()
        assert [(a.user_name, a.action) for a in refused] == [("viewer1", "apply labels")]
    assert catalog.guarded_write(db, "lab", "label", plot_id, "apply labels",
                                 lambda s: apply_labels(s, paint, user_id=None)) == 1
    with db.read() as s:
        assert s.get(Image, image_id).label_id == bad_label
        assert s.scalar(select(func.count(AuditLog.id)).where(AuditLog.allowed.is_(True))) == 1
