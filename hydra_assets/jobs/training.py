"""The training job: every training asset of one plot type (partition), in order.

`hydra train T` runs it in-process against the Hydra Dagster instance, so the run shows in the UI under
this job's name; in the UI, pick the plot type partition and launch it from the job's launchpad.
"""

from __future__ import annotations

import dagster as dg

from hydra_assets.assets.training import TRAINING_ASSETS
from hydra_assets.partitions import plot_type

train_plot_type = dg.define_asset_job(
    "train_plot_type",
    selection=dg.AssetSelection.assets(*TRAINING_ASSETS),
    partitions_def=plot_type,
    description="Training set, model, thresholds and training report of one plot type.",
    tags={"hydra/kind": "training"},
)
