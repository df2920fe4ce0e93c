"""Status page: how long each pipeline stage takes, whether each is alive, how many images arrive, and which
runs call for retraining."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

import panel as pn
import param

from hydra_assets.db.models import utcnow
from hydra_assets.demo import progress_done, read_progress
from panel_app.pages.charts import hourly_bars, run_scatter, stage_histogram
from panel_app.pages.common import ago, empty_state, esc, fmt_time, html_pane, suggestions_html
from panel_app.store import HydraStore
from panel_app.views_data import TIMED_STAGES, window

HEARTBEAT_OK_S, HEARTBEAT_LATE_S = 120, 600


def demo_progress_html(progress: dict[str, dict[str, str]]) -> str:
    """A banner with each demo plot type's set-up step while `hydra up` prepares the demo; "" once all are done."""
    if not progress or progress_done(progress):
        return ""
    colours = {"active": "#009E73", "failed": "#b42318", "training": "#E69F00", "generating history": "#56B4E9"}
    rows = "".join(
        f"<tr><td><b>{esc(name)}</b></td><td><span class=chip style='background:{colours.get(p.get('step', ''), '#8c96a3')}'>"
        f"{esc(p.get('step', ''))}</span></td><td class=muted>{esc(p.get('detail', ''))}</td></tr>"
        for name, p in progress.items())
    done = sum(p.get("step") == "active" for p in progress.values())
    return (f"<div class=suggest><b class=head>Demo set-up: {done} of {len(progress)} models active</b> The demo's "
            "labeled history is generated and its models trained in the background; each plot type's Run cards "
            f"are classified once its model is active.<table class=hy>{rows}</table></div>")


def beat_state(beat_at: datetime, now: datetime) -> str:
    seconds = (now - beat_at).total_seconds()
    return "ok" if seconds <= HEARTBEAT_OK_S else "late" if seconds <= HEARTBEAT_LATE_S else "stale"


def per_run_means(rows: list[tuple[str, float, int, datetime]]) -> dict[str, tuple[list[int], list[float]]]:
    """Average duration per (stage, run number), run numbers ascending."""
    sums: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for stage, duration, run, _at in rows:
        sums[stage][run].append(float(duration))
    return {stage: (sorted(runs), [sum(runs[r]) / len(runs[r]) for r in sorted(runs)])
            for stage, runs in sums.items()}


def arrival_text(count: int, first: datetime | None, now: datetime, hours: float) -> str:
    """Images received in the window and their rate over the time they actually arrived in.

    A rate over the whole window would say "86.8 per hour" for 2082 images that all came in the last 20
    minutes; so when the first image of the window is recent, say so and divide by that span.
    """
    if not count or first is None:
        return f"<b>0</b> images in {hours:g} h"
    span_h = max((now - first).total_seconds() / 3600, 1 / 60)
    if span_h >= 0.95 * float(hours):
        return f"<b>{count}</b> images in {hours:g} h ({count / float(hours):.1f} per hour)"
    span = f"{max(1, round(span_h * 60))} min" if span_h < 1 else f"{span_h:.1f} h"
    return f"<b>{count}</b> images in {hours:g} h, all in the last {span} ({count / span_h:.1f} per hour since the first)"


class StatusPage(pn.viewable.Viewer):
    hours = param.Number(default=24.0, bounds=(1, 24 * 14), step=1, label="Window (hours)")

    def __init__(self, store: HydraStore, **params) -> None:
        self.store = store
        super().__init__(**params)
        self.beats_pane = html_pane("")
        self.suggestions_pane = html_pane("")
        self.demo_pane = html_pane("")  # the demo set-up's progress while `hydra up` prepares it
        self.summary_pane = html_pane("")
        self.charts = pn.Column(sizing_mode="stretch_width")
        self.timings: list[tuple[str, float, int, datetime]] = []
        self.hourly: list[tuple[datetime, int]] = []
        self._signature: object = None
        self.refresh()

    @param.depends("hours", watch=True)
    def refresh(self) -> None:
        now = utcnow()
        since, _ = window(self.hours, now=now)
        beats = self.store.heartbeats()
        self.timings = self.store.stage_timings(since)
        self.hourly = self.store.images_per_hour(since)
        self.arrived = self.store.arrivals(since)
        self.now = now
        self.beats_pane.object = self.beats_html(beats, now)
        self.suggestions_pane.object = suggestions_html(self.store.suggestions(since=since))
        self.demo_pane.object = demo_progress_html(read_progress(self.store.config.settings.home))
        self.summary_pane.object = self.summary_html()
        signature = (self.hours, len(self.timings), max((r[3] for r in self.timings), default=None), tuple(self.hourly))
        if signature == self._signature:
            return  # keep the charts (and the user's zoom) when nothing changed
        self._signature = signature
        if not self.timings and not self.hourly:
            self.charts[:] = [html_pane(empty_state(
                f"No pipeline activity in the last {self.hours:g} hours",
                "Stage timings appear once the Feeder, Predict, reference and Keeper steps process images.",
                f'Check the sensors and runs in the <a href="{esc(self.store.config.dagster_url)}" target="_blank">'
                "Dagster UI</a>.",
            ))]
            return
        by_stage = {stage: [d for s, d, _r, _a in self.timings if s == stage] for stage in TIMED_STAGES}
        self.charts[:] = [
            pn.Row(*(pn.pane.Bokeh(stage_histogram(by_stage[stage], stage)) for stage in TIMED_STAGES)),
            pn.pane.Bokeh(run_scatter(per_run_means(self.timings)), sizing_mode="stretch_width"),
            pn.pane.Bokeh(hourly_bars(self.hourly), sizing_mode="stretch_width"),
        ]

    def beats_html(self, beats: list[tuple[str, datetime, str]], now: datetime) -> str:
        if not beats:
            return empty_state("No heartbeat yet", "Each stage records a heartbeat when it runs; none has run so far.")
        colours = {"ok": "#009E73", "late": "#E69F00", "stale": "#b42318"}
        rows = "".join(
            f"<tr><td><b>{esc(stage)}</b></td><td><span class=chip style='background:{colours[beat_state(at, now)]}'>"
            f"{beat_state(at, now)}</span></td><td>last updated {ago(at, now)}</td><td>{fmt_time(at)} UTC</td>"
            f"<td class=muted>{esc(detail)}</td></tr>"
            for stage, at, detail in beats
        )
        return ("<table class=hy><tr><th>stage</th><th>state</th><th>heartbeat</th><th>at</th><th>detail</th></tr>"
                f"{rows}</table>")

    def summary_html(self) -> str:
        parts = [arrival_text(*self.arrived, self.now, self.hours)]
        for stage in TIMED_STAGES:
            durations = sorted(d for s, d, _r, _a in self.timings if s == stage)
            if durations:
                p95 = durations[min(len(durations) - 1, int(0.95 * len(durations)))]
                parts.append(f"{stage}: median {durations[len(durations) // 2]:.0f} ms, p95 {p95:.0f} ms")
        link = (f'<a href="{esc(self.store.config.dagster_url)}" target="_blank" rel="noopener">'
                "Open the Dagster UI</a> for runs, sensor ticks and backfills.")
        return f"<p>{' · '.join(parts)}</p><p>{link}</p>"

    def __panel__(self) -> pn.viewable.Viewable:
        if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            pn.state.add_periodic_callback(self.refresh, period=self.store.config.status_refresh_ms)
        return pn.Column(self.demo_pane, self.suggestions_pane, pn.widgets.FloatInput.from_param(self.param.hours, width=140),
                         self.summary_pane,
                         self.beats_pane, self.charts, sizing_mode="stretch_width")
