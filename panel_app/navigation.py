"""The frame around every page: the navigation bar, built from the page registry (`panel_app.pages.PAGES`)."""

from __future__ import annotations

from typing import Any

import panel as pn

from panel_app.pages import PAGES
from panel_app.pages.common import esc
from panel_app.store import HydraStore

NAV_CSS = """
:host { width: 100%; }
nav { display: flex; flex-wrap: wrap; align-items: center; gap: 4px 16px; background: #1f2d3d; color: #fff;
  padding: 8px 16px; border-radius: 6px; font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
nav .brand { font-weight: 700; letter-spacing: .03em; margin-right: 6px; }
nav a { color: #cfe1ff; text-decoration: none; padding: 2px 4px; border-radius: 4px; }
nav a:hover { background: #ffffff1f; }
nav a.here { color: #fff; font-weight: 600; border-bottom: 2px solid #58a6ff; }
nav .right { margin-left: auto; display: flex; gap: 12px; align-items: center; color: #b9c6d6; font-size: 0.9em; }
"""


def nav_bar(store: HydraStore, here: str, *, auth: bool) -> pn.pane.HTML:
    links = " ".join(
        f'<a href="./{page.slug}" class="{"here" if page.slug == here else ""}" title="{esc(page.purpose)}">'
        f"{esc(page.title)}</a>"
        for page in PAGES.values()
    )
    config = store.config
    logout = ' <a href="./logout">sign out</a>' if auth else ""
    right = (
        f'<span class="right"><a href="{esc(config.dagster_url)}" target="_blank" rel="noopener">Dagster</a>'
        f'<a href="{esc(config.mlflow_url)}" target="_blank" rel="noopener">MLflow</a>'
        f'<span class="user">{esc(store.describe_user())}</span>{logout}</span>'
    )
    return pn.pane.HTML(f'<nav><span class="brand">HYDRA DQM</span>{links}{right}</nav>',
                        stylesheets=[NAV_CSS], sizing_mode="stretch_width", margin=(5, 10))


def frame(store: HydraStore, here: str, body: Any, *, auth: bool = False) -> pn.Column:
    """A page: navigation bar on top, the page below."""
    return pn.Column(nav_bar(store, here, auth=auth), body, sizing_mode="stretch_width")
