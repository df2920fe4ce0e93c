"""The Library's Mask tab (issue 14): rectangles of a plot type's image that its next trained model, GradCAM and
the reference score ignore — a known dead channel, a title that changes.

Draw them on the plot type's newest image (Bokeh's box edit tool: drag with Shift held to draw, click one and
press Backspace to delete) or type them, one per line as ``x0, y0, x1, y1`` in fractions 0..1 of the width and
height from the top left; drawing fills the typed list and a valid typed list redraws the boxes.  Save writes
a new mask version (who, when, comment), shown in the history with the model versions trained with each.

The store checks `edit_reference` or `edit_thresholds` server-side and audits (`HydraStore.set_mask`).  A bad
line (reversed corners, outside the image, empty, all of the image) is said next to the list and nothing is
written; an unchanged list writes nothing either.
"""

from __future__ import annotations

from typing import Any

import panel as pn
from bokeh.models import BoxEditTool, ColumnDataSource, Range1d
from bokeh.plotting import figure

from hydra_assets.masks import MaskError, parse_region, region_text, validate_regions
from panel_app.images import image_url
from panel_app.pages.common import empty_state, esc, fmt_time, html_pane
from panel_app.store import HydraStore, PermissionDenied
from panel_app.views_data import MaskSample, MaskVersion

Region = tuple[float, float, float, float]
FIGURE_WIDTH = 520
DECIMALS = 3  # a drawn rectangle's corners, rounded: 1/1000 of the image is below a pixel of a 480 px plot
EDIT_PERMISSIONS = ("edit_reference", "edit_thresholds")


def parse_rectangles(text: object) -> tuple[list[Region], str]:
    """The typed list, one ``x0, y0, x1, y1`` per line (blank lines skipped): (rectangles, "") or ([], why)."""
    lines = [(n, line.strip()) for n, line in enumerate(str(text or "").splitlines(), start=1) if line.strip()]
    regions: list[Region] = []
    for n, line in lines:
        try:
            regions.append(parse_region(line))
        except MaskError as error:
            return [], f"Line {n}: {error}. Nothing was saved."
    try:
        validate_regions(regions)
    except MaskError as error:
        return [], f"{str(error)[:1].upper()}{str(error)[1:]}. Nothing was saved."
    return regions, ""


def regions_text(regions: list[Region] | list[tuple[float, ...]]) -> str:
    return "\n".join(region_text(r) for r in regions)


def source_data(regions: list[Region] | list[tuple[float, ...]]) -> dict[str, list[float]]:
    """Rectangles as the box glyph's columns (centre, width, height; y grows downwards like the image)."""
    return {"x": [(r[0] + r[2]) / 2 for r in regions], "y": [(r[1] + r[3]) / 2 for r in regions],
            "width": [r[2] - r[0] for r in regions], "height": [r[3] - r[1] for r in regions]}


def drawn_regions(data: dict[str, Any]) -> list[Region]:
    """The boxes drawn on the image as rectangles, clipped to the image and rounded; empty ones dropped."""
    out: list[Region] = []
    for x, y, w, h in zip(data.get("x", []), data.get("y", []), data.get("width", []), data.get("height", []),
                          strict=False):
        try:
            x, y, w, h = (float(v) for v in (x, y, w, h))
        except (TypeError, ValueError):
            continue
        corners = (x - abs(w) / 2, y - abs(h) / 2, x + abs(w) / 2, y + abs(h) / 2)
        x0, y0, x1, y1 = (round(min(1.0, max(0.0, v)), DECIMALS) for v in corners)
        if x1 > x0 and y1 > y0:
            out.append((x0, y0, x1, y1))
    return out


def history_html(versions: list[MaskVersion]) -> str:
    if not versions:
        return empty_state("No mask yet for this plot type",
                           "The models and the reference score use the whole image. Draw or type rectangles "
                           "to ignore, then Save mask.")
    rows = "".join(
        f"<tr><td>{'★' if k == 0 else ''}</td><td>v{v.version}</td>"
        f"<td>{esc('; '.join(region_text(r) for r in v.regions) or 'none (cleared)')}</td>"
        f"<td>{esc(v.created_by or '?')}</td><td>{fmt_time(v.created_at)}</td><td>{esc(v.comment)}</td>"
        f"<td>{esc(', '.join(v.models)) or '—'}</td></tr>"
        for k, v in enumerate(versions))
    return ("<h4>History of mask versions</h4><table class='hy mask-history'><tr><th></th><th>version</th>"
            "<th>rectangles (x0,y0,x1,y1)</th><th>by</th><th>when (UTC)</th><th>comment</th>"
            f"<th>models trained with it</th></tr>{rows}</table>")


