"""`hydra user` and `hydra permission`: users of the pages, their roles and per-plot-type grants."""

from __future__ import annotations

import click
from sqlalchemy import select

from hydra_assets import catalog
from hydra_assets.catalog import CatalogError
from hydra_assets.cli.common import database, friendly_errors
from hydra_assets.db.models import User


@click.group()
def user() -> None:
    """Users of the pages and their roles (viewer, labeler, expert, admin)."""


@user.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(list(catalog.ROLES)), default="viewer", show_default=True)
@click.option("--full-name", default="")
@click.option("--email", default="")
@friendly_errors
def user_add(name: str, role: str, full_name: str, email: str) -> None:
    """Add user NAME with a role."""
    db = database()
    db.write(lambda s: catalog.add_user(s, name, role=role, full_name=full_name, email=email), what="add user")
    click.echo(f"added user {name} ({role})")


@user.command("list")
@friendly_errors
def user_list() -> None:
    """List users and their roles."""
    db = database()
    with db.read() as s:
        for u in s.scalars(select(User).order_by(User.name)):
            click.echo(f"{u.name:<24} {u.role.name if u.role else '-':<10} {'active' if u.active else 'disabled'}")


@click.group()
def permission() -> None:
    """Per-plot-type permissions: label, edit_thresholds, activate_models, admin."""


def _permission_args(command):  # type: ignore[no-untyped-def]
    command = click.option("--plot-type", default=None, help="Limit to one plot type (default: all).")(command)
    command = click.argument("what", type=click.Choice(list(catalog.PERMISSIONS)))(command)
    return click.argument("user_name", metavar="USER")(command)


@permission.command("grant")
@_permission_args
@friendly_errors
def permission_grant(user_name: str, what: str, plot_type: str | None) -> None:
    """Grant USER the permission WHAT (on --plot-type, or on all plot types)."""
    db = database()
    db.write(lambda s: catalog.grant(s, user_name, what, plot_type=plot_type, by="cli"), what="grant")
    click.echo(f"granted {what} to {user_name} on {plot_type or 'all plot types'}")


@permission.command("revoke")
@_permission_args
@friendly_errors
def permission_revoke(user_name: str, what: str, plot_type: str | None) -> None:
    """Revoke USER's own grant WHAT (role permissions stay with the role)."""
    db = database()
    removed = db.write(lambda s: catalog.revoke(s, user_name, what, plot_type=plot_type), what="revoke")
    if not removed:
        raise CatalogError(f"{user_name} holds no own grant {what} on {plot_type or 'all plot types'}")
    click.echo(f"revoked {what} from {user_name} on {plot_type or 'all plot types'}")
