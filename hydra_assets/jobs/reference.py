"""`reference_refresh`: plot types whose reference rule is "auto" follow their latest good runs, hourly.

The rule (which runs qualify) is `hydra_assets.references.auto_runs`, documented in docs/reference.md.  A
plot type whose qualifying runs did not change keeps its version; one that cannot be refreshed is logged
and the others go on.  `hydra reference auto T` does the same for one plot type at once.
"""

import dagster as dg

from hydra_assets.references import refresh_references
from hydra_assets.resources.hydra import HydraResource

REFERENCE_REFRESH = "reference_refresh"
REFRESH_CRON = "17 * * * *"  # hourly, off the full hour


@dg.op
def refresh_auto_references(context: dg.OpExecutionContext, hydra: HydraResource) -> None:
    """A new reference version for every "auto" plot type whose latest good runs changed."""
    changes = hydra.db.write(lambda s: refresh_references(s, hydra.settings.images_dir), what="reference refresh")
    for change in changes:
        context.log.info(change.message)


@dg.job(name=REFERENCE_REFRESH, executor_def=dg.in_process_executor,
        description="Plot types with the auto reference rule follow their latest good runs.")
def reference_refresh() -> None:
    refresh_auto_references()


reference_refresh_schedule = dg.ScheduleDefinition(
    name="reference_refresh_hourly", job=reference_refresh, cron_schedule=REFRESH_CRON,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Hourly: plot types with the auto reference rule follow their latest good runs.")
