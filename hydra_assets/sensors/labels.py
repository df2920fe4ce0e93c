"""The label sensor: a person labeled images of a run → that run's flags are computed again.

Its cursor is the last `label_history.id` handled; the decision (which runs) is
`hydra_assets.flags.relabel.relabeled_runs`, tested without Dagster.  It names its job, `recompute_flags`,
rather than importing it (a sensor module imports no asset or job module).
"""

import dagster as dg

from hydra_assets.flags.relabel import parse_cursor, relabeled_runs, start_id
from hydra_assets.partitions import run_number
from hydra_assets.resources.hydra import HydraResource

LABELS_PER_TICK = 5000  # a bulk import is spread over ticks; each tick asks once per run


@dg.sensor(
    name="label_changes",
    job_name="recompute_flags",
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests recompute_flags for the runs whose images got new human labels.",
)
def label_changes(context: dg.SensorEvaluationContext, hydra: HydraResource) -> dg.SensorResult:
    """One recompute_flags run per run number whose images were labeled since the last tick."""
    after = parse_cursor(context.cursor)
    with hydra.db.read() as session:
        if after < 0:
            first = start_id(session)
            return dg.SensorResult(skip_reason=dg.SkipReason(f"starting after label {first}"), cursor=str(first))
        found = relabeled_runs(session, after, limit=LABELS_PER_TICK)
        session.rollback()
    if not found.runs:
        return dg.SensorResult(skip_reason=dg.SkipReason("no new labels"), cursor=str(found.last_id))
    keys = [str(run) for run in found.runs]
    new = [key for key in keys if not context.instance.has_dynamic_partition(run_number.name, key)]
    context.log.info(f"{found.labels} new labels in runs {', '.join(keys)}")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"flags-{key}-{found.last_id}", partition_key=key,
                                    tags={"hydra/source": "labels"}) for key in keys],
        dynamic_partitions_requests=[run_number.build_add_request(new)] if new else [],
        cursor=str(found.last_id),
    )