def current_html(versions: list[MaskVersion], active_mask: str | None) -> str:
    current = versions[0] if versions else None
    if current is None:
        head = "<b>Current mask: none</b> — the whole image is used."
    else:
        what = esc("; ".join(region_text(r) for r in current.regions)) or "none (cleared)"
        head = f"<b>Current mask: v{current.version}</b> — {what}."
    active = f" The active model applies the mask it was trained with: <b>{esc(active_mask)}</b>." if active_mask else ""
    return (f"<p>{head}{active}</p>"
            "<p class=muted>A mask applies to the models trained after it is saved (and to the reference score's "
            "next version); each model version keeps the mask it was trained with. Rectangles are fractions "
            "0..1 of the width and height, from the top left.</p>")


def mask_figure(sample: MaskSample | None, regions: list[Region]) -> tuple[Any, ColumnDataSource]:
    """The sample image with the rectangles over it and the box edit tool active (Shift+drag draws a box)."""
    aspect = (sample.height / sample.width) if sample and sample.width and sample.height else 0.75
    fig = figure(width=FIGURE_WIDTH, height=max(120, round(FIGURE_WIDTH * aspect)), x_range=Range1d(0, 1),
                 y_range=Range1d(1, 0), tools="", toolbar_location="above", title=None)
    if sample is not None:
        fig.image_url(url=[image_url(sample.image_id, "full")], x=0, y=0, w=1, h=1, anchor="top_left")
    source = ColumnDataSource(source_data(regions))
    boxes = fig.rect("x", "y", "width", "height", source=source, fill_color="#98a2b3", fill_alpha=0.45,
                     line_color="#b42318", line_width=2)
    tool = BoxEditTool(renderers=[boxes], num_objects=0)
    fig.add_tools(tool)
    fig.toolbar.active_drag = tool
    fig.xaxis.visible = fig.yaxis.visible = False
    fig.grid.visible = False
    return fig, source


