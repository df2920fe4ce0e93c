"""Map page (/map): a plot type's images on a 2-D similarity map, to label whole clusters at once.

Look-alike images sit together (features and projection: `hydra_assets/similarity.py`), so an expert
lasso-selects (or box-selects) a cluster, checks its thumbnails, and paints it with one label: one action for
many images, stored through `HydraStore.apply_labels` as the Labeler stores them (checked for the `label`
permission server-side, each label in the history with source "map", audited), with an Undo of the last paint.
"More like this" (a tapped point, a tile, or `/map?plot_type=T&image=ID` from the Plot Browser) selects an
image's nearest neighbours in feature space and shows them as tiles.  Points are coloured by label, reference
score, novelty or run; hovering shows the thumbnail.  Only the newest `DEFAULT_CAP` images are shown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import urlencode

import numpy as np
import panel as pn
import param
from bokeh.models import BoxSelectTool, ColumnDataSource, HoverTool, LassoSelectTool, TapTool
from bokeh.plotting import figure

from hydra_assets.labeling import LabelChange
from hydra_assets.similarity import DEFAULT_CAP, METHODS, PCA, SimilarityError, SimilarityMap
from panel_app.images import image_url
from panel_app.pages.common import empty_state, esc, html_pane, request_args
from panel_app.store import CatalogError, HydraStore, PermissionDenied
from panel_app.views_data import UNLABELED, MapPoint

LABEL, REFERENCE, NOVELTY, RUN = "label", "reference score", "novelty", "run"
COLOUR_BY = (LABEL, REFERENCE, NOVELTY, RUN)
SCALE = ("#440154", "#3B528B", "#21918C", "#5EC962", "#FDE725")  # viridis, low → high
MISSING = "#BBBBBB"
SOURCE = "map"  # the label history's source of a paint
NEIGHBOURS = 12


def map_link(plot_type: str, image_id: int) -> str:
    """Relative URL of "more like this" for an image (other pages' tiles link here)."""
    return "./map?" + urlencode({"plot_type": plot_type, "image": int(image_id)})


def colour_groups(points: Sequence[MapPoint], by: str, labels: Mapping[int, tuple[str, str]]
                  ) -> tuple[list[str], list[str]]:
    """(legend group, colour) per point: a label's own colour, or five quantile bins of a number (grey: none)."""
    if by == LABEL:
        named = [labels.get(p.label_id) if p.label_id is not None else None for p in points]
        return ([n[0] if n else UNLABELED for n in named], [n[1] if n else MISSING for n in named])
    values = [p.reference_score if by == REFERENCE else p.novelty if by == NOVELTY else p.run for p in points]
    known = np.array([v for v in values if v is not None], dtype=float)
    if not len(known):
        return [f"no {by}"] * len(points), [MISSING] * len(points)
    edges = np.unique(np.quantile(known, np.linspace(0, 1, len(SCALE) + 1)))
    groups, colours = [], []
    for v in values:
        if v is None:
            groups.append(f"no {by}")
            colours.append(MISSING)
            continue
        k = int(np.clip(np.searchsorted(edges, v, side="right") - 1, 0, max(0, len(edges) - 2)))
        low, high = edges[k], edges[min(k + 1, len(edges) - 1)]
        fmt = (lambda x: f"{x:.0f}") if by == RUN else (lambda x: f"{x:.3g}")
        groups.append(f"{by} {fmt(low)}–{fmt(high)}")
        colours.append(SCALE[min(k, len(SCALE) - 1)] if len(edges) > 2 else SCALE[2])
    return groups, colours


class MapPage(pn.viewable.Viewer):
    plot_type = param.Selector(default=None, objects=[], label="Plot type")
    colour_by = param.Selector(default=LABEL, objects=list(COLOUR_BY), label="Colour by")
    method = param.Selector(default=PCA, objects=list(METHODS), label="Projection")
    paint_label = param.Selector(default=None, objects=[], label="Paint as")
    neighbours = param.Integer(default=NEIGHBOURS, bounds=(1, 100), label="More like this: images")

    def __init__(self, store: HydraStore, *, args: Mapping[str, str] | None = None, **params) -> None:
        self.store = store
        super().__init__(**params)
        self.points: list[MapPoint] = []
        self.map: SimilarityMap | None = None
        self.selected: list[int] = []  # image ids selected on the map
        self.similar: list[int] = []  # the last "more like this": the image, then its neighbours
        self._last_paint: tuple[int, list[LabelChange]] | None = None
        self.source = ColumnDataSource(self._columns([], [], []))
        self.figure = self._figure()
        self.plot = pn.pane.Bokeh(self.figure, sizing_mode="stretch_width")
        self.source.selected.on_change("indices", self._on_indices)
        self.info = html_pane("")
        self.empty = html_pane("", visible=False)
        self.feedback = pn.pane.Alert("", visible=False, sizing_mode="stretch_width")
        self.selection = html_pane("", css_classes=["map-selection"])
        self.tiles = html_pane("", css_classes=["map-tiles"])
        self.paint_button = pn.widgets.Button(label="Paint selection", color="primary", margin=(24, 6, 10, 6))
        self.paint_button.on_click(lambda _e: self.paint())
        self.undo_button = pn.widgets.Button(label="Undo last paint", margin=(24, 6, 10, 6))
        self.undo_button.on_click(lambda _e: self.undo())
        self.like_button = pn.widgets.Button(label="More like the selected image", margin=(24, 6, 10, 6))
        self.like_button.on_click(lambda _e: self.more_like(self.selected[0]) if self.selected else
                                  self._say("Select (tap) one image first.", "warning"))
        self.param.plot_type.objects = self.store.plot_type_options()
        wanted, image, problem = self._read_args(request_args() if args is None else args)
        self.info.object = "<span class=muted>Building the map (the first time for many images takes a while)…</span>"

        def start() -> None:  # after the page is on screen (at once outside a browser session)
            ids = list(self.param.plot_type.names.values())
            if wanted is not None:
                self.plot_type = wanted
            elif ids:
                self.plot_type = ids[0]
            else:
                self._on_plot_type()
            if image is not None:
                self.more_like(image)
            if problem:
                self._say(problem, "warning")

        pn.state.onload(start)

    def _read_args(self, args: Mapping[str, str]) -> tuple[int | None, int | None, str]:
        """(plot type id, image id, why something was ignored) from `?plot_type=NAME&image=ID`."""
        name, image = args.get("plot_type", ""), args.get("image", "")
        if not name and not image:
            return None, None, ""
        info = next((pt for pt in self.store.catalogue().values() if pt.name == name), None)
        if info is None:
            return None, None, f"No plot type named “{name}”: showing the first plot type instead."
        if image and not image.strip().isdigit():
            return info.id, None, f"“{image}” is not an image id."
        return info.id, int(image) if image else None, ""

    # ---- logic --------------------------------------------------------------------------------------

    @param.depends("plot_type", watch=True)
    def _on_plot_type(self) -> None:
        info = self.store.plot_type(self.plot_type)
        labels = info.labels if info else []
        self.param.paint_label.objects = {lab.name: lab.id for lab in labels}
        bad = next((lab.id for lab in labels if lab.is_bad), labels[0].id if labels else None)
        self.paint_label = bad
        self.similar = []
        self.load()

    @param.depends("method", watch=True)
    def _on_method(self) -> None:
        self.load()

    @param.depends("colour_by", watch=True)
    def _on_colour(self) -> None:
        self._show()

    @param.depends("paint_label", watch=True)
    def _on_paint_label(self) -> None:
        self.paint_button.label = f"Paint selection as {self._label_name(self.paint_label)}"

    def load(self) -> None:
        """Read the newest images and (re)build the map; the selection is kept where the images still are."""
        self.points, self.map = [], None
        if self.plot_type is not None:
            self.points = self.store.map_points(self.plot_type, limit=DEFAULT_CAP)
            if self.points:
                try:
                    self.map = self.store.similarity_map(self.plot_type, self.points, method=self.method)
                except SimilarityError as error:
                    self._say(f"{error}. Showing PCA instead.", "warning")
                    self.method = PCA  # the watcher builds it again
                    return
        self._show()

    def refresh_labels(self) -> None:
        """Read the labels again (after a paint or undo); the map itself stays as it is."""
        if self.plot_type is not None:
            self.points = self.store.map_points(self.plot_type, limit=DEFAULT_CAP)
        self._show()

    def _label_name(self, label_id: int | None) -> str:
        info = self.store.plot_type(self.plot_type)
        label = info.label(int(label_id)) if info and label_id is not None else None
        return label.name if label else "—"

    def _columns(self, ids: Sequence[int], groups: Sequence[str], colours: Sequence[str],
                 xy: np.ndarray | None = None, points: Sequence[MapPoint] = ()) -> dict[str, list]:
        xy = np.zeros((len(ids), 2)) if xy is None else xy
        return {"x": [float(v) for v in xy[:, 0]], "y": [float(v) for v in xy[:, 1]], "id": list(ids),
                "thumb": [image_url(i, "small") for i in ids], "group": list(groups), "colour": list(colours),
                "run": [str(p.run) for p in points], "chunk": [str(p.chunk) for p in points]}

    def _figure(self):  # type: ignore[no-untyped-def]
        fig = figure(height=560, sizing_mode="stretch_width", tools="pan,wheel_zoom,reset",
                     title="images close together look alike · lasso or box to select, tap one for more like it")
        lasso, box = LassoSelectTool(), BoxSelectTool()
        fig.add_tools(lasso, box, TapTool())
        fig.toolbar.active_drag = lasso
        fig.add_tools(HoverTool(tooltips="""<div style="max-width:220px"><img src="@thumb" width="200"
            style="display:block"><div>run @run · chunk @chunk · image @id</div><div>@group</div></div>"""))
        fig.scatter("x", "y", source=self.source, color="colour", legend_field="group", size=8, alpha=0.8,
                    selection_line_color="#000000", selection_alpha=1.0, nonselection_alpha=0.25)
        fig.legend.click_policy = "none"
        fig.add_layout(fig.legend[0], "right")  # beside the points, where it never covers one or a lasso
        fig.xaxis.visible = fig.yaxis.visible = False
        fig.grid.visible = False
        return fig

    def _show(self) -> None:
        info = self.store.plot_type(self.plot_type)
        self.feedback.visible = False
        if info is None:
            self.empty.object = empty_state("No plot types yet", "Add one with <code>hydra plot-type add</code> or "
                                            "start the demo with <code>hydra up</code>.")
        elif not self.points:
            self.empty.object = empty_state(f"No images of {info.name} yet",
                                            "The map shows a plot type's images once the pipeline stored some.")
        elif self.map is not None and not self.map.image_ids:
            self.empty.object = empty_state(f"No image of {info.name} could be read",
                                            "Their files are missing from the image folders.")
        self.empty.visible = info is None or not self.points or (self.map is not None and not self.map.image_ids)
        self.plot.visible = not self.empty.visible
        by_id = {p.image_id: p for p in self.points}
        ids = [i for i in (self.map.image_ids if self.map else []) if i in by_id]
        at = {i: k for k, i in enumerate(self.map.image_ids)} if self.map else {}
        shown = [by_id[i] for i in ids]
        labels = {lab.id: (lab.name, lab.colour) for lab in info.labels} if info else {}
        groups, colours = colour_groups(shown, self.colour_by, labels)
        xy = self.map.xy[[at[i] for i in ids]] if self.map and ids else np.zeros((0, 2))
        self.source.data = self._columns(ids, groups, colours, xy, shown)
        self._apply_selection([i for i in self.selected if i in set(ids)])
        capped = (f" · the newest {DEFAULT_CAP:,} images (by run and chunk) are shown; older ones are not on the map"
                  if len(self.points) >= DEFAULT_CAP else "")
        notes = " · ".join(esc(n) for n in (self.map.notes if self.map else []) if n)
        rights = ("" if info is None or self.store.can("label", info.id)
                  else f" · <b style='color:#b42318'>read only: {esc(self.store.user or 'anonymous')} may not label "
                       "this plot type (painting will be refused)</b>")
        self.info.object = (f"<span class=muted><b class=map-count>{len(ids)}</b> images on the map · "
                            f"{esc(self.method)}{capped}{(' · ' + notes) if notes else ''}{rights}</span>")
        self._on_paint_label()

    # ---- selection ----------------------------------------------------------------------------------

    def _on_indices(self, _attr: str, _old: list[int], new: list[int]) -> None:
        ids = self.source.data["id"]
        self.selected = [int(ids[k]) for k in new if k < len(ids)]
        self._render_selection()

    def select(self, image_ids: Sequence[int]) -> list[int]:
        """Select these images on the map (those on it); returns the selection."""
        on_map = set(self.source.data["id"])
        self._apply_selection([int(i) for i in image_ids if int(i) in on_map])
        return self.selected

    def _apply_selection(self, image_ids: list[int]) -> None:
        self.selected = image_ids
        position = {i: k for k, i in enumerate(self.source.data["id"])}
        indices = [position[i] for i in image_ids if i in position]
        if list(self.source.selected.indices) != indices:
            self.source.selected.indices = indices
        self._render_selection()

    def _render_selection(self) -> None:
        n = len(self.selected)
        self.selection.object = (f"<b class=map-selected>{n}</b> image(s) selected" +
                                 (" — lasso or box-select points on the map" if not n else ""))
        self.tiles.object = self._tiles_html(self.similar if self.similar else self.selected[:60],
                                             heading="More like this" if self.similar else "Selected")

    def _tiles_html(self, image_ids: Sequence[int], *, heading: str) -> str:
        if not image_ids:
            return ""
        info = self.store.plot_type(self.plot_type)
        by_id = {p.image_id: p for p in self.points}
        cells = []
        for image_id in image_ids:
            point = by_id.get(image_id)
            caption = f"run {point.run} · chunk {point.chunk}" if point else f"image {image_id}"
            label = self._label_name(point.label_id) if point and point.label_id is not None else UNLABELED
            link = map_link(info.name if info else "", image_id)
            cells.append(f'<div class="tile" data-id="{image_id}"><img src="{image_url(image_id)}" width="150">'
                         f'<div>{esc(caption)} · {esc(label)}</div><a href="{esc(link)}">more like this</a></div>')
        return (f"<div><b>{esc(heading)}</b> ({len(image_ids)})</div>"
                '<div style="display:flex;flex-wrap:wrap;gap:8px">' + "".join(cells) + "</div>")

    def more_like(self, image_id: int) -> list[int]:
        """Select `image_id` and its nearest neighbours in feature space; show them as tiles."""
        if self.map is None or self.map.position(image_id) is None:
            self._say(f"Image {image_id} is not on this map (another plot type, unreadable, or older than the "
                      f"newest {DEFAULT_CAP:,}).", "warning")
            return []
        self.similar = [int(image_id), *self.map.more_like(image_id, self.neighbours)]
        self._apply_selection(list(self.similar))
        self._say(f"Selected image {image_id} and the {len(self.similar) - 1} images most like it.", "info")
        return self.similar

    # ---- paint and undo -----------------------------------------------------------------------------

    def paint(self) -> int | None:
        """Store the chosen label for every selected image in one transaction; returns how many changed."""
        if not self.selected:
            self._say("Nothing selected: lasso or box-select points on the map first.", "warning")
            return None
        if self.paint_label is None:
            self._say("This plot type has no labels to paint.", "warning")
            return None
        painted = dict.fromkeys(self.selected, self.paint_label)
        changes: list[LabelChange] = []
        try:
            changed = self.store.apply_labels(self.plot_type, painted, shown=list(self.source.data["id"]),
                                              source=SOURCE, changes=changes)
        except PermissionDenied as refusal:
            self._say(f"Refused, nothing stored: {refusal}", "danger")
            return None
        except CatalogError as error:
            self._say(f"Nothing stored: {error}", "danger")
            return None
        self._last_paint = (self.plot_type, changes) if changes else None
        name = self._label_name(self.paint_label)
        self.similar = []
        self.refresh_labels()
        self._say(f"Painted {len(painted)} image(s) as {name}: {changed} label(s) changed.", "success")
        return changed

    def undo(self) -> int | None:
        """Put back what the last paint of this page replaced (once), audited like any label change."""
        if self._last_paint is None:
            self._say("Nothing to undo: Undo puts back the last paint of this page, once.", "warning")
            return None
        plot_type, changes = self._last_paint
        try:
            undone, skipped = self.store.undo_labels(plot_type, changes)
        except (PermissionDenied, CatalogError) as error:
            self._say(f"Nothing undone: {error}", "danger")
            return None
        self._last_paint = None
        self.refresh_labels()
        kept = f"; {skipped} kept: labeled again by someone since" if skipped else ""
        self._say(f"Undone: {undone} label(s) put back{kept}.", "success")
        return undone

    def _say(self, text: str, kind: str) -> None:
        self.feedback.object, self.feedback.alert_type, self.feedback.visible = esc(text), kind, True

    # ---- view ---------------------------------------------------------------------------------------

    def __panel__(self) -> pn.viewable.Viewable:
        controls = pn.Row(
            pn.widgets.Select.from_param(self.param.plot_type, width=260),
            pn.widgets.Select.from_param(self.param.colour_by, width=160),
            pn.widgets.Select.from_param(self.param.method, width=120),
            pn.widgets.Select.from_param(self.param.paint_label, width=140),
            self.paint_button,
            self.undo_button,
            pn.widgets.IntInput.from_param(self.param.neighbours, width=150),
            self.like_button,
            sizing_mode="stretch_width",
        )
        return pn.Column(controls, self.info, self.feedback, self.empty, self.plot, self.selection, self.tiles,
                         sizing_mode="stretch_width")
