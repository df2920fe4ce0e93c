"""The one Definitions object of the Hydra code location, merged from what each package exposes."""

import dagster as dg

from hydra_assets.assets.training import defs as training_defs
from hydra_assets.jobs.ingest import defs as ingest_defs
from hydra_assets.jobs.training import defs as training_job_defs
from hydra_assets.resources.hydra import HydraResource

# Each package exposes its own Definitions; they are merged here, in one place.
# (ingestion: hydra_assets.assets.ingest / sensors.incoming; training: hydra_assets.assets.training)
resources = dg.Definitions(resources={"hydra": HydraResource()})

defs = dg.Definitions.merge(resources, ingest_defs, training_defs, training_job_defs)
