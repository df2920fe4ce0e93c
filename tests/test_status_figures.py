"""Status page figures (issue 18): both tests failed on the code before the fix.

"2082 images in 24 h (86.8 per hour)" when all of them arrived in the last 20 minutes, and the per-hour
bars drawn an hour before the images arrived (a bin named by its start, its bar centred on that start).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from hydra_assets import catalog
from hydra_assets.db.models import Image, utcnow
from panel_app.config import PagesConfig
from panel_app.pages.charts import hourly_bars
from panel_app.pages.status import StatusPage, arrival_text
from panel_app.queries.status import arrivals, images_per_hour
from panel_app.store import SHARED, HydraStore


def add_images(db, times: list[datetime]) -> None:  # type: ignore[no-untyped-def]
    def work(session) -> None:  # type: ignore[no-untyped-def]
        plot_type = catalog.add_plot_type(session, "CDC_timing", ["Good", "Bad"], ["Bad"])
        for k, at in enumerate(times):
            session.add(Image(plot_type_id=plot_type.id, digest=f"{k:064d}", file_name=f"CDC_timing_{k}.png",
                              run_number=130000, chunk=k, received_at=at))

    db.write(work, what="add images")


def test_rate_is_over_the_time_the_images_arrived_in_not_the_whole_window(sqlite_db, hydra_home):
    now = utcnow()
    add_images(sqlite_db, [now - timedelta(minutes=20) + timedelta(seconds=20 * k) for k in range(60)])
    SHARED.clear()
    page = StatusPage(HydraStore(sqlite_db, PagesConfig(settings=hydra_home, sync_mlflow_alias=False), user="cli"))
    summary = page.summary_pane.object
    assert "<b>60</b> images in 24 h, all in the last 20 min" in summary, summary
    assert "(180.0 per hour since the first)" in summary  # 60 in 20 min, not 60 / 24 = 2.5
    with sqlite_db.read() as s:
        assert arrivals(s, now - timedelta(hours=24))[0] == 60


def test_rate_over_a_window_the_images_fill_is_per_hour_of_the_window():
    now = datetime(2026, 12, 1, 12)
    assert arrival_text(48, now - timedelta(hours=23.9), now, 24) == "<b>48</b> images in 24 h (2.0 per hour)"
    assert arrival_text(0, None, now, 24) == "<b>0</b> images in 24 h"
    assert "all in the last 3.0 h (10.0 per hour since the first)" in arrival_text(30, now - timedelta(hours=3), now, 24)


def test_hour_bars_are_drawn_over_the_hour_whose_images_they_count(sqlite_db):
    arrived = [datetime(2026, 12, 1, 14, 40) + timedelta(minutes=k) for k in range(20)]  # 14:40–14:59
    add_images(sqlite_db, arrived)
    with sqlite_db.read() as s:
        hourly = images_per_hour(s, datetime(2026, 12, 1))
    assert hourly == [(datetime(2026, 12, 1, 14), 20)]
    bars = hourly_bars(hourly).renderers[0]
    centre = bars.data_source.data["x"][0]
    half = timedelta(milliseconds=bars.glyph.width / 2)
    left, right = centre - half, centre + half
    assert datetime(2026, 12, 1, 14) <= left < right <= datetime(2026, 12, 1, 15), (left, right)


def test_the_reference_step_has_its_timings_on_the_status_page(sqlite_db, hydra_home):
    """The reference step records stage "reference" rows: shown beside the Feeder's, with its own histogram."""
    from hydra_assets.db.models import StageTiming

    now = utcnow()

    def work(session) -> None:  # type: ignore[no-untyped-def]
        for k, (stage, ms) in enumerate([("feeder", 300.0), ("reference", 12.0), ("reference", 14.0),
                                         ("reference", 40.0)]):
            session.add(StageTiming(stage=stage, run_number=130000, chunk=k, image_count=1, duration_ms=ms,
                                    started_at=now - timedelta(minutes=5), finished_at=now - timedelta(minutes=5)))

    sqlite_db.write(work, what="add timings")
    SHARED.clear()
    page = StatusPage(HydraStore(sqlite_db, PagesConfig(settings=hydra_home, sync_mlflow_alias=False), user="cli"))
    summary = page.summary_pane.object
    assert "feeder: median 300 ms" in summary and "reference: median 14 ms, p95 40 ms" in summary, summary
    titles = [pane.object.title.text for pane in page.charts[0]]
    assert titles == ["feeder: 1 executions", "predict: 0 executions", "reference: 3 executions",
                      "keeper: 0 executions"]
