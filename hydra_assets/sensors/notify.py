"""The notifier: every 30 s, alarms and Bad flags go out to webhooks and e-mail (hydra_assets.notify).

It requests no run: sending is a side effect of the tick, kept out of the pipeline's steps so a dead
webhook never slows ingestion.  The notifier's own cursor lives in the Hydra database (shared with
`hydra notify send`); the tick's cursor only echoes it for the Dagster UI.
"""

from __future__ import annotations

import dagster as dg

from hydra_assets.notify import dispatch, read_cursor
from hydra_assets.resources.hydra import HydraResource

NOTIFY_INTERVAL_SECONDS = 30


@dg.sensor(
    name="notifications",
    minimum_interval_seconds=NOTIFY_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Sends new alarms and Bad run flags to the notification targets (`hydra notify list`).",
)
def notifications(context: dg.SensorEvaluationContext, hydra: HydraResource) -> dg.SensorResult:
    """One dispatch pass; failed deliveries are logged and recorded, never raised."""
    outcome = dispatch(hydra.db, hydra.settings, budget_s=30.0)  # the tick stays under Dagster's 60 s
    for failure in outcome.failed:
        context.log.warning(f"notification target {failure.target_id}: {failure.error}")
    with hydra.db.read() as session:
        cursor = read_cursor(session)
    return dg.SensorResult(
        skip_reason=dg.SkipReason(outcome.summary()),
        cursor=f"alarm {cursor[0]}, flag {cursor[1]}" if cursor else None,
    )
