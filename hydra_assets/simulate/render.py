"""Drawing the synthetic plots the way ROOT monitoring pages do: title, stats box, COLZ palette, run and chunk.

One matplotlib figure per plot type is built once and then only its data, limits and texts change: building
figures and colour bars costs more than drawing them, and the demo draws thousands. Pure Agg (no pyplot), so
nothing here touches a GUI backend or global figure state; a lock serialises drawing because matplotlib
figures are not thread-safe.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from hydra_assets.simulate.content import Content, Efficiency, Hist1D, Map2D

WIDTH, HEIGHT, DPI = 480, 360, 80
# (x0, y0, x1, y1) in PNG pixels: origin top-left, y down, x1/y1 exclusive (as PIL's crop takes it).
PixelBox = tuple[int, int, int, int]

FRAME_1D = (0.13, 0.13, 0.82, 0.63)
FRAME_2D = (0.11, 0.13, 0.67, 0.63)
PALETTE_2D = (0.80, 0.13, 0.03, 0.63)
STATS_BOX = (0.70, 0.795, 0.285, 0.19)


def figure_to_pixels(rect: tuple[float, float, float, float]) -> PixelBox:
    """A figure-fraction rectangle (x, y, width, height) as a PNG pixel box, one pixel wider each side."""
    x, y, w, h = rect
    return (int(x * WIDTH) - 1, int(HEIGHT * (1 - y - h)) - 1, int((x + w) * WIDTH) + 2, int(HEIGHT * (1 - y)) + 2)


# The stats box summarises the whole histogram: any defect changes its numbers, wherever the defect is.
STATS_BOX_PIXELS = figure_to_pixels(STATS_BOX)


@dataclass(frozen=True)
class PlotStyle:
    """What the plot says about itself: title, axis titles, ROOT object name, colours."""

    title: str
    x_title: str
    y_title: str
    histogram: str
    colour_map: str = "viridis"
    line: str = "#1f3f99"
    fill: str | None = "#a9c4eb"


STYLES = {
    "FDC_occupancy": PlotStyle("FDC wire occupancy", "wire", "plane", "fdc_occupancy", "viridis"),
    "BCAL_eta_phi": PlotStyle("BCAL shower occupancy", "φ [deg]", "η", "bcal_eta_phi", "jet"),
    "CDC_timing": PlotStyle("CDC drift time", "drift time [ns]", "hits / 10 ns", "cdc_drift_time"),
    "FCAL_energy": PlotStyle("FCAL energy per block hit", "E [MeV]", "hits / 5 MeV", "fcal_block_energy",
                             line="#000099", fill=None),
    "TOF_multiplicity": PlotStyle("TOF hit multiplicity", "paddle hits per event", "events", "tof_multiplicity",
                                  line="#202020", fill="#f5cf7a"),
    "ST_efficiency": PlotStyle("Start counter efficiency", "paddle", "efficiency", "st_efficiency",
                               line="#000000", fill=None),
}

_LOCK = threading.Lock()


class _StatsBox:
    """ROOT's stats box: the object name on top, then names left and values right."""

    def __init__(self, figure: Figure, name: str) -> None:
        x, y, w, h = STATS_BOX
        box = {"transform": figure.transFigure, "fontsize": 7.5}
        figure.add_artist(Rectangle((x, y), w, h, facecolor="white", edgecolor="black", lw=0.8,
                                    transform=figure.transFigure))
        figure.text(x + w / 2, y + h - 0.012, name, ha="center", va="top", **box)
        figure.add_artist(Line2D([x, x + w], [y + h - 0.05] * 2, color="black", lw=0.6,
                                 transform=figure.transFigure))
        self.names = figure.text(x + 0.012, y + h - 0.058, "", ha="left", va="top", linespacing=1.3, **box)
        self.values = figure.text(x + w - 0.012, y + h - 0.058, "", ha="right", va="top", linespacing=1.3, **box)

    def update(self, rows: list[tuple[str, str]]) -> None:
        self.names.set_text("\n".join(name for name, _ in rows))
        self.values.set_text("\n".join(value for _, value in rows))


def _number(value: float) -> str:
    """Four significant digits, as ROOT prints means and standard deviations."""
    return f"{value:.4g}"


