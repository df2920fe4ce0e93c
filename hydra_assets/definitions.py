"""The one Definitions object of the Hydra code location, merged from what each package exposes.

Dagster refuses a module with more than one Definitions at module scope, so the packages are imported
as modules and only `defs` is bound here.
"""

import dagster as dg

from hydra_assets.assets import training as training_assets
from hydra_assets.jobs import ingest as ingest_jobs
from hydra_assets.jobs import training as training_jobs
from hydra_assets.resources.hydra import HydraResource

defs = dg.Definitions.merge(
    dg.Definitions(resources={"hydra": HydraResource()}),
    ingest_jobs.defs,
    training_assets.defs,
    training_jobs.defs,
)
