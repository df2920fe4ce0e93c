"""The one Definitions object of the Hydra code location, merged from what each package exposes."""

import dagster as dg

defs = dg.Definitions()
