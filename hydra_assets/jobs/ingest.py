"""The chunk job: Feeder → Predict → Keeper on the files of one run number's chunks.

`ingest_chunk` runs the three ingestion steps with the in-process executor by default: they are sequential
anyway, and one process per step would pay the interpreter, Dagster and definitions import three times
(measured in bench/ingest.py).  `HYDRA_EXECUTOR=multiprocess|celery` (deploy/README.md) switches it without
code changes: definitions.py builds the job with the executor of the installation's settings; with celery each
step is a task on a `hydra worker` (another machine, or another process here).  Every step
reads its inputs from the Hydra database and the stored images, so all executors give the same result.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg

from hydra_assets.assets.challenger import CHALLENGER_ASSETS
from hydra_assets.assets.flags import FLAG_ASSETS
from hydra_assets.assets.ingest import INGEST_ASSETS
from hydra_assets.assets.reference import REFERENCE_ASSETS
from hydra_assets.partitions import run_number

if TYPE_CHECKING:  # what define_asset_job returns; dagster does not export the name
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

INGEST_CHUNK = "ingest_chunk"  # the sensor names this job


def chunk_executor(choice: str = "in_process") -> dg.ExecutorDefinition:
    """The executor named by the `executor` setting (in_process | multiprocess | celery)."""
    if choice == "celery":
        return celery_chunk_executor()
    if choice == "multiprocess":
        return dg.multiprocess_executor
    return dg.in_process_executor


def celery_chunk_executor() -> dg.ExecutorDefinition:
    """dagster-celery's executor set up from the settings (HYDRA_CELERY_*): late acknowledgement, one step per
    worker at a time, and the queue of this code version (hydra_assets/distributed.py says why)."""
    try:
        from dagster_celery import celery_executor
    except ImportError as error:
        raise ImportError("HYDRA_EXECUTOR=celery needs the distributed extra: "
                          "pip install --constraint constraints.txt -e '.[distributed]'") from error

    from hydra_assets.distributed import settings_celery_config
    from hydra_assets.settings import load_settings

    return celery_executor.configured(settings_celery_config(load_settings()), name="celery")


def ingest_chunk_job(executor: str = "in_process") -> UnresolvedAssetJobDefinition:
    """The chunk job with the executor of the `executor` setting."""
    return dg.define_asset_job(
        INGEST_CHUNK,
        selection=dg.AssetSelection.assets(*INGEST_ASSETS, *REFERENCE_ASSETS, *FLAG_ASSETS,  # flags: the run's, after every chunk
                                            *CHALLENGER_ASSETS),  # last: the challenger in shadow
        partitions_def=run_number,
        executor_def=chunk_executor(executor),
        description="Feeder → Predict → Keeper for the files of one run number's chunks (or the whole run), "
                    "then the run's flags.",
    )
