"""Labeler page: paint labels on a page of images and store them all in one transaction.

Queue mode shows unlabeled queued images (unconfirmed and Bad first); Editor mode pages through images
already labeled, filtered by label and labeling time, with keyset pagination so it stays fast over
hundreds of thousands of images.  `/labeler?plot_type=T&run=N&reason=novel|unconfirmed` (a retraining
suggestion's link) shows the queue of exactly the images that suggestion names, with a header saying so.  Apply goes through `HydraStore.apply_labels`, which checks the `label`
permission for the plot type server-side.  Labeling works with the keyboard alone (the keys are listed on the
page, `components.KEY_HELP`); Undo puts back what this session's last Apply replaced (audited like any
label change); the toolbar with the palette, Apply and Undo stays on screen while the page scrolls.
In Queue mode the Queue selector also offers ranked queues and the audit queue (`labeler_queues.py`,
`?queue=NAME`, `?backtest=ID`; docs/labeling-queues.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, time

import panel as pn
import param

from hydra_assets.labeling import LabelChange
from hydra_assets.rules import NOVEL, NOVEL_TEXT, UNCONFIRMED
from hydra_assets.scores.queues import ARRIVAL, AUDIT
from panel_app.components import LabelerGrid
from panel_app.images import gradcam_url, image_url
from panel_app.pages.common import (
    empty_state,
    esc,
    fmt_time,
    html_pane,
    remember,
    remembered,
    request_args,
    restore,
)
from panel_app.pages.labeler_queues import QUEUE_OPTIONS, RankedQueues, queue_from_args
from panel_app.store import CatalogError, HydraStore, PermissionDenied
from panel_app.views_data import Tile

QUEUE, EDITOR = "Queue", "Editor"
ANY = 0
SUGGESTION_KINDS = {NOVEL: NOVEL_TEXT, UNCONFIRMED: "left unconfirmed"}  # ?reason= -> what the header says
SETTINGS = ["plot_type", "page_size", "tile_width", "queue"]  # remembered per browser (cookie, as on the other pages)


class LabelerPage(pn.viewable.Viewer):
    plot_type = param.Selector(default=None, objects=[], label="Plot type")
    mode = param.Selector(default=QUEUE, objects=[QUEUE, EDITOR], label="Mode")
    queue = param.Selector(default=ARRIVAL, objects=QUEUE_OPTIONS, label="Queue")  # ranked: labeler_queues.py
    editor_label = param.Selector(default=ANY, objects={"any label": ANY}, label="Label")
    start = param.Date(default=None, allow_None=True, label="Labeled from (UTC)")
    end = param.Date(default=None, allow_None=True, label="Labeled until (UTC)")
    page_size = param.Selector(default=50, objects=[20, 50, 100, 200], label="Images per page")
    tile_width = param.Integer(default=180, bounds=(100, 420), step=20, label="Tile size")

    def __init__(self, store: HydraStore, *, args: Mapping[str, str] | None = None, **params) -> None:
        self.store = store
        super().__init__(**params)
        saved = remembered("hydra_labeler")
        restore(self, saved, [n for n in ("page_size", "tile_width", "queue") if n not in params])
        args = request_args() if args is None else args
        wanted_queue, backtest_id, queue_problem, args = queue_from_args(args)  # ?queue=NAME, ?backtest=ID
        self.queues = RankedQueues(store, backtest_id)
        self.queues.audit.on_change = self._after_audit
        if wanted_queue:
            restore(self, {"queue": wanted_queue}, ["queue"])
        self.suggestion: tuple[int, str, int, str] | None = None  # (plot type id, name, run, reason) from the URL
        self._suggested: list[Tile] = []
        self.queue_header = html_pane("", visible=False)
        self.grid = LabelerGrid(sizing_mode="stretch_width", tile_width=self.tile_width)
        self.tiles: list[Tile] = []
        self.counts: dict[int, int] = {}
        self._pages: list[object] = [None]  # cursor of every page visited in this mode; last = current page
        self.feedback = pn.pane.Alert("", visible=False, sizing_mode="stretch_width")
        self.info = html_pane("")
        self.empty = html_pane("", visible=False)
        self._last_apply: tuple[int, list[LabelChange]] | None = None  # (plot type, changes) Undo puts back
        self.today = store.labels_since(datetime.combine(datetime.now(UTC).date(), time()))
        self.grid.param.watch(lambda _e: self.apply(), "apply_requests")
        self.grid.param.watch(lambda _e: self.undo(), "undo_requests")
        self._refresh_counts()
        problem = self._read_suggestion(args) or queue_problem
        queue_plot = self.queues.wanted_plot_type(args)
        if self.suggestion is not None:
            self.plot_type = self.suggestion[0]
        elif queue_plot in self.param.plot_type.objects:
            self.plot_type = queue_plot
        elif self.param.plot_type.objects:  # the first plot type with images to label; the watcher loads it
            ids = list(self.param.plot_type.names.values())
            wanted = saved.get("plot_type")  # the plot type this browser labeled last, while it exists
            self.plot_type = wanted if wanted in ids else next((i for i in ids if self.counts.get(i)), ids[0])
        else:
            self._on_plot_type()
        if problem:
            self._say(problem, "warning")

    def _read_suggestion(self, args: Mapping[str, str]) -> str:
        """Take `plot_type`, `run` and `reason` from the URL; returns why they were ignored ("" if taken)."""
        if not any(key in args for key in ("plot_type", "run", "reason")):
            return ""
        name, run, reason = args.get("plot_type", ""), args.get("run", ""), args.get("reason", "")
        info = next((pt for pt in self.store.catalogue().values() if pt.name == name), None)
        if info is None:
            return f"No plot type named “{name}”: showing the whole queue instead."
        if not run.strip().isdigit():
            return f"“{run}” is not a run number: showing the whole queue of {name} instead."
        if reason not in SUGGESTION_KINDS:
            return (f"Reason “{reason}” is neither {' nor '.join(SUGGESTION_KINDS)}: showing the whole queue of "
                    f"{name} instead.")
        self.suggestion = (info.id, name, int(run), reason)
        return ""

    # ---- logic --------------------------------------------------------------------------------------

    def _refresh_counts(self) -> None:
        ids = list(self.store.catalogue())
        self.counts = self.store.queue_counts(ids)
        current = self.plot_type
        self.param.plot_type.objects = self.store.plot_type_options(self.counts)
        if current is not None:
            self.plot_type = current

    @param.depends("plot_type", watch=True)
    def _on_plot_type(self) -> None:
        if self.suggestion is not None and self.suggestion[0] != self.plot_type:
            self.suggestion = None  # another plot type chosen: its whole queue
        info = self.store.plot_type(self.plot_type)
        labels = info.labels if info else []
        self.grid.palette = [{"id": lab.id, "name": lab.name, "colour": lab.colour} for lab in labels] + [
            {"id": None, "name": "erase", "colour": "#555555"}
        ]
        self.grid.selected = 0
        self.param.editor_label.objects = {"any label": ANY, **{lab.name: lab.id for lab in labels}}
        self.editor_label = ANY
        self.load(reset=True)

    @param.depends("mode", "queue", "editor_label", "start", "end", "page_size", watch=True)
    def _on_filters(self) -> None:
        self.load(reset=True)

    @param.depends("tile_width", watch=True)
    def _on_tile_width(self) -> None:
        self.grid.tile_width = self.tile_width

    def load(self, *, reset: bool = False) -> list[Tile]:
        """Fetch the current page (the first one when `reset`) and show it with nothing painted."""
        if reset:
            self._pages = [None]
        cursor = self._pages[-1]
        self.tiles = self._fetch(cursor)
        info = self.store.plot_type(self.plot_type)
        names = {lab.id: lab for lab in info.labels} if info else {}
        images = []
        for t in self.tiles:
            model = names.get(t.model_label_id)
            state = f" ({NOVEL_TEXT})" if t.novel else f" ({UNCONFIRMED})" if t.unconfirmed else ""
            detail = (f"model: {model.name} {t.model_weight:.2f}{state}"
                      if model and t.model_weight is not None else "not classified")
            if self.mode == EDITOR:
                human = names.get(t.label_id)
                detail = f"now: {human.name if human else '—'} · {fmt_time(t.labeled_at)[:16]} · {detail}"
            images.append({"id": t.image_id, "src": image_url(t.image_id), "large": image_url(t.image_id, "full"),
                           "gradcam": gradcam_url(t.image_id, "full") if t.gradcam else None,
                           "caption": f"run {t.run} · chunk {t.chunk}", "detail": detail})
        self.grid.painted = {}
        self.grid.images = [] if self.auditing() else images  # the audit queue answers in its own rows
        if not self.auditing():
            self.queues.audit.show(self.plot_type, [])
        self._render_info()
        return self.tiles

    def suggested(self) -> bool:
        """Whether the page shows a retraining suggestion's queue (not the plot type's whole queue)."""
        return self.suggestion is not None and self.mode == QUEUE

    def ranked(self) -> bool:
        """Whether the page shows a ranked queue (labeler_queues.py) instead of arrival order."""
        return self.mode == QUEUE and not self.suggested() and self.queue != ARRIVAL

    def auditing(self) -> bool:
        return self.ranked() and self.queue == AUDIT

    def _after_audit(self) -> None:
        self._refresh_counts()
        self.load(reset=True)

    def _fetch(self, cursor: object) -> list[Tile]:
        if self.plot_type is None:
            return []
        if self.suggested():
            _id, name, run, reason = self.suggestion  # type: ignore[misc]
            if cursor is None:  # first page: read the suggestion's images again (Apply moved labeled ones last)
                self._suggested = self.store.suggested_tiles(name, run, reason)
            offset = int(cursor or 0)
            return self._suggested[offset: offset + self.page_size]
        if self.ranked():
            return self.queues.fetch(self.plot_type, self.queue, int(cursor or 0), self.page_size)
        if self.mode == QUEUE:
            return self.store.labeler_queue(self.plot_type, limit=self.page_size, after=cursor)
        info = self.store.plot_type(self.plot_type)
        label_ids = [self.editor_label] if self.editor_label != ANY else [lab.id for lab in info.labels] if info else []
        return self.store.editor_page(self.plot_type, label_ids, start=self.start, end=self.end, before=cursor,
                                      limit=self.page_size)

    def next_page(self, _event=None) -> None:
        if len(self.tiles) < self.page_size:
            self._say("This is the last page.", "info")
            return
        last = self.tiles[-1]
        if self.suggested() or self.ranked():
            self._pages.append(int(self._pages[-1] or 0) + len(self.tiles))  # type: ignore[call-overload]
        else:
            self._pages.append(last.queue_key if self.mode == QUEUE else last.editor_key)
        self.load()

    def previous_page(self, _event=None) -> None:
        if len(self._pages) > 1:
            self._pages.pop()
            self.load()

    def label_all(self, _event=None) -> None:
        """Paint every image on the page with the selected palette entry."""
        entry = self.grid.palette[self.grid.selected] if self.grid.palette else None
        if entry is None:
            return
        self.grid.painted = {str(t.image_id): entry["id"] for t in self.tiles}

    def clear(self, _event=None) -> None:
        self.grid.painted = {}

    def apply(self, _event=None) -> int | None:
        """Store every painted label in one transaction, then refill the page with the next images."""
        painted = dict(self.grid.painted)
        if not painted:
            self._say("Nothing painted yet: click images (shift-click for a range) with a label chosen.", "warning")
            return None
        changes: list[LabelChange] = []
        try:
            changed = self.store.apply_labels(self.plot_type, painted, shown=[t.image_id for t in self.tiles],
                                              changes=changes)
        except PermissionDenied as refusal:
            self._say(f"Refused, nothing stored: {refusal}", "danger")
            return None
        except CatalogError as error:
            self._say(f"Nothing stored: {error}", "danger")
            return None
        self._last_apply = (self.plot_type, changes) if changes else None
        self.today += changed
        self._refresh_counts()
        self.load(reset=self.mode == QUEUE)
        self._say(f"Stored {changed} label(s) ({len(painted)} painted). You labeled {self.today} today.", "success")
        return changed

    def undo(self, _event=None) -> int | None:
        """Put back what this session's last Apply replaced (labels and queue places); once per Apply."""
        if self._last_apply is None:
            self._say("Nothing to undo: Undo puts back the last Apply of this page, once.", "warning")
            return None
        plot_type, changes = self._last_apply
        try:
            undone, skipped = self.store.undo_labels(plot_type, changes)
        except (PermissionDenied, CatalogError) as error:
            self._say(f"Nothing undone: {error}", "danger")
            return None
        self._last_apply = None
        self.today = max(0, self.today - undone)
        self._refresh_counts()
        if plot_type != self.plot_type:
            self.plot_type = plot_type
        self.load(reset=True)
        kept = f"; {skipped} kept: labeled again by someone since" if skipped else ""
        self._say(f"Undone: {undone} label(s) put back{kept}.", "success")
        return undone

    def _say(self, text: str, kind: str) -> None:
        """Say it in the toolbar, which stays on screen (`feedback` keeps it for the page's logic tests)."""
        self.feedback.object, self.feedback.alert_type, self.feedback.visible = esc(text), kind, True
        self.grid.note_kind, self.grid.note = kind, text

    def _render_info(self) -> None:
        self.feedback.visible = False
        self.grid.note = ""
        info = self.store.plot_type(self.plot_type)
        if info is None:
            self.empty.object = empty_state("No plot types yet", "Add one with <code>hydra plot-type add</code> or "
                                            "start the demo with <code>hydra up</code>.")
        elif not self.tiles and self.suggested():
            self.empty.object = empty_state("No image matches this suggestion",
                                            "The active model has no such images in this run (any more).")
        elif not self.tiles and self.ranked():
            self.empty.object = self.queues.empty_message(self.queue, info.name)
        elif not self.tiles and self.mode == QUEUE:
            self.empty.object = empty_state(
                f"Nothing to label for {info.name}",
                "The queue holds unconfirmed, Bad and collected images until a human labels them.",
                "Switch to Editor mode to relabel images already labeled, or pick another plot type.")
        elif not self.tiles:
            self.empty.object = empty_state("No labeled images match", "Change the label or time filters.")
        self.empty.visible = not self.tiles
        self.queue_header.object = self.suggestion_header() or (
            self.queues.header(self.queue, self.plot_type) if self.ranked() else "")
        self.queue_header.visible = bool(self.queue_header.object)
        page = len(self._pages)
        queued = self.counts.get(self.plot_type, 0) if self.plot_type is not None else 0
        rights = (
            "" if self.plot_type is None or self.store.can("label", self.plot_type)
            else f" · <b style='color:#b42318'>read only: {esc(self.store.user or 'anonymous')} may not label this "
                 "plot type (Apply will be refused)</b>"
        )
        self.info.object = (f"<span class=muted>{'queue' if self.mode == QUEUE else 'editor'} page {page} · "
                            f"{len(self.tiles)} images on this page · {queued} in the queue · "
                            f"you labeled <b class=today>{self.today}</b> today (UTC){rights}</span>")

    def suggestion_header(self) -> str:
        """What this queue is, when it is a retraining suggestion's; "" for the plot type's whole queue."""
        if not self.suggested():
            return ""
        _id, name, run, reason = self.suggestion  # type: ignore[misc]
        unlabeled = sum(t.label_id is None for t in self._suggested)
        return (f"<div class=suggest><b class=head>Queue: {esc(name)} run {run} — images the active model found "
                f"{esc(SUGGESTION_KINDS[reason])}</b>{len(self._suggested)} image(s), {unlabeled} not labeled yet "
                "(unlabeled first, the most telling first). Label them, then retrain. "
                f'<a href="./labeler">Show the whole queue instead</a></div>')

    # ---- view ---------------------------------------------------------------------------------------

    def __panel__(self) -> pn.viewable.Viewable:
        def button(name: str, callback, kind: str = "default") -> pn.widgets.Button:  # type: ignore[no-untyped-def]
            widget = pn.widgets.Button(label=name, color=kind, margin=(24, 6, 10, 6))
            widget.on_click(callback)
            return widget

        editor_filters = pn.Row(
            pn.widgets.Select.from_param(self.param.editor_label, width=160),
            pn.widgets.DatetimeInput.from_param(self.param.start, width=190),
            pn.widgets.DatetimeInput.from_param(self.param.end, width=190),
            visible=self.param.mode.rx() == EDITOR,
        )
        controls = pn.Row(
            pn.widgets.Select.from_param(self.param.plot_type, width=280),
            pn.widgets.RadioButtonGroup.from_param(self.param.mode, margin=(24, 10, 10, 10)),
            pn.widgets.Select.from_param(self.param.queue, width=250, visible=self.param.mode.rx() == QUEUE),
            pn.widgets.Select.from_param(self.param.page_size, width=110),
            pn.widgets.IntSlider.from_param(self.param.tile_width, width=150),
            editor_filters,
            remember(self, "hydra_labeler", SETTINGS),
            sizing_mode="stretch_width",
        )
        actions = pn.Row(
            button("Label all on page", self.label_all),
            button("Clear paint", self.clear),
            button("◀ Previous page", self.previous_page),
            button("Next page ▶", self.next_page),
            self.info,
            sizing_mode="stretch_width",
        )
        self.info.margin = (32, 10, 10, 10)
        return pn.Column(self.queue_header, controls, actions, self.empty, self.queues.audit, self.grid,
                         sizing_mode="stretch_width")
