"""What every command needs: settings, the database, and errors turned into messages and exit codes."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from hydra_assets.catalog import CatalogError, PermissionDenied
from hydra_assets.db.engine import HydraDB
from hydra_assets.settings import HydraSettings, SettingsError, load_settings

EXIT_USAGE, EXIT_REFUSED, EXIT_FAILED = 2, 3, 1


def settings() -> HydraSettings:
    return load_settings()


def database(config: HydraSettings | None = None) -> HydraDB:
    """The Hydra database, refusing clearly when `hydra init` has not been run."""
    from sqlalchemy.engine import make_url

    from hydra_assets.db.migrate import current_revision

    config = config or settings()
    parsed = make_url(config.db_url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and not Path(parsed.database).exists():
        raise click.ClickException(f"no Hydra database at {parsed.database}; run `hydra init` first")
    try:
        revision = current_revision(config.db_url)
    except Exception as error:
        raise click.ClickException(f"cannot open the Hydra database {redact(config.db_url)}: {error}") from error
    if revision is None:
        raise click.ClickException(f"the Hydra database {redact(config.db_url)} has no schema; run `hydra init` first")
    return HydraDB(config.db_url)


def redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


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
