"""The queries behind every page: plain functions over a SQLAlchemy session, one module per concern.

Each query is shaped for an index of `hydra_assets.db.models` (see its docstring) and bounded by a
limit, so a page never loads a table: the Run grid reads `run_time`; the Log reads `ix_inferences_log`;
the Labeler reads `ix_images_labeler_queue` / `ix_images_editor` with keyset pagination; the Plot
Browser pages with LIMIT/OFFSET and a capped count.  Only `panel_app.store` calls them (pages ask the
store); `bench/pages.py` times them through the store.  They fill the data classes of
`panel_app.views_data`.
"""

from __future__ import annotations

from panel_app.queries.browser import SORTS, browse, browse_count
from panel_app.queries.catalogue import catalogue, groups, label_colour, plot_type_ids_in, user_role
from panel_app.queries.grid import (
    acknowledged_among,
    alarms_after,
    last_alarm_id,
    latest_run,
    news,
    open_alarms,
    run_grid,
)
from panel_app.queries.log import log_entries
from panel_app.queries.models import (
    active_model,
    confusion,
    model,
    models_of,
    threshold_changes,
    thresholds_of,
    training_set_counts,
    validation_weights,
)
from panel_app.queries.report import disagreements, reports
from panel_app.queries.status import arrivals, heartbeats, images_per_hour, stage_timings
from panel_app.queries.tiles import attach_inferences, editor_page, labeler_queue, queue_counts, tiles_of
from panel_app.queries.trends import trend

__all__ = [
    "SORTS", "acknowledged_among", "active_model", "alarms_after", "arrivals", "attach_inferences", "browse", "browse_count",
    "catalogue", "confusion", "disagreements", "editor_page", "groups", "heartbeats", "images_per_hour",
    "label_colour", "labeler_queue", "last_alarm_id", "latest_run", "log_entries", "model", "models_of", "news",
    "open_alarms",
    "plot_type_ids_in", "queue_counts", "reports", "run_grid", "stage_timings", "threshold_changes",
    "thresholds_of", "tiles_of", "training_set_counts", "trend", "user_role", "validation_weights",
]
