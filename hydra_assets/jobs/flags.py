"""`recompute_flags`: a run's flags only, for the runs whose images a person labeled (sensors/labels.py)."""

import dagster as dg

from hydra_assets.assets.flags import FLAG_ASSETS
from hydra_assets.partitions import run_number

RECOMPUTE_FLAGS = "recompute_flags"  # the label sensor names this job

recompute_flags = dg.define_asset_job(
    RECOMPUTE_FLAGS,
    selection=dg.AssetSelection.assets(*FLAG_ASSETS),
    partitions_def=run_number,
    executor_def=dg.in_process_executor,
    description="Recompute one run's flags (after a person labeled images of the run).",
)
