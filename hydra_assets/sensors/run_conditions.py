"""The run conditions file sensor: imports HYDRA_RUN_CONDITIONS_FILE again whenever it changes.

The decision (changed since the last import, and not being written) is `run_conditions.file_changed`; the
cursor is the file's modification time and size at the last import.  A file that cannot be read as a
whole is reported once per version (the cursor moves on), so a broken file is not re-read every tick.
Like the notifier it requests no run: importing a file is a few database writes.
"""

from __future__ import annotations

import json
import time

import dagster as dg

from hydra_assets.resources.hydra import HydraResource
from hydra_assets.run_conditions import RunConditionsError, file_changed, file_signature, import_conditions

RUN_CONDITIONS_INTERVAL_SECONDS = 30


@dg.sensor(
    name="run_conditions",
    minimum_interval_seconds=RUN_CONDITIONS_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Imports HYDRA_RUN_CONDITIONS_FILE (CSV or JSON run conditions) whenever it changes.",
)
def run_conditions(context: dg.SensorEvaluationContext, hydra: HydraResource) -> dg.SensorResult:
    path = hydra.settings.run_conditions_file
    if path is None:
        return dg.SensorResult(skip_reason=dg.SkipReason("HYDRA_RUN_CONDITIONS_FILE is not set"))
    path = path.expanduser()
    signature = file_signature(path)
    if signature is None:
        return dg.SensorResult(skip_reason=dg.SkipReason(f"{path} does not exist (yet)"))
    if not file_changed(context.cursor, signature, time.time_ns(), hydra.settings.min_file_age_seconds):
        return dg.SensorResult(skip_reason=dg.SkipReason(f"{path} unchanged since the last import"))
    cursor = json.dumps(signature, sort_keys=True)
    try:
        report = import_conditions(hydra.db, str(path))
    except RunConditionsError as error:
        context.log.error(f"run conditions not imported: {error}")
        return dg.SensorResult(skip_reason=dg.SkipReason(f"not imported: {error}"), cursor=cursor)
    for problem in report.problems[:50]:
        context.log.warning(problem)
    context.log.info(report.summary())
    return dg.SensorResult(skip_reason=dg.SkipReason(report.summary()), cursor=cursor)
