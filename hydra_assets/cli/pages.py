"""`hydra pages`: serve the web pages."""

from __future__ import annotations

from pathlib import Path

import click

from hydra_assets.cli.common import database, settings


@click.command()
@click.option("--port", default=5006, show_default=True, help="Port to listen on.")
@click.option("--address", default="127.0.0.1", show_default=True, help="Interface to listen on (0.0.0.0 for all).")
@click.option("--credentials", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="JSON file of user: password for the login (default: HYDRA_HOME/credentials.json, written by `hydra up`).")
@click.option("--no-auth", is_flag=True, help="No login (local development): read only unless --user is given.")
@click.option("--user", "local_user", default=None, help="With --no-auth: act as this Hydra user.")
@click.option("--origin", "origins", multiple=True,
              help="Host[:port] browsers reach the pages at, when not this machine (repeatable).")
@click.option("--show", is_flag=True, help="Open a browser.")
def pages(port: int, address: str, credentials: Path | None, no_auth: bool, local_user: str | None,
          origins: tuple[str, ...], show: bool) -> None:
    """Serve the Run, Log, Library, Labeler, Status, Plot Browser, Trends and Training report pages.

    Pages read the Hydra database (HYDRA_DB_URL); links go to HYDRA_DAGSTER_URL and HYDRA_MLFLOW_URL.
    """
    from panel_app.app import serve
    from panel_app.auth import AuthError, default_credentials_path, load_credentials
    from panel_app.config import PagesConfig

    config = PagesConfig(settings=settings())
    if local_user and not no_auth:
        raise click.UsageError("--user only applies with --no-auth (with a login, the login is the user)")
    config.local_user = (local_user or config.local_user) if no_auth else None
    if not no_auth:
        credentials = credentials or default_credentials_path(config.settings)
        try:
            load_credentials(credentials)
        except AuthError as error:
            raise click.ClickException(
                f"{error}\n(`hydra user add NAME` adds a login to it, `hydra up` makes a first admin login; "
                "or use --no-auth for local development)") from error
    else:
        credentials = None
    db = database(config.settings)
    where = f"http://{'localhost' if address in ('127.0.0.1', '0.0.0.0') else address}:{port}/run"
    click.echo(f"Hydra pages at {where}" + ("" if credentials else " (no login)"), err=True)
    serve(config, port=port, address=address, credentials=credentials, origins=origins, db=db, show=show)
