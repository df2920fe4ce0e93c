"""What every command needs: settings, the database, the acting user, and errors turned into messages
and exit codes."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import click

from hydra_assets.catalog import CatalogError, PermissionDenied
from hydra_assets.db.engine import HydraDB
from hydra_assets.home import HomeError, open_database
from hydra_assets.settings import HydraSettings, SettingsError, load_settings

EXIT_USAGE, EXIT_REFUSED, EXIT_FAILED = 2, 3, 1

USER_OPTION = click.option("--user", "user_name", default=lambda: load_settings().user,
                           show_default="$HYDRA_USER or cli", help="Act as this Hydra user (permissions, audit log).")


def settings() -> HydraSettings:
    return load_settings()


def database(config: HydraSettings | None = None) -> HydraDB:
    """The Hydra database, refusing clearly when `hydra init` has not been run."""
    try:
        return open_database(config or settings())
    except HomeError as error:
        raise click.ClickException(str(error)) from error


def acting_user(db: HydraDB, user_name: str) -> str:
    """The Hydra user a command acts as; the system user ``cli`` is created (admin) on first use."""
    from hydra_assets.ml.registry import CLI_USER, ensure_cli_user

    return ensure_cli_user(db) if user_name == CLI_USER else user_name


def friendly_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the domain's refusals into one line on stderr and a distinct exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (CatalogError, SettingsError) as error:
            click.echo(f"error: {error}", err=True)
            raise SystemExit(EXIT_USAGE) from error
        except PermissionDenied as error:
            click.echo(f"refused: {error}", err=True)
            raise SystemExit(EXIT_REFUSED) from error

    return wrapper


def echo_json(payload: Any) -> None:
    click.echo(json.dumps(payload, indent=2, default=str, sort_keys=False))
