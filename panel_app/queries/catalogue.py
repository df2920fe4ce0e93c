"""The catalogue every page reads (plot types, labels, groups) and who the login is."""

from __future__ import annotations

import re

from bokeh.core.enums import NamedColor
from sqlalchemy import select, true
from sqlalchemy.orm import Session

from hydra_assets.db.models import Label, PlotGroup, PlotType, PlotTypeGrouping, Role, SuperGroup, User
from panel_app.views_data import LabelInfo, PlotTypeInfo

HEX_COLOUR = re.compile(r"#(?:[0-9a-fA-F]{3,4}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})")


def label_colour(value: str | None) -> str:
    """A label's colour as the pages use it (style attributes, Bokeh figures): a hex or CSS colour name;
    anything else — a forged or hand-edited row — shows grey instead of failing a figure or reaching CSS."""
    return value if value and (HEX_COLOUR.fullmatch(value) or value in NamedColor) else "#888888"



def catalogue(session: Session) -> dict[int, PlotTypeInfo]:
    """Every plot type with its labels and groups (small tables, read whole)."""
    types = {
        r.id: PlotTypeInfo(r.id, r.name, r.description or "", bool(r.enabled))
        for r in session.execute(select(PlotType.id, PlotType.name, PlotType.description, PlotType.enabled)
                                 .order_by(PlotType.name))
    }
    labels = session.execute(select(Label.id, Label.plot_type_id, Label.name, Label.colour, Label.is_bad, Label.order)
                             .order_by(Label.plot_type_id, Label.order, Label.id))
    for lab in labels:
        if lab.plot_type_id in types:
            types[lab.plot_type_id].labels.append(
                LabelInfo(lab.id, lab.name, label_colour(lab.colour), bool(lab.is_bad), lab.order)
            )
    rows = session.execute(
        select(PlotTypeGrouping.plot_type_id, PlotGroup.name, SuperGroup.name)
        .join(PlotGroup, PlotGroup.id == PlotTypeGrouping.plot_group_id)
        .outerjoin(SuperGroup, SuperGroup.id == PlotGroup.super_group_id)
        .order_by(PlotGroup.name)
    )
    for plot_type_id, group, super_group in rows:
        if plot_type_id in types:
            types[plot_type_id].groups.append(group)
            if super_group and super_group not in types[plot_type_id].super_groups:
                types[plot_type_id].super_groups.append(super_group)
    return types


def groups(session: Session) -> list[tuple[int, str, str | None]]:
    """(id, plot group, super group) of every plot group."""
    return list(
        session.execute(
            select(PlotGroup.id, PlotGroup.name, SuperGroup.name)
            .outerjoin(SuperGroup, SuperGroup.id == PlotGroup.super_group_id)
            .order_by(PlotGroup.name)
        ).tuples()
    )


def plot_type_ids_in(session: Session, *, group: str | None = None, super_group: str | None = None) -> list[int]:
    query = select(PlotTypeGrouping.plot_type_id).join(PlotGroup, PlotGroup.id == PlotTypeGrouping.plot_group_id)
    if group:
        query = query.where(PlotGroup.name == group)
    if super_group:
        query = query.join(SuperGroup, SuperGroup.id == PlotGroup.super_group_id).where(SuperGroup.name == super_group)
    return sorted(set(session.scalars(query)))


def user_role(session: Session, name: str | None) -> tuple[int | None, str | None]:
    """(user id, role name) of a Hydra user, or (None, None) when the login has no Hydra user."""
    if not name:
        return None, None
    row = session.execute(select(User.id, User.role_id).where(User.name == name, User.active == true())).first()
    if row is None:
        return None, None
    role = session.scalar(select(Role.name).where(Role.id == row.role_id)) if row.role_id else None
    return row.id, role