class _Canvas:
    """A reusable figure: frame, texts and stats box; subclasses add the data artists."""

    frame = FRAME_1D

    def __init__(self, style: PlotStyle) -> None:
        self.style = style
        self.figure = Figure(figsize=(WIDTH / DPI, HEIGHT / DPI), dpi=DPI, facecolor="white")
        self.canvas = FigureCanvasAgg(self.figure)
        self.axes = self.figure.add_axes(self.frame)
        self.axes.set_autoscale_on(False)
        self.axes.set_xlabel(style.x_title, loc="right", fontsize=9)
        self.axes.set_ylabel(style.y_title, loc="top", fontsize=9)
        self.axes.tick_params(which="both", direction="in", top=False, right=False, labelsize=8)
        self.axes.minorticks_on()
        self.figure.text(0.36, 0.93, style.title, ha="center", va="center", fontsize=11)
        self.run_text = self.figure.text(0.36, 0.855, "", ha="center", va="center", fontsize=8.5, color="#333333")
        self.stats = _StatsBox(self.figure, style.histogram)

    def draw(self, content: Content, run: int, chunk: int) -> tuple[np.ndarray, PixelBox | None]:
        """Draw `content`; return the RGB pixels and the defect's pixel box (None when not localized)."""
        self.run_text.set_text(f"Run {run}, chunk {chunk}")
        self.update(content)
        self.canvas.draw()
        pixels = np.asarray(self.canvas.buffer_rgba())[:, :, :3].copy()
        return pixels, self.defect_box(content)

    def update(self, content: Content) -> None:
        raise NotImplementedError

    def defect_box(self, content: Content) -> PixelBox | None:
        raise NotImplementedError

    def _data_box(self, x_values: np.ndarray, y_values: np.ndarray, margin: int) -> PixelBox:
        """Pixel box around data x values and y values (the axes' transforms act on x and y separately)."""
        x_values, y_values = np.asarray(x_values, dtype=float), np.asarray(y_values, dtype=float)
        x_display = self.axes.transData.transform(np.column_stack([x_values, np.full(x_values.size, y_values[0])]))
        y_display = self.axes.transData.transform(np.column_stack([np.full(y_values.size, x_values[0]), y_values]))
        return self._to_png_box(x_display[:, 0], y_display[:, 1], margin)

    def _to_png_box(self, x_display: np.ndarray, y_display: np.ndarray, margin: int) -> PixelBox:
        """Display coordinates (origin bottom-left) to a PNG pixel box (origin top-left), clipped to the frame."""
        frame = self.axes.get_window_extent()
        x_lo = max(float(np.min(x_display)), frame.x0)
        x_hi = min(float(np.max(x_display)), frame.x1)
        y_lo = max(float(np.min(y_display)), frame.y0)
        y_hi = min(float(np.max(y_display)), frame.y1)
        return (
            max(int(np.floor(x_lo)) - margin, 0),
            max(int(np.floor(HEIGHT - y_hi)) - margin, 0),
            min(int(np.ceil(x_hi)) + margin, WIDTH),
            min(int(np.ceil(HEIGHT - y_lo)) + margin, HEIGHT),
        )


class _MapCanvas(_Canvas):
    """2D histogram drawn like ROOT's COLZ: empty cells stay white, a palette bar on the right."""

    frame = FRAME_2D

    def __init__(self, style: PlotStyle) -> None:
        super().__init__(style)
        colour_map = matplotlib.colormaps[style.colour_map].with_extremes(under="white")
        self.image = self.axes.imshow(np.zeros((2, 2)), origin="lower", aspect="auto", interpolation="nearest",
                                      cmap=colour_map, norm=Normalize(0.5, 1.0))
        palette_axes = self.figure.add_axes(PALETTE_2D)
        self.figure.colorbar(self.image, cax=palette_axes)
        palette_axes.tick_params(labelsize=7.5, direction="in")

    def update(self, content: Content) -> None:
        assert isinstance(content, Map2D)
        extent = (content.xedges[0], content.xedges[-1], content.yedges[0], content.yedges[-1])
        self.image.set_data(content.counts)
        self.image.set_extent(extent)
        self.image.set_clim(0.5, content.zmax)
        self.axes.set_xlim(extent[0], extent[1])
        self.axes.set_ylim(extent[2], extent[3])
        entries = float(content.counts.sum())
        x_centres = 0.5 * (content.xedges[1:] + content.xedges[:-1])
        y_centres = 0.5 * (content.yedges[1:] + content.yedges[:-1])
        mean_x = float((content.counts.sum(axis=0) * x_centres).sum() / entries) if entries else 0.0
        mean_y = float((content.counts.sum(axis=1) * y_centres).sum() / entries) if entries else 0.0
        self.stats.update([("Entries", f"{entries:.0f}"), ("Mean x", _number(mean_x)), ("Mean y", _number(mean_y))])

    def defect_box(self, content: Content) -> PixelBox | None:
        assert isinstance(content, Map2D)
        if content.region is None:
            return None
        x0, x1, y0, y1 = content.region
        return self._data_box(np.array([x0, x1]), np.array([y0, y1]), margin=1)


