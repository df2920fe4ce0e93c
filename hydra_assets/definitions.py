"""The one Definitions object of the Hydra code location, merged from what each package exposes."""

import dagster as dg

from hydra_assets.resources.hydra import HydraResource

# Each package exposes its own Definitions; they are merged here, in one place.
# (ingestion: hydra_assets.assets.ingest / sensors.incoming; training: hydra_assets.assets.training)
resources = dg.Definitions(resources={"hydra": HydraResource()})

defs = dg.Definitions.merge(resources)
