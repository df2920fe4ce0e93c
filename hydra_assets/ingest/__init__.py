"""Live ingestion, as plain functions the Dagster assets, the sensor and the CLI call.

- `scan` / `tick`: the incoming folder, chunk grouping, run requests and the sensor cursor;
- `feeder`: files → registered (or quarantined) images and the model's input arrays;
- `predictor` / `predict`: classification in-process or in the warm predictor service, inference rows;
- `launcher`: the warm run launcher dagster.yaml configures (runs forked from a pre-imported worker);
- `keeper`: keep decisions, Labeler queue, Run page rows, alarms;
- `rules`: confirmation, keep and collect rules; `records`: the inference JSON; `health`: heartbeats,
  stage timings; `quarantine`: refused files, moved aside with their reason; `checks`: asset-check
  queries; `offline`: `hydra classify`; `resubmit`: chunks whose runs failed for good, submitted again.

Nothing here imports TensorFlow at import time: the sensor and the CLI stay fast.
"""
