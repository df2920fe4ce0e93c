"""The chunk job and the ingestion code location pieces (assets, job, sensor, predictor resource).

`ingest_chunk` runs the three ingestion steps with the in-process executor: they are sequential anyway,
and one process per step would pay the interpreter, Dagster and definitions import three times (measured
in bench/ingest.py).  It also lets the Feeder hand its prepared arrays to Predict in memory.
`HYDRA_EXECUTOR=multiprocess|celery` (deploy/README.md) switches it without code changes; the steps then
rebuild the arrays from the stored images.
"""

from __future__ import annotations

import os

import dagster as dg

from hydra_assets.assets.ingest import INGEST_ASSETS
from hydra_assets.partitions import run_number
from hydra_assets.sensors.incoming import incoming_images


def chunk_executor() -> dg.ExecutorDefinition:
    choice = os.environ.get("HYDRA_EXECUTOR", "in_process").strip().lower().replace("-", "_")
    if choice == "celery":
        from dagster_celery import celery_executor  # optional: pip install dagster-celery

        return celery_executor
    if choice == "multiprocess":
        return dg.multiprocess_executor
    return dg.in_process_executor


ingest_chunk = dg.define_asset_job(
    "ingest_chunk",
    selection=dg.AssetSelection.assets(*INGEST_ASSETS),
    partitions_def=run_number,
    executor_def=chunk_executor(),
    description="Feeder → Predict → Keeper for the files of one run number's chunks (or the whole run).",
)

defs = dg.Definitions(
    assets=INGEST_ASSETS,
    jobs=[ingest_chunk],
    sensors=[incoming_images],
)
