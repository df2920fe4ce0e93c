"""The Panel app: one function per page of the registry for `pn.serve`, so every browser session gets its own
store and state."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import panel as pn

from hydra_assets.db.engine import HydraDB
from panel_app.auth import LOGIN_TEMPLATE, cookie_secret, load_credentials, session_user
from panel_app.config import PagesConfig
from panel_app.images import ImageLocator, image_routes
from panel_app.navigation import frame
from panel_app.pages import PAGES
from panel_app.pages.common import empty_state, esc, html_pane
from panel_app.store import HydraStore

log = logging.getLogger(__name__)
INDEX_TEMPLATE = Path(__file__).parent / "templates" / "index.html"  # "/": the registry's first page, links to all


def page_function(slug: str, db: HydraDB, config: PagesConfig, locator: ImageLocator, *, auth: bool
                  ) -> Callable[[], pn.viewable.Viewable]:
    """What `pn.serve` calls for each new session of a page."""

    def page() -> pn.viewable.Viewable:
        user = session_user(None if auth else config.local_user)
        store = HydraStore(db, config, locator=locator, user=user)
        try:
            body = PAGES[slug].view(store=store)
        except Exception as error:  # a page must say what failed, not show a traceback
            log.exception("page %s failed to load", slug)
            body = html_pane(empty_state(
                f"The {PAGES[slug].title} page could not load",
                f"{esc(type(error).__name__)}: {esc(error)}",
                "The server log has the details; the other pages may still work.",
            ))
        return frame(store, slug, body, auth=auth)

    page.__name__ = f"{slug}_page"
    return page


def build_app(config: PagesConfig, db: HydraDB | None = None, *, auth: bool = True
              ) -> tuple[dict[str, Callable[[], pn.viewable.Viewable]], list[tuple], HydraDB]:
    """The `pn.serve` mapping slug -> page function, the image routes, and the database they share."""
    db = db or HydraDB(config.settings.db_url)
    locator = ImageLocator(db, config.settings)
    pages = {slug: page_function(slug, db, config, locator, auth=auth) for slug in PAGES}
    return pages, image_routes(locator), db


def serve(
    config: PagesConfig,
    *,
    port: int = 5006,
    address: str = "127.0.0.1",
    credentials: Path | None = None,
    origins: tuple[str, ...] = (),
    db: HydraDB | None = None,
    show: bool = False,
    threaded: bool = False,
    **kwargs: Any,
):  # type: ignore[no-untyped-def]
    """Serve every page; with `credentials`, behind Panel's basic-auth login."""
    auth = credentials is not None
    pages, routes, _db = build_app(config, db, auth=auth)
    options: dict[str, Any] = {}
    if auth:
        load_credentials(credentials)  # refuse a broken file before starting
        options.update(basic_auth=str(credentials), cookie_secret=cookie_secret(config.settings),
                       login_template=str(LOGIN_TEMPLATE))
    options["index"] = str(INDEX_TEMPLATE)
    allowed = list(origins) or [f"{host}:{port}" for host in {"localhost", "127.0.0.1", address}]
    return pn.serve(
        pages,
        port=port,
        address=address,
        websocket_origin=allowed,
        title={slug: f"Hydra · {page.title}" for slug, page in PAGES.items()},
        extra_patterns=routes,
        show=show,
        threaded=threaded,
        **options,
        **kwargs,
    )
