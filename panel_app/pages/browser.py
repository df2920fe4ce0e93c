"""Plot Browser: every image, filtered by run range, plot type, group, label (human or model) and time."""

from __future__ import annotations

import panel as pn
import param

from hydra_assets.db.models import utcnow
from hydra_assets.rules import REFERENCE
from panel_app.images import gradcam_url, image_url
from panel_app.pages.common import (
    Field,
    chip,
    empty_state,
    esc,
    fmt_time,
    fmt_weight,
    html_pane,
    remember,
    remembered,
    request_args,
    restore,
)
from panel_app.pages.compare import reference_line
from panel_app.pages.similarity import map_link
from panel_app.store import CatalogError, HydraStore, PermissionDenied
from panel_app.views_data import REFERENCE_SORT, SORT_NAMES, UNLABELED, BrowseFilter, Tile
from panel_app.when import FORMS, parse_number, parse_when

ANY = ""
COUNT_CAP = 10_000  # "of more than 10,000": a broad filter never counts a million rows
RUN_MAX = 2**31 - 1  # the database's run column
SETTINGS = ["run_min", "run_max", "plot_types", "group", "super_group", "label_source", "label_name", "sort",
            "page_size", "since_text", "until_text"]  # remembered per browser; times as typed ("-24h" stays relative)
SETTINGS += ["reference_min", "reference_above"]  # the reference score's filters (issue 14)
SETTINGS += ["condition_key", "condition_value"]  # a run condition the image's run has (issue 16)
DATE_HINT = "2026-11-28, -24h, yesterday"

BROWSER_CSS = """
.tiles { display: grid; grid-template-columns: repeat(auto-fill, minmax(210px, 1fr)); gap: 8px; }
.tile { border: 1px solid #d0d7de; border-radius: 6px; padding: 4px; background: #fff; font-size: 0.8em; }
.tile img { width: 100%; display: block; border-radius: 3px; background: #f6f8fa; min-height: 60px; }
.tile .row { display: flex; justify-content: space-between; gap: 4px; margin-top: 3px; align-items: center; }
.tile b { word-break: break-all; }
"""


