"""Hydra database: models, engine with retried writes, and Alembic migrations."""

from hydra_assets.db.engine import HydraDB, is_retryable, make_engine
from hydra_assets.db.migrate import downgrade, upgrade

__all__ = ["HydraDB", "downgrade", "is_retryable", "make_engine", "upgrade"]
