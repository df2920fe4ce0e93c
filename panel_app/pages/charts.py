"""Bokeh figures of the pages (built from plain data, so they are tested without a browser)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np
from bokeh.models import (
    BasicTicker,
    ColumnDataSource,
    FixedTicker,
    HoverTool,
    Legend,
    NumeralTickFormatter,
    Span,
)
from bokeh.plotting import figure

from panel_app.views_data import Confusion, LabelInfo, ReferencePoint, TrendPoint

PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
STAGE_COLOURS = {"feeder": "#0072B2", "predict": "#D55E00", "reference": "#CC79A7", "keeper": "#009E73"}


def confusion_figure(conf: Confusion, colours: dict[str, str] | None = None, bins: int = 10):  # type: ignore[no-untyped-def]
    """Enhanced confusion matrix: every cell shades by its share of the row and holds a weight histogram."""
    labels, n = conf.labels, len(conf.labels)
    size = max(320, 150 * n)
    fig = figure(width=size + 120, height=size + 60, x_range=(0, n), y_range=(0, n), toolbar_location=None,
                 title="rows: human label · columns: model label · bars: model weight 0 → 1",
                 x_axis_label="model label", y_axis_label="human label")
    cells = {"left": [], "right": [], "bottom": [], "top": [], "alpha": [], "colour": [], "text": [], "tx": [],
             "ty": [], "true": [], "pred": [], "count": []}
    bars = {"left": [], "right": [], "bottom": [], "top": [], "colour": []}
    for i, true in enumerate(labels):
        row_total = sum(conf.count(true, p) for p in labels) or 1
        for j, pred in enumerate(labels):
            count = conf.count(true, pred)
            y0 = n - 1 - i
            cells["left"].append(j)
            cells["right"].append(j + 1)
            cells["bottom"].append(y0)
            cells["top"].append(y0 + 1)
            cells["alpha"].append(0.08 + 0.55 * count / row_total)
            cells["colour"].append("#1f6feb" if i == j else "#d55e00")
            cells["text"].append(f"{count}")
            cells["tx"].append(j + 0.06)
            cells["ty"].append(y0 + 0.8)
            cells["true"].append(true)
            cells["pred"].append(pred)
            cells["count"].append(count)
            weights = conf.cells.get((true, pred), [])
            if weights:
                hist, _ = np.histogram(np.clip(weights, 0, 1), bins=bins, range=(0, 1))
                peak = hist.max() or 1
                width = 0.88 / bins
                for b, h in enumerate(hist):
                    if h:
                        bars["left"].append(j + 0.06 + b * width)
                        bars["right"].append(j + 0.06 + (b + 0.85) * width)
                        bars["bottom"].append(y0 + 0.08)
                        bars["top"].append(y0 + 0.08 + 0.6 * h / peak)
                        bars["colour"].append((colours or {}).get(pred, "#444444"))
    source = ColumnDataSource(cells)
    rects = fig.quad(left="left", right="right", bottom="bottom", top="top", fill_color="colour", fill_alpha="alpha",
                     line_color="white", line_width=2, source=source)
    fig.quad(left="left", right="right", bottom="bottom", top="top", fill_color="colour", line_color=None,
             fill_alpha=0.85, source=ColumnDataSource(bars))
    fig.text(x="tx", y="ty", text="text", source=source, text_font_size="13px", text_font_style="bold")
    fig.add_tools(HoverTool(renderers=[rects], tooltips=[("human", "@true"), ("model", "@pred"), ("images", "@count")]))
    ticks = [k + 0.5 for k in range(n)]
    fig.xaxis.ticker = FixedTicker(ticks=ticks)
    fig.yaxis.ticker = FixedTicker(ticks=ticks)
    fig.xaxis.major_label_overrides = {k + 0.5: lab for k, lab in enumerate(labels)}
    fig.yaxis.major_label_overrides = {n - 1 - k + 0.5: lab for k, lab in enumerate(labels)}
    fig.grid.visible = False
    return fig


def curves_figure(history: dict[str, list[float]], keys: Sequence[str], title: str):  # type: ignore[no-untyped-def]
    fig = figure(height=280, width=460, title=title, x_axis_label="epoch", toolbar_location=None)
    for k, key in enumerate(keys):
        values = history.get(key)
        if values:
            fig.line(list(range(1, len(values) + 1)), values, legend_label=key, line_width=2,
                     color=PALETTE[k % len(PALETTE)], line_dash="dashed" if key.startswith("val") else "solid")
    if fig.legend:
        fig.legend.location = "center_right"
    return fig


def trend_figure(points: Sequence[TrendPoint], labels: Sequence[LabelInfo], thresholds: dict[str, float],
                 title: str):  # type: ignore[no-untyped-def]
    """One scatter per label of its weight over time, with that label's threshold as a dashed line."""
    fig = figure(height=420, sizing_mode="stretch_width", x_axis_type="datetime", y_range=(-0.02, 1.05),
                 title=title, y_axis_label="output weight", tools="pan,xwheel_zoom,box_zoom,reset,save")
    items = []
    times = [p.at for p in points]
    for lab in labels:
        weights = [float(p.weights.get(lab.name, np.nan)) for p in points]
        source = ColumnDataSource({"at": times, "w": weights, "run": [p.run for p in points],
                                   "model": [p.model_key for p in points]})
        renderer = fig.scatter("at", "w", source=source, size=5, color=lab.colour, alpha=0.75)
        line = fig.line("at", "w", source=source, color=lab.colour, alpha=0.3)
        items.append((lab.name, [renderer, line]))
        if lab.name in thresholds:
            fig.add_layout(Span(location=thresholds[lab.name], dimension="width", line_color=lab.colour,
                                line_dash="dashed", line_width=2))
    fig.add_tools(HoverTool(tooltips=[("time", "@at{%F %T}"), ("weight", "@w{0.000}"), ("run", "@run"),
                                      ("model", "@model")], formatters={"@at": "datetime"}))
    legend = Legend(items=items, click_policy="hide", location="top_left")
    fig.add_layout(legend, "right")
    return fig


