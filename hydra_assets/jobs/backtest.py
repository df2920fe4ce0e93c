"""`backtest_model`: the backtest asset over run-number partitions, and the two ways a backtest is launched.

- With the Dagster daemon running, a backtest is an asset **backfill** of `backtest_inference` over the runs
  it covers (one Dagster run per run number, the backfill's page shows progress), added to the Hydra
  Dagster instance by `hydra model backtest` or, for a backtest requested on the Library page, by the
  `backtest_requests` sensor.
- Without the daemon (tests, `hydra model backtest --wait`), the same job runs each partition in this
  process against the same instance: the runs still show in the Dagster UI (tag ``hydra/backtest``), and
  the backtest completes before the command returns.

Launching uses Dagster's backfill record (`PartitionBackfill.from_asset_partitions`, `instance.add_backfill`),
which is what the UI's "Materialize" dialog adds; it is not exported by `dagster`, hence the private imports.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import dagster as dg

from hydra_assets.assets.shadow import BACKTEST_ASSETS, backtest_inference
from hydra_assets.backtest import claim, fail, requested_backtests, set_backfill_id
from hydra_assets.partitions import run_number
from hydra_assets.resources.hydra import HydraResource
from hydra_assets.settings import HydraSettings

BACKTEST_JOB = "backtest_model"
TAG = "hydra/backtest"
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}  # in-process: no per-step lines in the terminal

backtest_model = dg.define_asset_job(
    BACKTEST_JOB,
    selection=dg.AssetSelection.assets(*BACKTEST_ASSETS),
    partitions_def=run_number,
    executor_def=dg.in_process_executor,
    description="Shadow inferences of a backtest's candidate for one run (config: backtest_id).",
    tags={"hydra/kind": "backtest"},
)


def run_config(backtest_id: int) -> dict[str, object]:
    return {"ops": {backtest_inference.op.name: {"config": {"backtest_id": int(backtest_id)}}}}


def _definitions(hydra: HydraResource) -> dg.Definitions:
    """The asset and job alone, bound to one installation (no import of `definitions`: it imports us)."""
    return dg.Definitions(assets=BACKTEST_ASSETS, jobs=[backtest_model], resources={"hydra": hydra})


def add_partitions(instance: dg.DagsterInstance, runs: list[int]) -> None:
    keys = [str(run) for run in runs]
    known = set(instance.get_dynamic_partitions(run_number.name))
    missing = [key for key in keys if key not in known]
    if missing:
        instance.add_dynamic_partitions(run_number.name, missing)


def daemon_running(instance: dg.DagsterInstance) -> bool:
    """Whether a Dagster daemon with a healthy backfill loop heartbeats into this instance."""
    if instance.is_ephemeral:
        return False
    try:
        status = instance.get_daemon_statuses(["BACKFILL"]).get("BACKFILL")
    except Exception:  # no heartbeat table yet
        return False
    return bool(status and status.healthy)


def launch_backfill(instance: dg.DagsterInstance, backtest_id: int, runs: list[int], *, title: str = "") -> str:
    """Add an asset backfill of `backtest_inference` over `runs` (the daemon launches its runs); its id."""
    from dagster._core.execution.backfill import PartitionBackfill
    from dagster._core.utils import make_new_backfill_id

    add_partitions(instance, runs)
    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id=make_new_backfill_id(),
        asset_graph=_definitions(HydraResource()).resolve_asset_graph(),
        partition_names=[str(run) for run in runs],
        asset_selection=[backtest_inference.key],
        backfill_timestamp=time.time(),
        tags={TAG: str(backtest_id)},
        dynamic_partitions_store=instance,
        all_partitions=False,
        title=title or f"backtest {backtest_id}",
        description=f"Hydra backtest {backtest_id}: shadow inferences over {len(runs)} runs",
        run_config=run_config(backtest_id),
    )
    instance.add_backfill(backfill)
    return backfill.backfill_id


@dataclass
class InProcessResult:
    run_ids: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # "run N: why"


def run_in_process(instance: dg.DagsterInstance, config: HydraSettings, backtest_id: int,
                   runs: list[int]) -> InProcessResult:
    """Each run's partition of `backtest_model` executed here, one Dagster run per run number, in order."""
    add_partitions(instance, runs)
    job = _definitions(HydraResource(home=str(config.home), db_url=config.db_url)).resolve_job_def(BACKTEST_JOB)
    out = InProcessResult()
    for run in runs:
        result = job.execute_in_process(run_config={**run_config(backtest_id), **QUIET}, instance=instance,
                                        partition_key=str(run), tags={TAG: str(backtest_id)},
                                        raise_on_error=False)
        out.run_ids.append(result.run_id)
        if not result.success:
            errors = [str(e.event_specific_data.error.message).splitlines()[0]  # type: ignore[union-attr]
                      for e in result.all_events if e.is_step_failure]
            out.failed.append(f"run {run}: {errors[0] if errors else 'failed'}")
    return out


@dg.sensor(
    name="backtest_requests",
    minimum_interval_seconds=10,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Launches the backfill of each backtest requested on the Library page.",
)
def backtest_requests(context: dg.SensorEvaluationContext, hydra: HydraResource) -> dg.SkipReason:
    """Claim each requested backtest and add its backfill to this instance (the daemon runs it)."""
    with hydra.db.read() as session:
        waiting = requested_backtests(session)
    launched = []
    for backtest_id, runs in waiting:
        if not claim(hydra.db, backtest_id, backfill_id="", how="launching the Dagster backfill"):
            continue  # the CLI or another tick took it
        try:
            backfill_id = launch_backfill(context.instance, backtest_id, runs)
        except Exception as error:  # told on the Library page; the other requests go on
            fail(hydra.db, backtest_id, f"could not launch the Dagster backfill: {error}")
            context.log.exception(f"backtest {backtest_id}")
            continue
        set_backfill_id(hydra.db, backtest_id, backfill_id, f"Dagster backfill {backfill_id} over {len(runs)} runs")
        launched.append(f"{backtest_id} ({backfill_id})")
    return dg.SkipReason(f"launched backtests {', '.join(launched)}" if launched else "no backtest requested")
