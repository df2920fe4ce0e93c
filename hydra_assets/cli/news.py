"""`hydra news`: the news line shown on the Run page."""

from __future__ import annotations

import click

from hydra_assets.catalog import CatalogError
from hydra_assets.cli.common import database, friendly_errors
from hydra_assets.db.models import NewsLine


@click.group()
def news() -> None:
    """The news line shown on the Run page."""


@news.command("add")
@click.argument("text")
@click.option("--user", "user_name", default="cli")
@friendly_errors
def news_add(text: str, user_name: str) -> None:
    """Add a line of news."""
    if not text.strip():
        raise CatalogError("news text is empty")
    db = database()
    db.write(lambda s: s.add(NewsLine(text=text.strip()[:2000], created_by=user_name)), what="add news")
    click.echo("news added")
