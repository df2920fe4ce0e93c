"""The one module that owns Hydra's partitions definitions."""

import dagster as dg

# Live ingestion assets (image, inference, keep) are partitioned by experiment run number.
run_number = dg.DynamicPartitionsDefinition(name="run_number")

# Training assets (training_set, model, thresholds, training_report) are partitioned by plot type.
plot_type = dg.DynamicPartitionsDefinition(name="plot_type")
