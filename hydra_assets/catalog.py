"""Plot types, labels, users and permissions: the catalogue every other part of Hydra reads.

Plain functions over a SQLAlchemy session, so the CLI, the pages and the pipeline share one behaviour
and the tests call them directly.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from hydra_assets.db.models import (
    PERMISSIONS,
    AuditLog,
    Label,
    Permission,
    PlotGroup,
    PlotType,
    PlotTypeGrouping,
    Role,
    SuperGroup,
    User,
)

if TYPE_CHECKING:
    from hydra_assets.db.engine import HydraDB


NAME_RE = re.compile(r"^[A-Za-z0-9_]{1,128}$")
LABEL_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_ .+-]{0,63}$")
ROLES = {
    "viewer": (),
    "labeler": ("label",),
    "expert": ("label", "edit_thresholds", "activate_models", "edit_reference"),
    "coordinator": ("label", "certify"),  # run coordinator: signs off run flags
    "admin": ("admin",),
}
TOPOLOGIES = ("compact", "vgg16", "inceptionv3")
# Colour-blind friendly palette (Okabe–Ito) for labels without an explicit colour.
GOOD_COLOUR, BAD_COLOURS = "#009E73", ("#D55E00", "#CC79A7", "#E69F00", "#0072B2", "#56B4E9", "#F0E442")


class CatalogError(ValueError):
    """A request the catalogue refuses; the message says what to change."""


class PermissionDenied(PermissionError):
    """A user tried a write they have no permission for."""


@dataclass(frozen=True)
class LabelSpec:
    name: str
    is_bad: bool
    colour: str


def parse_label_specs(labels: str | Sequence[str], bad: str | Sequence[str]) -> list[LabelSpec]:
    """Validate `Good,Bad,NoData` + `--bad Bad` into label specs with colours, refusing collisions."""
    names = [n.strip() for n in (labels.split(",") if isinstance(labels, str) else labels) if n.strip()]
    bad_names = [n.strip() for n in (bad.split(",") if isinstance(bad, str) else bad) if n.strip()]
    if len(names) < 2:
        raise CatalogError("a plot type needs at least two labels (e.g. --labels Good,Bad)")
    for name in names:
        if not LABEL_RE.match(name):
            raise CatalogError(f"label {name!r} may hold only letters, digits, space, '_', '.', '+' and '-'")
    lowered = [n.lower() for n in names]
    duplicates = sorted({n for n in names if lowered.count(n.lower()) > 1})
    if duplicates:
        raise CatalogError(f"labels collide (names must differ ignoring case): {', '.join(duplicates)}")
    unknown = [b for b in bad_names if b not in names]
    if unknown:
        raise CatalogError(f"--bad names {', '.join(unknown)} which are not among the labels {', '.join(names)}")
    if not bad_names:
        raise CatalogError("mark at least one label as bad (e.g. --bad Bad)")
    if len(bad_names) == len(names):
        raise CatalogError("at least one label must be good (not in --bad)")
    specs, bad_index = [], 0
    for name in names:
        if name in bad_names:
            specs.append(LabelSpec(name, True, BAD_COLOURS[bad_index % len(BAD_COLOURS)]))
            bad_index += 1
        else:
            colour = GOOD_COLOUR if not any(s.is_bad is False for s in specs) else "#999999"
            specs.append(LabelSpec(name, False, colour))
    return specs


def get_plot_type(session: Session, name: str) -> PlotType:
    plot_type = session.scalar(select(PlotType).where(PlotType.name == name))
    if plot_type is None:
        known = session.scalars(select(PlotType.name).order_by(PlotType.name)).all()
        hint = f"known plot types: {', '.join(known)}" if known else "no plot types exist yet (hydra plot-type add)"
        raise CatalogError(f"unknown plot type {name!r}; {hint}")
    return plot_type


def add_plot_type(
    session: Session,
    name: str,
    labels: str | Sequence[str],
    bad: str | Sequence[str],
    *,
    groups: Sequence[str] = (),
    super_group: str | None = None,
    collect_percent: float = 5.0,
    topology: str = "compact",
    input_size: tuple[int, int] = (128, 128),
    description: str = "",
    precision_target: float = 0.95,
    novel_alarm: bool = False,
) -> PlotType:
    """Create a plot type with its labels; refuses a name that exists or labels that collide."""
    if not NAME_RE.match(name):
        raise CatalogError(f"plot type {name!r} may hold only letters, digits and '_' (it appears in file names)")
    if not 0 <= collect_percent <= 100:
        raise CatalogError(f"--collect-percent must be between 0 and 100, not {collect_percent}")
    if topology not in TOPOLOGIES and ":" not in topology:
        raise CatalogError(f"unknown topology {topology!r}; built in: {', '.join(TOPOLOGIES)} (or module:function)")
    height, width = input_size
    if not (16 <= height <= 1024 and 16 <= width <= 1024):
        raise CatalogError(f"--input-size must be between 16 and 1024 pixels per side, not {height}x{width}")
    if topology == "inceptionv3" and min(height, width) < 75:
        raise CatalogError("InceptionV3 needs inputs of at least 75x75 pixels")
    check_precision_target(precision_target)
    specs = parse_label_specs(labels, bad)
    if session.scalar(select(PlotType.id).where(PlotType.name == name)) is not None:
        raise CatalogError(f"plot type {name!r} already exists")
    plot_type = PlotType(
        name=name,
        description=description,
        topology=topology,
        input_height=height,
        input_width=width,
        collect_percent=collect_percent,
        precision_target=float(precision_target),
        novel_alarm=bool(novel_alarm),
    )
    plot_type.labels = [
        Label(name=s.name, is_bad=s.is_bad, colour=s.colour, order=i) for i, s in enumerate(specs)
    ]
    session.add(plot_type)
    session.flush()
    for group_name in groups:
        group = ensure_plot_group(session, group_name, super_group=super_group)
        session.add(PlotTypeGrouping(plot_group_id=group.id, plot_type_id=plot_type.id))
    session.flush()
    return plot_type


def check_precision_target(value: float) -> None:
    """The confirmed precision thresholds aim for with two labels: a share in (0, 1]."""
    if not 0.0 < float(value) <= 1.0:
        raise CatalogError(f"--precision-target must be above 0 and at most 1 (e.g. 0.95), not {value}")


def edit_plot_type(
    session: Session,
    name: str,
    *,
    precision_target: float | None = None,
    novel_alarm: bool | None = None,
    collect_percent: float | None = None,
    description: str | None = None,
) -> PlotType:
    """Change the settings of a plot type that do not need a new model; None leaves a setting as it is.

    `precision_target` applies from the next training (thresholds are chosen then); `novel_alarm` and
    `collect_percent` from the next chunk.
    """
    plot_type = get_plot_type(session, name)
    if precision_target is not None:
        check_precision_target(precision_target)
        plot_type.precision_target = float(precision_target)
    if collect_percent is not None:
        if not 0 <= collect_percent <= 100:
            raise CatalogError(f"--collect-percent must be between 0 and 100, not {collect_percent}")
        plot_type.collect_percent = float(collect_percent)
    if novel_alarm is not None:
        plot_type.novel_alarm = bool(novel_alarm)
    if description is not None:
        plot_type.description = description
    session.flush()
    return plot_type


def ensure_plot_group(session: Session, name: str, *, super_group: str | None = None) -> PlotGroup:
    group = session.scalar(select(PlotGroup).where(PlotGroup.name == name))
    if group is None:
        group = PlotGroup(name=name)
        session.add(group)
    if super_group:
        sg = session.scalar(select(SuperGroup).where(SuperGroup.name == super_group))
        if sg is None:
            sg = SuperGroup(name=super_group)
            session.add(sg)
            session.flush()
        group.super_group_id = sg.id
    session.flush()
    return group


def labels_of(session: Session, plot_type: PlotType | int) -> list[Label]:
    plot_type_id = plot_type if isinstance(plot_type, int) else plot_type.id
    return list(session.scalars(select(Label).where(Label.plot_type_id == plot_type_id).order_by(Label.order)))


def ensure_roles(session: Session) -> dict[str, Role]:
    """The built-in roles and their plot-type-independent permissions (idempotent; a permission added to a
    built-in role in a later release is granted to that role in existing databases too)."""
    roles = {r.name: r for r in session.scalars(select(Role))}
    for name, permissions in ROLES.items():
        if name not in roles:
            role = Role(name=name, description=", ".join(permissions) or "read only")
            session.add(role)
            session.flush()
            roles[name] = role
        role = roles[name]
        granted = set(session.scalars(
            select(Permission.permission).where(Permission.role_id == role.id, Permission.plot_type_id.is_(None))
        ))
        for permission in permissions:
            if permission not in granted:
                session.add(Permission(role_id=role.id, permission=permission, granted_by="hydra init"))
        role.description = ", ".join(permissions) or "read only"
    session.flush()
    return roles


def get_user(session: Session, name: str) -> User:
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise CatalogError(f"unknown user {name!r} (hydra user add {name})")
    return user


def add_user(session: Session, name: str, *, role: str = "viewer", full_name: str = "", email: str = "") -> User:
    if not NAME_RE.match(name):
        raise CatalogError(f"user name {name!r} may hold only letters, digits and '_'")
    roles = ensure_roles(session)
    if role not in roles:
        raise CatalogError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    if session.scalar(select(User.id).where(User.name == name)) is not None:
        raise CatalogError(f"user {name!r} already exists")
    user = User(name=name, role_id=roles[role].id, full_name=full_name, email=email)
    session.add(user)
    session.flush()
    return user


def _check_permission_name(permission: str) -> None:
    if permission not in PERMISSIONS:
        raise CatalogError(f"unknown permission {permission!r}; permissions: {', '.join(PERMISSIONS)}")


def grant(session: Session, user: str, permission: str, *, plot_type: str | None = None, by: str = "") -> Permission:
    """Give `user` a permission on one plot type (or all, when `plot_type` is None); idempotent."""
    _check_permission_name(permission)
    user_row = get_user(session, user)
    plot_type_id = get_plot_type(session, plot_type).id if plot_type else None
    existing = session.scalar(
        select(Permission).where(
            Permission.user_id == user_row.id,
            Permission.plot_type_id.is_(None) if plot_type_id is None else Permission.plot_type_id == plot_type_id,
            Permission.permission == permission,
        )
    )
    if existing:
        return existing
    row = Permission(user_id=user_row.id, plot_type_id=plot_type_id, permission=permission, granted_by=by)
    session.add(row)
    session.flush()
    return row


def revoke(session: Session, user: str, permission: str, *, plot_type: str | None = None) -> int:
    """Remove a user's own grant; returns how many rows went (role permissions stay with the role)."""
    _check_permission_name(permission)
    user_row = get_user(session, user)
    plot_type_id = get_plot_type(session, plot_type).id if plot_type else None
    rows = session.scalars(
        select(Permission).where(
            Permission.user_id == user_row.id,
            Permission.plot_type_id.is_(None) if plot_type_id is None else Permission.plot_type_id == plot_type_id,
            Permission.permission == permission,
        )
    ).all()
    for row in rows:
        session.delete(row)
    session.flush()
    return len(rows)


