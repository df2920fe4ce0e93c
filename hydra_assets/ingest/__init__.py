"""Live ingestion, as plain functions the Dagster assets, the sensor and the CLI call.

- `scan` / `tick`: the incoming folder, chunk grouping, run requests and the sensor cursor;
- `feeder`: files → registered (or quarantined) images and the model's input arrays;
- `classifier` / `predictor` / `predict`: classification in-process or in the warm predictor service,
  inference rows; `model_inputs`: the Feeder's prepared inputs, handed to Predict through shared storage;
  `reference_grids`: the Feeder's reference grids, handed to the reference step the same way;
- `launcher`: only an alias of `hydra_assets.warm_launcher` for Dagster homes whose dagster.yaml names it;
- `keeper`: keep decisions, Labeler queue, Run page rows, alarms;
- confirmation, keep and collect rules live in `hydra_assets.rules`; `records`: the inference JSON; `health`: heartbeats,
  stage timings; `quarantine`: refused files, moved aside with their reason; `checks`: asset-check
  queries; `offline`: `hydra classify`; `resubmit`: chunks whose runs failed for good, submitted again.

Nothing here imports TensorFlow at import time: the sensor and the CLI stay fast.
"""