class BrowserPage(pn.viewable.Viewer):
    run_min = param.Integer(default=None, allow_None=True, label="Run from")
    run_max = param.Integer(default=None, allow_None=True, label="Run to")
    plot_types = param.ListSelector(default=[], objects=[], label="Plot types (none = all)")
    group = param.Selector(default=ANY, objects=[ANY], label="Plot group")
    super_group = param.Selector(default=ANY, objects=[ANY], label="System")
    label_source = param.Selector(default="human", objects=["human", "model"], label="Label by")
    label_name = param.Selector(default=ANY, objects=[ANY], label="Label")
    since = param.Date(default=None, allow_None=True, label="Received from (UTC)")
    until = param.Date(default=None, allow_None=True, label="Received until (UTC)")
    sort = param.Selector(default="newest first", objects=list(SORT_NAMES), label="Sort")
    page_size = param.Selector(default=60, objects=[30, 60, 120], label="Per page")
    page = param.Integer(default=0, bounds=(0, None))
    since_text = param.String(default="", doc="The 'Received from' field as typed")
    reference_min = param.Number(default=None, allow_None=True, label="Reference score at least")
    reference_above = param.Boolean(default=False, label="Unlike the reference (score above its limit)")
    until_text = param.String(default="", doc="The 'Received until' field as typed")
    condition_key = param.Selector(default=ANY, objects=[ANY], label="Run condition")
    condition_value = param.String(default="", label="equals")

    def __init__(self, store: HydraStore, **params) -> None:
        self.store = store
        super().__init__(**params)
        catalogue = store.catalogue()
        # the MultiChoice hands its option labels to Choices.js, which inserts them as HTML: escape them here
        self.param.plot_types.objects = {esc(pt.name): pt.id for pt in catalogue.values()}
        self.param.group.objects = {"any": ANY, **{g: g for g in store.group_names()}}
        self.param.super_group.objects = {"any": ANY, **{g: g for g in store.super_group_names()}}
        names = sorted({lab.name for pt in catalogue.values() for lab in pt.labels}, key=str.lower)
        self.param.label_name.objects = {"any": ANY, UNLABELED: UNLABELED, **{n: n for n in names}}
        self.param.condition_key.objects = {"any": ANY, **{k: k for k in store.condition_keys()}}
        saved = remembered("hydra_browser")
        restore(self, saved, [n for n in SETTINGS if n not in params])
        with param.parameterized.discard_events(self):
            for name in ("since", "until"):
                try:
                    setattr(self, name, parse_when(getattr(self, f"{name}_text"), utcnow()))
                except ValueError:
                    setattr(self, f"{name}_text", "")
        self.from_link(request_args())
        self.tiles: list[Tile] = []
        self.total: int | None = 0  # None: not counted (model-label filters)
        self.has_more = False
        self.results = html_pane("", stylesheets=[BROWSER_CSS])
        self.pager = html_pane("")
        self.reference_note = html_pane("", width=420, margin=(30, 10, 10, 10))
        self.search()

    def current_filter(self) -> BrowseFilter:
        ids: list[int] | None = list(self.plot_types) or None
        in_groups = self.store.plot_types_in(group=self.group or None, super_group=self.super_group or None)
        if in_groups is not None:
            ids = [i for i in (ids if ids is not None else in_groups) if i in set(in_groups)]
        label = self.label_name or None
        if label == UNLABELED and self.label_source == "model":
            label = None
        return BrowseFilter(run_min=self.run_min, run_max=self.run_max, plot_type_ids=ids,
                              label_source=self.label_source, label_name=label, since=self.since, until=self.until,
                              condition_key=self.condition_key or None, condition_value=self.condition_value.strip())

    def from_link(self, args: dict[str, str]) -> None:
        """A link from another page (the Runs page: `?run=N&group=G`) sets those filters, over remembered ones."""
        with param.parameterized.discard_events(self):
            if args.get("run", "").strip().isdigit():
                self.run_min = self.run_max = int(args["run"])
            for name in ("group", "super_group", "condition_key"):
                if args.get(name) in self.param[name].objects.values():
                    setattr(self, name, args[name])
            if "condition_value" in args:
                self.condition_value = args["condition_value"]

    @param.depends("condition_key", "condition_value", watch=True)
    def _on_condition(self) -> None:
        self._on_filter()

    @param.depends("run_min", "run_max", "plot_types", "group", "super_group", "label_source", "label_name", "since",
                   "until", "sort", "page_size", watch=True)
    def _on_filter(self) -> None:
        if self.page:
            self.page = 0  # the page watcher searches
        else:
            self.search()

    @param.depends("reference_min", "reference_above", watch=True)
    def _on_reference_filter(self) -> None:
        self._on_filter()

    def with_reference(self, f: BrowseFilter) -> BrowseFilter:
        """The filter with the reference score's bounds (issue 14)."""
        f.reference_min, f.reference_above_limit = self.reference_min, self.reference_above
        return f

    def viewed_run(self) -> tuple[int, int] | None:
        """(plot type id, run) when the filter shows one run of one plot type: what "use as reference" takes."""
        ids = self.current_filter().plot_type_ids
        if self.run_min is None or self.run_min != self.run_max or not ids or len(ids) != 1:
            return None
        return ids[0], self.run_min

    def use_as_reference(self, _event=None) -> str:
        """Callback of "Use run N as reference": the store checks `edit_reference` and the run's images."""
        viewed = self.viewed_run()
        if viewed is None:
            text = "Show one run (Run from = Run to) of one plot type first: nothing was changed."
        else:
            try:
                change = self.store.choose_reference(viewed[0], [viewed[1]], comment="Plot Browser")
                text = f"{change.message or f'Reference version {change.version}'}."
            except PermissionDenied as refusal:
                text = f"Refused: {refusal}. Nothing was changed."
            except CatalogError as error:
                text = str(error)
        self.reference_note.object = f"<span class=muted>{esc(text)}</span>"
        return text

    def reference_controls(self) -> pn.Row:
        """The reference score's filters and the "use run N as reference" action."""
        low = Field("Reference score at least", "" if self.reference_min is None else f"{self.reference_min:g}",
                    lambda text: parse_number(text, low=0, high=1e9), lambda v: setattr(self, "reference_min", v),
                    width=170, placeholder="any",
                    in_force=lambda: "any" if self.reference_min is None else f"{self.reference_min:g}")
        above = pn.widgets.Checkbox.from_param(self.param.reference_above, margin=(30, 10, 10, 10))
        use = pn.widgets.Button(label="Use this run as reference", margin=(24, 10, 10, 10),
                                description="Show one run (Run from = Run to) of one plot type, then make it the "
                                            "plot type's reference (needs edit_reference)")
        use.on_click(self.use_as_reference)
        return pn.Row(low, above, use, self.reference_note)

    @param.depends("page", watch=True)
    def search(self) -> None:
        current = self.with_reference(self.current_filter())
        if self.sort == REFERENCE_SORT and current.plot_type_ids is None:  # bench/reference_pages.py: 4.8 s
            self.tiles, self.has_more, self.total = [], False, 0
            self.results.object = empty_state(
                "Choose a plot type, plot group or system to sort by reference score",
                "Sorting every image of every plot type by its score would read them all; scores are compared "
                "within a plot type anyway (each has its own reference and limit).")
            self.pager.object = ""
            return
        self.tiles, self.has_more = self.store.browse(current, sort=self.sort, limit=self.page_size,
                                                      offset=self.page * self.page_size)
        self.total = self.store.browse_count(current, cap=COUNT_CAP)
        self.results.object = self.render()
        self.pager.object = self.pager_html()

    def pager_html(self) -> str:
        if not self.tiles:
            return ""
        first = self.page * self.page_size + 1
        shown = f"images {first:,}–{first + len(self.tiles) - 1:,}"
        if self.total is None:
            total = " (more on the next page)" if self.has_more else " (last page)"
        else:
            total = f" of {self.total:,}" if self.total <= COUNT_CAP else f" of more than {COUNT_CAP:,}"
        return f"<span class=muted>{shown}{total}</span>"

    def render(self) -> str:
        if not self.tiles:
            if not self.store.catalogue():
                return empty_state("No images yet", "Images appear here once the pipeline registers them "
                                   "(<code>hydra up</code> starts a demo).")
            return empty_state("No image matches these filters", "Widen the run range, time window or label filter.")
        catalogue = self.store.catalogue()
        cells = []
        for t in self.tiles:
            pt = catalogue.get(t.plot_type_id)
            human = pt.label(t.label_id) if pt else None
            model = pt.label(t.model_label_id) if pt else None
            cam = (f' · <a href="{gradcam_url(t.image_id, "full")}" target="_blank">GradCAM</a>' if t.gradcam else "")
            like = f' · <a href="{esc(map_link(pt.name, t.image_id))}">more like this</a>' if pt else ""
            cells.append(
                f'<div class="tile"><a href="{image_url(t.image_id, "full")}" target="_blank">'
                f'<img src="{image_url(t.image_id)}" loading="lazy" alt=""></a>'
                f"<div class=row><b>{esc(pt.name if pt else '?')}</b><span>run {t.run} · {t.chunk}</span></div>"
                f"<div class=row><span>human {chip(human.name if human else None, human.colour if human else None)}"
                f"</span><span>model {chip(model.name if model else None, model.colour if model else None, hollow=t.unconfirmed)}"
                f" {fmt_weight(t.model_weight)}</span></div>"
                f"<div class=row><span class=muted>{fmt_time(t.received_at)}{cam}{like}</span></div>"
                f"<div class=row>{reference_line(t.reference_score, t.reference_limit, t.reference_flagged or t.keep_reason == REFERENCE, t.image_id)}"
                "</div></div>"
            )
        return f'<div class="tiles">{"".join(cells)}</div>'

    def next_page(self, _event=None) -> None:
        if self.has_more:
            self.page += 1

    def previous_page(self, _event=None) -> None:
        if self.page:
            self.page -= 1

    def _run_field(self, name: str, label: str) -> Field:
        """A run number: taken, or refused with the reason under the field; empty = no bound."""
        def in_force() -> str:
            value = getattr(self, name)
            return "no bound" if value is None else f"run {value}"

        value = getattr(self, name)
        return Field(label, "" if value is None else str(value),
                     lambda text: parse_number(text, low=0, high=RUN_MAX, integer=True),
                     lambda number: setattr(self, name, number), width=120, placeholder="any", in_force=in_force)

    def _time_field(self, name: str, label: str) -> Field:
        """A time as people type it (see panel_app.when); emptying the field drops the bound at once."""
        def apply(value: object) -> None:
            setattr(self, f"{name}_text", field.input.value.strip())  # remembered as typed
            setattr(self, name, value)

        def in_force() -> str:
            value = getattr(self, name)
            return "no bound" if value is None else f"{fmt_time(value)} UTC"

        field = Field(label, getattr(self, f"{name}_text"), lambda text: parse_when(text, utcnow()), apply,
                      width=190, placeholder=DATE_HINT, explain=lambda value: f"= {fmt_time(value)} UTC",
                      in_force=in_force)
        field.input.description = f"Type {FORMS}. Empty: no bound."
        return field

    def __panel__(self) -> pn.viewable.Viewable:
        prev_button = pn.widgets.Button(label="◀ Previous", margin=(5, 6))
        next_button = pn.widgets.Button(label="Next ▶", margin=(5, 6))
        prev_button.on_click(self.previous_page)
        next_button.on_click(self.next_page)
        filters = pn.Column(
            pn.Row(
                self._run_field("run_min", "Run from"),
                self._run_field("run_max", "Run to"),
                pn.widgets.MultiChoice.from_param(self.param.plot_types, width=360),
                pn.widgets.Select.from_param(self.param.group, width=150),
                pn.widgets.Select.from_param(self.param.super_group, width=150),
            ),
            pn.Row(
                pn.widgets.RadioButtonGroup.from_param(self.param.label_source, margin=(24, 10, 10, 10)),
                pn.widgets.Select.from_param(self.param.label_name, width=150),
                self._time_field("since", "Received from (UTC)"),
                self._time_field("until", "Received until (UTC)"),
                pn.widgets.Select.from_param(self.param.sort, width=200),
                pn.widgets.Select.from_param(self.param.page_size, width=90),
            ),
            self.reference_controls(),
            pn.Row(pn.widgets.Select.from_param(self.param.condition_key, width=170),
                   pn.widgets.TextInput.from_param(self.param.condition_value, width=150, placeholder="value")),
            remember(self, "hydra_browser", SETTINGS),
        )
        return pn.Column(filters, pn.Row(prev_button, next_button, self.pager), self.results,
                         sizing_mode="stretch_width")
