"""A Hydra home: bring it up to date (`hydra init`, `hydra up`, benches) and open its database.

Plain functions without the command line, so `hydra up`, the benches and tests share them; the
command line only turns `HomeError` into its one-line message.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from hydra_assets import catalog
from hydra_assets.db.engine import HydraDB
from hydra_assets.settings import HydraSettings, load_settings

REPO_DAGSTER_YAML = Path(__file__).resolve().parents[1] / "dagster.yaml"


class HomeError(RuntimeError):
    """The Hydra database cannot be used yet (missing, unreachable or without schema); says what to do."""


def redact(url: str) -> str:
    """A database or tracking URL with its password hidden, fit for printing."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def open_database(config: HydraSettings) -> HydraDB:
    """The Hydra database, refusing clearly when `hydra init` has not been run."""
    from sqlalchemy.engine import make_url

    from hydra_assets.db.migrate import current_revision

    parsed = make_url(config.db_url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and not Path(parsed.database).exists():
        raise HomeError(f"no Hydra database at {parsed.database}; run `hydra init` first")
    try:
        revision = current_revision(config.db_url)
    except Exception as error:
        raise HomeError(f"cannot open the Hydra database {redact(config.db_url)}: {error}") from error
    if revision is None:
        raise HomeError(f"the Hydra database {redact(config.db_url)} has no schema; run `hydra init` first")
    return HydraDB(config.db_url)


def initialise(config: HydraSettings | None = None) -> dict[str, str]:
    """Bring a Hydra home up to date: folders, schema, roles, Dagster home, MLflow store (idempotent)."""
    from hydra_assets.db.migrate import upgrade
    from hydra_assets.tracking import ensure_tracking_store

    config = config or load_settings()
    config.ensure_folders()
    upgrade(config.db_url)
    db = HydraDB(config.db_url)
    try:
        db.write(catalog.ensure_roles, what="create roles")
    finally:
        db.dispose()
    dagster_yaml = config.dagster_home / "dagster.yaml"
    if not dagster_yaml.exists() and REPO_DAGSTER_YAML.exists():
        shutil.copyfile(REPO_DAGSTER_YAML, dagster_yaml)
    ensure_tracking_store(config)
    return {
        "home": str(config.home),
        "database": redact(config.db_url),
        "mlflow": redact(config.mlflow_tracking_uri),
        "dagster_home": str(config.dagster_home),
        "incoming": str(config.input_dir),
    }
