"""The pages' one door to Hydra's data: a parameterized store per browser session.

Pages hold view state only and ask the store: typed read methods (`reads.PageReads`, over
`panel_app.queries` and MLflow for model curves the database lacks) and writes that check permission and
audit server-side (`writes.PageWrites`).  Split in two modules because a page makes some forty kinds of
reads and writes; `cache.SHARED` holds what every session shares for a moment.
"""

from __future__ import annotations

from typing import Any

import param

from hydra_assets.catalog import CatalogError, PermissionDenied
from hydra_assets.db.engine import HydraDB
from panel_app.config import PagesConfig
from panel_app.images import ImageLocator
from panel_app.store.cache import SHARED
from panel_app.store.writes import PageWrites


class HydraStore(PageWrites, param.Parameterized):
    """Everything a page reads or writes, for one browser session and its logged-in user."""

    user = param.String(default=None, allow_None=True, doc="Login name; mapped to the Hydra user of that name.")
    version = param.Integer(default=0, doc="Bumped after every write, so pages can refresh.")

    def __init__(self, db: HydraDB, config: PagesConfig, *, locator: ImageLocator | None = None, **params: Any):
        super().__init__(**params)
        self.db = db
        self.config = config
        self.locator = locator or ImageLocator(db, config.settings)


__all__ = ["SHARED", "CatalogError", "HydraStore", "PermissionDenied"]