class _HistogramCanvas(_Canvas):
    """1D histogram as ROOT draws it: a step line, optionally filled, linear or logarithmic counts."""

    def __init__(self, style: PlotStyle) -> None:
        super().__init__(style)
        edges, values = np.arange(3.0), np.zeros(2)
        self.fill = None
        if style.fill:
            self.fill = self.axes.stairs(values, edges, fill=True, color=style.fill, lw=0)
        self.line = self.axes.stairs(values, edges, color=style.line, lw=1.1)

    def _limits(self, content: Hist1D) -> tuple[float, float]:
        top = max(float(content.reference.max()), 1.0)
        return (0.5, 3.0 * top) if content.log_y else (0.0, 1.25 * top)

    def update(self, content: Content) -> None:
        assert isinstance(content, Hist1D)
        scale = "log" if content.log_y else "linear"
        if self.axes.get_yscale() != scale:  # switching rebuilds the tick machinery: only when needed
            self.axes.set_yscale(scale)
        self.axes.set_xlim(content.edges[0], content.edges[-1])
        self.axes.set_ylim(*self._limits(content))
        # Empty bins of a log histogram sit just below the axis, out of sight, as in ROOT.
        baseline = 0.3 if content.log_y else 0.0
        values = np.maximum(content.counts, baseline)
        for artist in (self.fill, self.line):
            if artist is not None:
                artist.set_data(values=values, edges=content.edges, baseline=baseline)
        entries = float(content.counts.sum())
        centres = 0.5 * (content.edges[1:] + content.edges[:-1])
        mean = float((content.counts * centres).sum() / entries) if entries else 0.0
        spread = float(np.sqrt((content.counts * (centres - mean) ** 2).sum() / entries)) if entries else 0.0
        self.stats.update([("Entries", f"{entries:.0f}"), ("Mean", _number(mean)), ("Std Dev", _number(spread))])

    def defect_box(self, content: Content) -> PixelBox | None:
        """Where the drawn curve differs from the healthy one by a quarter pixel or more (antialiasing shows it)."""
        assert isinstance(content, Hist1D)
        low, high = self._limits(content)
        centres = 0.5 * (content.edges[1:] + content.edges[:-1])

        def pixel_heights(values: np.ndarray) -> np.ndarray:
            shown = np.clip(values, max(low, 1e-9), high)
            return self.axes.transData.transform(np.column_stack([centres, shown]))[:, 1]

        reference, shown = pixel_heights(content.reference), pixel_heights(content.counts)
        changed = np.flatnonzero(np.abs(shown - reference) >= 0.25)
        if changed.size == 0:
            return None
        first, last = int(changed[0]), int(changed[-1])
        x = self.axes.transData.transform([(content.edges[first], low), (content.edges[last + 1], low)])[:, 0]
        y = np.concatenate([reference[first:last + 1], shown[first:last + 1]])
        return self._to_png_box(x, y, margin=2)


class _EfficiencyCanvas(_Canvas):
    """Efficiency per channel: black points with binomial error bars and a line at 100 %."""

    def __init__(self, style: PlotStyle) -> None:
        super().__init__(style)
        self.axes.axhline(1.0, color="#888888", lw=0.8, ls=":")
        self.errors = LineCollection([], colors="black", linewidths=0.9)
        self.axes.add_collection(self.errors)
        (self.points,) = self.axes.plot([], [], "o", color="black", ms=4)

    def update(self, content: Content) -> None:
        assert isinstance(content, Efficiency)
        self.axes.set_xlim(content.channels[0] - 0.5, content.channels[-1] + 0.5)
        self.axes.set_ylim(0.0, 1.1)
        drawn = ~np.isnan(content.efficiency)
        x, y, e = content.channels[drawn], content.efficiency[drawn], content.error[drawn]
        self.points.set_data(x, y)
        vertical = [[(xi, yi - ei), (xi, yi + ei)] for xi, yi, ei in zip(x, y, e, strict=True)]
        horizontal = [[(xi - 0.5, yi), (xi + 0.5, yi)] for xi, yi in zip(x, y, strict=True)]
        self.errors.set_segments(vertical + horizontal)
        tracks = float(content.tracks.sum())
        mean = float(np.nanmean(content.efficiency)) if drawn.any() else 0.0
        self.stats.update([("Paddles", f"{int(drawn.sum())}"), ("Tracks", f"{tracks:.0f}"), ("Mean eff", _number(mean))])

    def defect_box(self, content: Content) -> PixelBox | None:
        assert isinstance(content, Efficiency)
        changed = np.flatnonzero(content.changed & ~np.isnan(content.efficiency))
        if changed.size == 0:
            return None
        x = np.concatenate([content.channels[changed] - 0.5, content.channels[changed] + 0.5])
        y = np.concatenate([
            content.efficiency[changed] - content.error[changed], content.efficiency[changed] + content.error[changed],
            content.reference_efficiency[changed] - content.reference_error[changed],
            content.reference_efficiency[changed] + content.reference_error[changed],
        ])
        return self._data_box(x, np.clip(np.nan_to_num(y), 0.0, 1.1), margin=4)


_CANVAS_KINDS: dict[str, type[_Canvas]] = {
    "FDC_occupancy": _MapCanvas,
    "BCAL_eta_phi": _MapCanvas,
    "CDC_timing": _HistogramCanvas,
    "FCAL_energy": _HistogramCanvas,
    "TOF_multiplicity": _HistogramCanvas,
    "ST_efficiency": _EfficiencyCanvas,
}
_CANVASES: dict[str, _Canvas] = {}


def render(plot_type: str, content: Content, *, run: int, chunk: int) -> tuple[np.ndarray, PixelBox | None]:
    """Draw one plot: RGB pixels (HEIGHT x WIDTH x 3) and the defect's pixel box or None."""
    with _LOCK:
        canvas = _CANVASES.get(plot_type)
        if canvas is None:
            canvas = _CANVASES[plot_type] = _CANVAS_KINDS[plot_type](STYLES[plot_type])
        return canvas.draw(content, run, chunk)