def novelty_figure(points: Sequence[TrendPoint], title: str, x_range=None):  # type: ignore[no-untyped-def]
    """Each classification's novelty score over time, with the model's calibrated limit as a dashed line
    (a step where a new model version brought a new limit); points above the limit in purple.  Pass the
    weights figure's `x_range` so both pan and zoom together."""
    scored = [p for p in points if p.novelty is not None]
    extra = {"x_range": x_range} if x_range is not None else {}
    fig = figure(height=280, sizing_mode="stretch_width", x_axis_type="datetime", title=title,
                 y_axis_label="novelty score", tools="pan,xwheel_zoom,box_zoom,reset,save", **extra)
    above = [p.novelty_limit is not None and p.novelty > p.novelty_limit for p in scored]
    source = ColumnDataSource({"at": [p.at for p in scored], "score": [p.novelty for p in scored],
                               "limit": [p.novelty_limit for p in scored], "run": [p.run for p in scored],
                               "model": [p.model_key for p in scored],
                               "colour": ["#6f42c1" if a else "#56B4E9" for a in above]})
    points_renderer = fig.scatter("at", "score", source=source, size=5, color="colour", alpha=0.8)
    limits = [p for p in scored if p.novelty_limit is not None]
    if limits:  # the newest limit across the chart, and a step where an older version had another
        fig.step([p.at for p in limits], [p.novelty_limit for p in limits], mode="after", line_dash="dashed",
                 line_color="#b42318", line_width=2, legend_label="limit (above: unlike the training data)")
        fig.add_layout(Span(location=limits[-1].novelty_limit, dimension="width", line_color="#b42318",
                            line_dash="dashed", line_width=2))
        fig.legend.location = "top_left"
    fig.add_tools(HoverTool(renderers=[points_renderer], tooltips=[
        ("time", "@at{%F %T}"), ("novelty", "@score{0.00}"), ("limit", "@limit{0.00}"), ("run", "@run"),
        ("model", "@model")], formatters={"@at": "datetime"}))
    return fig


