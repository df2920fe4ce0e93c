"""Trends page: every label's output weight over time for one plot type, with its threshold lines, and the
novelty score with its limit."""

from __future__ import annotations

import panel as pn
import param

from panel_app.pages.charts import novelty_figure, reference_figure, trend_figure
from panel_app.pages.common import Field, empty_state, esc, fmt_time, html_pane, needed, remember, remembered, restore
from panel_app.store import HydraStore
from panel_app.views_data import ReferencePoint, TrendPoint, window
from panel_app.when import parse_number

SETTINGS = ["plot_type", "hours"]  # remembered per browser


class TrendsPage(pn.viewable.Viewer):
    plot_type = param.Selector(default=None, objects=[], label="Plot type")
    hours = param.Number(default=24.0, bounds=(0.25, 24 * 365), step=1, label="Window (hours)")

    def __init__(self, store: HydraStore, **params) -> None:
        self.store = store
        super().__init__(**params)
        options = store.plot_type_options()
        self.param.plot_type.objects = options
        saved = remembered("hydra_trends")
        restore(self, saved, [n for n in SETTINGS if n not in params])
        self.points: list[TrendPoint] = []
        self.thresholds: dict[str, float] = {}
        self.note = html_pane("")
        self.chart = pn.Column(sizing_mode="stretch_width")
        if options and self.plot_type not in options.values():
            self.plot_type = next(iter(options.values()))  # the watcher draws
        else:
            self.refresh()

    @param.depends("plot_type", "hours", watch=True)
    def refresh(self) -> None:
        info = self.store.plot_type(self.plot_type)
        if info is None:
            self.note.object = empty_state("No plot types yet", "Add one with <code>hydra plot-type add</code> or "
                                           "start the demo with <code>hydra up</code>.")
            self.chart[:] = []
            return
        since, until = window(self.hours)
        self.points = self.store.trend(info.id, since, until)
        self.reference_points: list[ReferencePoint] = self.store.reference_trend(info.id, since, until)
        active = self.store.active_model(info.id)
        self.thresholds = {}
        if active is not None:
            rows = self.store.thresholds_of(active.id, info.id)
            self.thresholds = {r.label: r.value for r in rows if r.value is not None}
        if not self.points and self.reference_points:  # a plot type with no model: the reference score only
            self.note.object = f"<p class=muted>No classification of {esc(info.name)} in this window.</p>"
            self.chart[:] = self.reference_charts(info.name, None)
            return
        if not self.points:
            self.note.object = empty_state(
                f"No classification of {info.name} in the last {self.hours:g} hours",
                "Widen the window, or check on the Status page that the pipeline is running.")
            self.chart[:] = []
            return
        models = sorted({p.model_key for p in self.points})
        self.note.object = (
            f"<p class=muted>{len(self.points)} classifications, {fmt_time(self.points[0].at)} – "
            f"{fmt_time(self.points[-1].at)} UTC · models: {esc(', '.join(models))} · dashed lines: thresholds of "
            f"the active model{' ' + esc(active.key) if active else ' (none active)'} · click a legend entry to "
            "hide a label</p>"
        )
        title = f"{info.name}: output weight of every label"
        weights = trend_figure(self.points, info.labels, self.thresholds, title)
        charts = [pn.pane.Bokeh(weights, sizing_mode="stretch_width")]
        scored = [p for p in self.points if p.novelty is not None]
        if scored:
            above = sum(p.novelty_limit is not None and p.novelty > p.novelty_limit for p in scored)
            charts += [
                html_pane(f"<p class=muted>Novelty: {len(scored)} scored classifications, <b>{above}</b> above the "
                          "limit (unlike the training data: not confirmed, sent to the Labeler).</p>"),
                pn.pane.Bokeh(novelty_figure(scored, f"{info.name}: novelty score (how unlike the training data)",
                                             x_range=weights.x_range),
                              sizing_mode="stretch_width"),
            ]
        self.chart[:] = charts + self.reference_charts(info.name, weights.x_range)

    def reference_charts(self, name: str, x_range) -> list:  # type: ignore[no-untyped-def]
        """The reference score over time with its limit (issue 14), when the plot type has scores."""
        points = self.reference_points
        if not points:
            return []
        flagged = sum(p.flagged for p in points)
        return [
            html_pane(f"<p class=muted>Reference score: {len(points)} scored images, <b>{flagged}</b> unlike their "
                      "reference (score above the limit of their reference version).</p>"),
            pn.pane.Bokeh(reference_figure(points, f"{name}: reference score (how unlike the reference)",
                                           x_range=x_range), sizing_mode="stretch_width"),
        ]

    def __panel__(self) -> pn.viewable.Viewable:
        low, high = self.param.hours.bounds
        hours = Field("Window (hours)", f"{self.hours:g}",
                      lambda text: needed(parse_number(text, low=low, high=high, unit="hours"), "a number of hours"),
                      lambda value: setattr(self, "hours", value), width=140, in_force=lambda: f"{self.hours:g} hours")
        controls = pn.Row(pn.widgets.Select.from_param(self.param.plot_type, width=280), hours,
                          remember(self, "hydra_trends", SETTINGS))
        return pn.Column(controls, self.note, self.chart, sizing_mode="stretch_width")
