"""`hydra user` and `hydra permission`: users of the pages, their roles and per-plot-type grants."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from sqlalchemy import select

from hydra_assets import catalog, logins
from hydra_assets.catalog import CatalogError
from hydra_assets.cli.common import database, friendly_errors, settings
from hydra_assets.db.models import User
from hydra_assets.settings import HydraSettings


@click.group()
def user() -> None:
    """Users of the pages and their roles (viewer, labeler, expert, admin)."""


@user.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(list(catalog.ROLES)), default="viewer", show_default=True)
@click.option("--full-name", default="")
@click.option("--email", default="")
@click.option("--password-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Read the login password from this file's first line (default: ask on a terminal, "
                   "else generate one and show it once).")
@click.option("--no-login", is_flag=True, help="Add no password login (a site that signs in with OAuth).")
@friendly_errors
def user_add(name: str, role: str, full_name: str, email: str, password_file: Path | None, no_login: bool) -> None:
    """Add user NAME with a role and a login to the pages."""
    config = settings()
    db = database(config)
    password = None if no_login else _password(password_file)  # asked before anything is written
    db.write(lambda s: catalog.add_user(s, name, role=role, full_name=full_name, email=email), what="add user")
    click.echo(f"added user {name} ({role})")
    if not no_login:
        _store_login(config, name, password)


@user.command("password")
@click.argument("name")
@click.option("--password-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Read the new password from this file's first line (default: ask, or generate one).")
@friendly_errors
def user_password(name: str, password_file: Path | None) -> None:
    """Set or reset the login password of user NAME."""
    config = settings()
    db = database(config)
    with db.read() as s:
        catalog.get_user(s, name)  # an unknown user is refused, not given a login
    _store_login(config, name, _password(password_file))


def _password(password_file: Path | None) -> str | None:
    """The password from a file, typed at a terminal, or None: generate one."""
    try:
        if password_file is not None:
            lines = password_file.read_text(encoding="utf-8").splitlines()
            return logins.check_password(lines[0] if lines else "")
        if sys.stdin.isatty():
            typed = click.prompt("Login password (Enter: generate one)", default="", hide_input=True,
                                 confirmation_prompt=True, show_default=False)
            return logins.check_password(typed) if typed else None
    except logins.LoginError as error:
        raise click.ClickException(str(error)) from error
    return None


def _store_login(config: HydraSettings, name: str, password: str | None) -> None:
    """Write the login where the pages read it; a generated password is shown here, once."""
    path = logins.credentials_path(config)
    generated = password is None
    password = password or logins.new_password()
    try:
        logins.set_logins(path, {name: password})
    except logins.LoginError as error:
        raise click.ClickException(str(error)) from error
    if generated:
        click.echo(f"login for {name}: password {password}  (shown once; kept in {path}, readable by you only)")
    else:
        click.echo(f"login for {name} set in {path} (readable by you only)")


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