def reference_figure(points: Sequence[ReferencePoint], title: str, x_range=None):  # type: ignore[no-untyped-def]
    """Each image's reference score over time with its reference version's limit as a dashed step line (a new
    reference brings a new limit); points stored as unlike their reference in orange.  Pass the weights
    figure's `x_range` so the charts pan together."""
    extra = {"x_range": x_range} if x_range is not None else {}
    fig = figure(height=280, sizing_mode="stretch_width", x_axis_type="datetime", title=title,
                 y_axis_label="reference score", tools="pan,xwheel_zoom,box_zoom,reset,save", **extra)
    source = ColumnDataSource({"at": [p.at for p in points], "score": [p.score for p in points],
                               "limit": [p.limit for p in points], "run": [p.run for p in points],
                               "version": [p.version for p in points],
                               "colour": ["#b54708" if p.flagged else "#0072B2" for p in points]})
    scatter = fig.scatter("at", "score", source=source, size=5, color="colour", alpha=0.8)
    limits = [p for p in points if p.limit is not None]
    if limits:
        fig.step([p.at for p in limits], [p.limit for p in limits], mode="after", line_dash="dashed",
                 line_color="#b42318", line_width=2, legend_label="limit (above: unlike the reference)")
        fig.add_layout(Span(location=limits[-1].limit, dimension="width", line_color="#b42318", line_dash="dashed",
                            line_width=2))
        fig.legend.location = "top_left"
    fig.add_tools(HoverTool(renderers=[scatter], tooltips=[
        ("time", "@at{%F %T}"), ("score", "@score{0.00}"), ("limit", "@limit{0.00}"), ("run", "@run"),
        ("reference", "v@version")], formatters={"@at": "datetime"}))
    return fig


def stage_histogram(durations: Sequence[float], stage: str):  # type: ignore[no-untyped-def]
    fig = figure(height=230, width=330, title=f"{stage}: {len(durations)} executions", x_axis_label="duration (ms)",
                 toolbar_location=None)
    if durations:
        hist, edges = np.histogram(durations, bins=min(30, max(5, len(durations) // 3)))
        fig.quad(left=edges[:-1], right=edges[1:], bottom=0, top=hist, fill_color=STAGE_COLOURS.get(stage, "#555"),
                 line_color="white")
        median = float(np.median(durations))
        fig.add_layout(Span(location=median, dimension="height", line_dash="dashed", line_color="#333"))
    return fig


def run_scatter(per_run: dict[str, tuple[list[int], list[float]]]):  # type: ignore[no-untyped-def]
    fig = figure(height=260, sizing_mode="stretch_width", title="average duration per run number",
                 x_axis_label="run number", y_axis_label="ms", toolbar_location=None)
    items = []
    for stage, (runs, means) in per_run.items():
        if runs:
            items.append((stage, [fig.scatter(runs, means, size=8, color=STAGE_COLOURS.get(stage, "#555"))]))
    fig.add_layout(Legend(items=items, location="top_left"), "right")
    fig.xaxis.ticker = BasicTicker(min_interval=1)
    fig.xaxis.formatter = NumeralTickFormatter(format="0")
    return fig


def hourly_bars(hours: Sequence[tuple[datetime, int]]):  # type: ignore[no-untyped-def]
    """One bar per hour bin, drawn over the hour it counts: a bin is named by its start, and a bar centred
    there showed the images up to an hour before they arrived."""
    fig = figure(height=240, sizing_mode="stretch_width", x_axis_type="datetime",
                 title="images received per hour (UTC)", toolbar_location=None)
    if hours:
        fig.vbar(x=[h + timedelta(minutes=30) for h, _ in hours], top=[n for _, n in hours],
                 width=3_300_000, color="#0072B2")  # 55 min of the hour, in ms
    return fig
