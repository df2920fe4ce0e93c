"""The Hydra database and settings as a Dagster resource."""

from __future__ import annotations

from functools import cached_property

import dagster as dg
from pydantic import PrivateAttr

from hydra_assets.db.engine import HydraDB
from hydra_assets.settings import HydraSettings, load_settings


class HydraResource(dg.ConfigurableResource):
    """Settings and database of a Hydra installation; empty fields fall back to the HYDRA_* environment."""

    home: str | None = None
    db_url: str | None = None

    _db: HydraDB | None = PrivateAttr(default=None)

    @cached_property
    def settings(self) -> HydraSettings:
        overrides = {k: v for k, v in {"home": self.home, "db_url": self.db_url}.items() if v}
        return load_settings(**overrides)

    @property
    def db(self) -> HydraDB:
        """One engine per process (runs in the same process share the pool)."""
        if self._db is None:
            self._db = HydraDB(self.settings.db_url)
        return self._db

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._db is not None:
            self._db.dispose()
            self._db = None