class MaskSection(pn.viewable.Viewer):
    """The Mask tab of the Library, for one plot type at a time (`show`)."""

    def __init__(self, store: HydraStore, plot_type_id: int | None = None) -> None:
        super().__init__()
        self.store = store
        self.plot_type_id = plot_type_id
        self.versions: list[MaskVersion] = []
        self.source: ColumnDataSource | None = None
        self._syncing = False
        self.current_pane = html_pane("")
        self.history_pane = html_pane("")
        self.permission_note = html_pane("")
        self.feedback = pn.pane.Alert("", visible=False, sizing_mode="stretch_width")
        self.figure_pane = pn.pane.Bokeh(None)
        self.sample_note = html_pane("", css_classes=["mask-sample"])
        self.rect_input = pn.widgets.TextAreaInput(
            name="Rectangles to ignore (x0, y0, x1, y1 per line)", placeholder="0, 0, 1, 0.1\n0.48, 0, 0.52, 1",
            height=120, width=320)
        self.comment_input = pn.widgets.TextInput(name="Comment (optional)", width=320)
        self.save_button = pn.widgets.Button(name="Save mask", button_type="primary", margin=(10, 10, 10, 10))
        self.save_button.on_click(lambda _e: self.save(self._typed(), self.comment_input.value))
        self.clear_button = pn.widgets.Button(name="Clear mask", margin=(10, 10, 10, 10))
        self.clear_button.on_click(lambda _e: self.save("", self.comment_input.value))
        self.rect_note = html_pane("", width=420, css_classes=["mask-note"])
        self.rect_input.param.watch(self._typed_changed, ["value", "value_input"])
        self.sample: MaskSample | None = None
        self.show(plot_type_id)

    def _typed(self) -> str:
        """What the list holds now, even before it loses focus."""
        widget = self.rect_input
        return widget.value if widget.value_input is None else widget.value_input

    def _say(self, text: str, kind: str) -> None:
        self.feedback.object, self.feedback.alert_type, self.feedback.visible = esc(text), kind, True

    def _note(self, text: str) -> None:
        self.rect_note.object = f"<span style='color:#b42318'>{esc(text)}</span>" if text else ""

    # ---- logic ------------------------------------------------------------------------------------

    def show(self, plot_type_id: int | None) -> None:
        """Load a plot type's mask history, its newest image with the current rectangles, and the list."""
        self.plot_type_id = plot_type_id
        self.feedback.visible = False
        self._note("")
        if plot_type_id is None:
            self.versions, self.source = [], None
            self.current_pane.object = self.history_pane.object = ""
            return
        self.versions = self.store.mask_versions(plot_type_id)
        current = [tuple(r) for r in self.versions[0].regions] if self.versions else []
        used = next((v for v in self.versions if any(m.endswith(" ★") for m in v.models)), None)
        active_mask = f"v{used.version}" if used else None
        self.current_pane.object = current_html(self.versions, active_mask)
        self.history_pane.object = history_html(self.versions)
        self.sample = sample = self.store.mask_sample(plot_type_id)
        self._draw(current)  # type: ignore[arg-type]
        self.sample_note.object = (
            f"<p class=muted>Newest image: run {sample.run}, chunk {sample.chunk}. Hold Shift and drag to draw a "
            "rectangle; drag one to move it; click one and press Backspace to remove it.</p>" if sample else
            "<p class=muted>No image of this plot type stored yet: type the rectangles.</p>")
        self._syncing = True
        try:
            self.rect_input.value = regions_text(current)  # type: ignore[arg-type]
            self.rect_input.value_input = self.rect_input.value
        finally:
            self._syncing = False
        self.comment_input.value = ""
        may = any(self.store.can(p, plot_type_id) for p in EDIT_PERMISSIONS)
        self.permission_note.object = "" if may else (
            "<p class=muted>Changing the mask needs the <code>edit_reference</code> or <code>edit_thresholds</code> "
            "permission: the server refuses Save for you.</p>")

    def _drawn(self, _attr: str, _old: Any, new: dict[str, Any]) -> None:
        """Boxes drawn, moved or removed on the image: the typed list follows."""
        if self._syncing:
            return
        self._syncing = True
        try:
            text = regions_text(drawn_regions(new))
            self.rect_input.value = text
            self.rect_input.value_input = text
            self._note("")
        finally:
            self._syncing = False

    def _draw(self, regions: list[Region]) -> None:
        """A new figure with these boxes: replacing the pane's object is safe from any callback, while changing
        a drawn source's data from a widget callback is not (Bokeh's document lock)."""
        fig, self.source = mask_figure(self.sample, regions)
        self.source.on_change("data", self._drawn)
        self.figure_pane.object = fig

    def _typed_changed(self, *events: Any) -> None:
        """A bad typed list is said next to it (nothing is saved yet); a valid one, once typed (Enter or leaving
        the field), redraws the boxes."""
        if self._syncing or self.source is None:
            return
        regions, why = parse_rectangles(self._typed())
        self._note(why.replace(" Nothing was saved.", ""))
        if why or not any(e.name == "value" for e in events) or regions == drawn_regions(self.source.data):
            return
        self._draw(regions)

    def save(self, text: object, comment: str = "") -> int | None:
        """Callback of Save mask (and Clear mask with ""): a new version from the typed list, or why not."""
        if self.plot_type_id is None:
            return None
        regions, why = parse_rectangles(text)
        if why:
            self._note(why)
            return None
        current = [tuple(r) for r in self.versions[0].regions] if self.versions else []
        if regions == current and (self.versions or not regions):
            self._note("")
            self._say("Nothing changed: the mask is already so.", "info")
            return None
        try:
            version = self.store.set_mask(self.plot_type_id, regions, comment=str(comment or "").strip())
        except PermissionDenied as refusal:
            self._say(f"Refused: {refusal}. Nothing was changed.", "danger")
            return None
        except MaskError as error:  # the store's own check (the same rules): next to the field
            self._note(f"{error}. Nothing was saved.")
            return None
        self.show(self.plot_type_id)
        what = "cleared" if not regions else f"{len(regions)} rectangle{'s' if len(regions) > 1 else ''}"
        self._say(f"Mask version {version} saved ({what}). It applies to the models trained from now on; the "
                  "active model keeps the mask it was trained with.", "success")
        return version

    def __panel__(self) -> pn.viewable.Viewable:
        form = pn.Column(self.rect_input, self.rect_note, self.comment_input,
                         pn.Row(self.save_button, self.clear_button))
        return pn.Column(self.feedback, self.current_pane, self.permission_note,
                         pn.Row(pn.Column(self.figure_pane, self.sample_note), form),
                         self.history_pane, sizing_mode="stretch_width")