def has_permission(session: Session, user: str | None, permission: str, plot_type_id: int | None = None) -> bool:
    """True when the user, directly or through their role, holds `permission` (or admin) for the plot type."""
    if not user:
        return False
    user_row = session.scalar(select(User).where(User.name == user, User.active.is_(True)))
    if user_row is None:
        return False
    owner = Permission.user_id == user_row.id
    if user_row.role_id is not None:
        owner = or_(owner, Permission.role_id == user_row.role_id)
    scope = Permission.plot_type_id.is_(None)
    if plot_type_id is not None:
        scope = or_(scope, Permission.plot_type_id == plot_type_id)
    query = select(Permission.id).where(owner, scope, Permission.permission.in_([permission, "admin"])).limit(1)
    return session.scalar(query) is not None


def guarded_write[T](
    db: "HydraDB",
    user: str | None,
    permission: str,
    plot_type_id: int | None,
    action: str,
    work: Callable[[Session], T],
    *,
    detail: str = "",
) -> T:
    """Run a write only if `user` holds `permission`; every attempt, refused or done, lands in the audit log.

    The check runs server-side inside the write path, so a forged callback or a re-enabled widget gets
    the same refusal as the CLI.
    """

    def checked(session: Session) -> T:
        if not has_permission(session, user, permission, plot_type_id):
            raise PermissionDenied(f"user {user or 'anonymous'!r} may not {action} (needs {permission!r})")
        result = work(session)
        record_audit(session, user or "", action, allowed=True, detail=detail)
        return result

    try:
        return db.write(checked, what=action)
    except PermissionDenied as refusal:
        reason = f"{refusal}; {detail}"
        db.write(lambda s: record_audit(s, user or "", action, allowed=False, detail=reason))
        raise


def record_audit(session: Session, user: str, action: str, *, allowed: bool = True, detail: str = "") -> None:
    session.add(AuditLog(user_name=user, action=action, allowed=allowed, detail=detail[:4000]))
