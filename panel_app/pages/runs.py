"""Runs page: runs (newest first) × plot groups and systems, each cell the flag that stands (the traffic-light
matrix of ALICE's BigScreen), with run metadata and conditions, filters and paging.  Click a cell: its chunk
ranges, reasons and the images behind it; a run coordinator (permission `certify`) confirms or overrides it
there with a comment, and its whole sign-off history shows below.  Certification files download from here.
"""

from __future__ import annotations

import io
from dataclasses import replace
from typing import Any, ClassVar
from urllib.parse import urlencode

import panel as pn
import param
from panel.custom import JSComponent

from hydra_assets.catalog import CatalogError, PermissionDenied
from hydra_assets.db.models import FLAG_VALUES, utcnow
from hydra_assets.flags.rules import FlagError
from panel_app.pages.common import (
    Field,
    empty_state,
    esc,
    fmt_time,
    html_pane,
    remember,
    remembered,
    request_args,
    restore,
    tick,
)
from panel_app.pages.run_flags import DETAIL_CSS, behind, chunks_text, detail_html
from panel_app.store import HydraStore
from panel_app.views_data import FLAG_STYLE, LOOK_BACK, RunRow, RunsFilter, needs_signoff
from panel_app.when import parse_number

ANY = ""
RUN_MAX = 2**63 - 1
COUNT_CAP = 10_000
SETTINGS = ["run_min", "run_max", "flag", "group", "condition_key", "condition_value", "needs_signoff", "page_size",
            "shown_conditions"]  # remembered per browser
SYSTEM = " (system)"  # how a super group is named among the plot groups

MATRIX_CSS = """
:host { display: block; width: 100%; overflow-x: auto; }
table.matrix { border-collapse: collapse; font: 0.85em system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
table.matrix th, table.matrix td { border: 1px solid #e3e7ec; padding: 3px 6px; text-align: left; white-space: nowrap; }
table.matrix th { background: #f3f5f8; font-weight: 600; position: sticky; top: 0; }
table.matrix th.grp { writing-mode: vertical-rl; transform: rotate(180deg); vertical-align: bottom; max-height: 140px; }
table.matrix th.super_group { background: #e6ebf2; }
table.matrix td.flag { color: #fff; font-weight: 700; text-align: center; cursor: pointer; min-width: 26px;
  text-shadow: 0 0 2px #000a; }
table.matrix td.flag.unsigned { box-shadow: inset 0 0 0 2px #1f2d3d66; }
table.matrix td.flag:hover, table.matrix td.flag:focus { outline: 3px solid #1f6feb; outline-offset: -3px; }
table.matrix td.flag.picked { outline: 3px solid #1f2d3d; outline-offset: -3px; }
table.matrix td.none { background: #fafbfc; }
table.matrix td.run { font-weight: 600; }
"""

class FlagMatrix(JSComponent):
    """The runs × groups table; a click (or Enter) on a cell reports "run|scope|group|nonce" in `picked`.
    Text is set with textContent: names from the database never become HTML."""

    meta_columns = param.List(default=[], doc="headings of the run metadata columns")
    columns = param.List(default=[], doc="[{key, scope, group, label, title}] of the flag columns")
    rows = param.List(default=[], doc="[{run, meta: [text], cells: {key: {flag, letter, colour, signed, title}}}]")
    picked = param.String(default="", doc="the clicked cell")

    _stylesheets: ClassVar[list[str]] = [MATRIX_CSS]

    _esm = """
export function render({ model }) {
  const wrap = document.createElement('div');
  let picked = null;
  function draw() {
    const table = document.createElement('table');
    table.className = 'matrix';
    const head = table.createTHead().insertRow();
    for (const text of model.meta_columns) {
      const th = document.createElement('th'); th.textContent = text; head.append(th);
    }
    for (const c of model.columns) {
      const th = document.createElement('th'); th.className = 'grp ' + c.scope; th.textContent = c.label;
      th.title = c.title; head.append(th);
    }
    const body = table.createTBody();
    for (const r of model.rows) {
      const tr = body.insertRow(); tr.dataset.run = String(r.run);
      r.meta.forEach((text, i) => { const td = tr.insertCell(); td.textContent = text; if (i === 0) { td.className = 'run'; } });
      for (const c of model.columns) {
        const td = tr.insertCell();
        const cell = r.cells[c.key];
        if (!cell) { td.className = 'none'; td.title = c.title + ': no flag'; continue; }
        td.className = 'flag' + (cell.signed ? ' signed' : ' unsigned');
        td.style.background = cell.colour;
        td.textContent = cell.letter + (cell.signed ? '\u2713' : '');
        td.title = cell.title;
        td.dataset.flag = cell.flag; td.dataset.group = c.group; td.dataset.scope = c.scope;
        td.tabIndex = 0; td.setAttribute('role', 'button');
        const pick = () => {
          if (picked) { picked.classList.remove('picked'); }
          picked = td; td.classList.add('picked');
          model.picked = [r.run, c.scope, c.group, Date.now()].join('|');
        };
        td.addEventListener('click', pick);
        td.addEventListener('keydown', (ev) => { if (ev.key === 'Enter' || ev.key === ' ') { pick(); ev.preventDefault(); } });
      }
    }
    wrap.replaceChildren(table);
  }
  draw();
  for (const name of ['rows', 'columns', 'meta_columns']) { model.on(name, draw); }
  return wrap;
}
"""


class RunsPage(pn.viewable.Viewer):
    """Runs × groups, coloured by the flag that stands; filters, paging, details and sign-off."""

    run_min = param.Integer(default=None, allow_None=True, label="Run from")
    run_max = param.Integer(default=None, allow_None=True, label="Run to")
    flag = param.Selector(default=ANY, objects={"any flag": ANY, **{f: f for f in FLAG_VALUES}}, label="Flag")
    group = param.Selector(default=ANY, objects=[ANY], label="Plot group or system")
    condition_key = param.Selector(default=ANY, objects=[ANY], label="Run condition")
    condition_value = param.String(default="", label="equals")
    needs_signoff = param.Boolean(default=False, label="Only runs needing sign-off")
    shown_conditions = param.ListSelector(default=[], objects=[], label="Conditions shown")
    page_size = param.Selector(default=50, objects=[25, 50, 100], label="Runs per page")
    page = param.Integer(default=0, bounds=(0, None))

    def __init__(self, store: HydraStore, *, args: dict[str, str] | None = None, **params) -> None:
        self.store = store
        super().__init__(**params)
        self.groups: dict[str, tuple[str, str]] = {}  # option -> (scope, name)
        for name in store.super_group_names():
            self.groups[name + SYSTEM] = ("super_group", name)
        for name in store.group_names():
            self.groups[name] = ("group", name)
        self.param.group.objects = {"every group": ANY, **{k: k for k in self.groups}}
        keys = store.condition_keys()
        self.param.condition_key.objects = {"any": ANY, **{k: k for k in keys}}
        self.param.shown_conditions.objects = {esc(k): k for k in keys}  # Choices.js shows labels as HTML
        self.runs: list[RunRow] = []
        with param.parameterized.discard_events(self):
            self.shown_conditions = keys[:3]
        restore(self, remembered("hydra_runs"), [n for n in SETTINGS if n not in params])
        self.has_more = False
        self.total: int | None = 0  # None: not counted (flag and condition filters)
        self.window_start: int | None = None  # the oldest run a flag filter searched (no "Run from" given)
        self._cursors: list[int | None] = [None]  # per page visited: the run number the page starts below
        self.matrix = FlagMatrix(sizing_mode="stretch_width")
        self.matrix.param.watch(self._on_pick, "picked")
        self.pager = html_pane("")
        self.empty = html_pane("", visible=False)
        self.picked: tuple[int, str, str] | None = None
        self.detail = html_pane("", stylesheets=[DETAIL_CSS])
        self.feedback = pn.pane.Alert("", visible=False, sizing_mode="stretch_width")
        self.range_choice = pn.widgets.Select(label="Range", options={}, width=220)
        self.action = pn.widgets.RadioButtonGroup(label="Action", options=["confirm", "override"], value="confirm",
                                                  margin=(24, 10, 10, 10))
        self.new_flag = pn.widgets.Select(label="New flag (override)", options={"choose…": "", **{f: f for f in
                                                                                                FLAG_VALUES}},
                                          width=170)
        self.comment = pn.widgets.TextAreaInput(label="Comment", placeholder="why (required for an override)",
                                                width=420, height=70)
        self.submit = pn.widgets.Button(label="Sign off", color="primary", margin=(24, 10, 10, 10))
        self.submit.on_click(self._sign_off)
        self.form = pn.Column(visible=False, sizing_mode="stretch_width")
        self.search()
        args = request_args() if args is None else args
        if args.get("run", "").strip().isdigit() and args.get("group"):
            self.pick(int(args["run"]), args.get("scope") or "group", args["group"])

    # ---- logic (unit-tested without a browser) ----------------------------------------------------

    def current_filter(self) -> RunsFilter:
        scope, name = self.groups.get(self.group, ("group", None))
        return RunsFilter(run_min=self.run_min, run_max=self.run_max, flag=self.flag or None, scope=scope,
                          group=name if self.group else None, condition_key=self.condition_key or None,
                          condition_value=self.condition_value.strip(), needs_signoff=self.needs_signoff)

    def filtered(self) -> bool:
        f = self.current_filter()
        return any((f.run_min is not None, f.run_max is not None, f.flag, f.group, f.condition_key, f.needs_signoff))

    @param.depends("run_min", "run_max", "flag", "group", "condition_key", "condition_value", "needs_signoff",
                   "page_size", watch=True)
    def _on_filter(self) -> None:
        if self.page:
            self.page = 0  # the page watcher searches
        else:
            self.search()

    @param.depends("page", watch=True)
    def search(self) -> None:
        """One page of runs: each page starts below the last run of the page before (a keyset on the run
        number: page 20 costs what page 1 does, a filter is not re-evaluated over the pages before), under the
        look-back the first page took."""
        current = self.current_filter()
        if self.page == 0:
            self._cursors = [None]
            self.window_start = self.store.look_back_start(current)
        known = min(self.page, len(self._cursors) - 1)  # a page reached other than by Next: OFFSET from there
        f = replace(current, run_min=current.run_min if self.window_start is None else self.window_start)
        below = self._cursors[known]
        if below is not None:
            f = replace(f, run_max=below - 1 if f.run_max is None else min(f.run_max, below - 1))
        self.runs, self.has_more = self.store.runs_page(f, limit=self.page_size,
                                                        offset=(self.page - known) * self.page_size)
        if self.runs and len(self._cursors) == self.page + 1:
            self._cursors.append(self.runs[-1].number)
        self.total = self.store.runs_count(current, cap=COUNT_CAP)
        self._draw()

    @param.depends("shown_conditions", watch=True)
    def _draw(self) -> None:
        columns = self.flag_columns()
        meta = ["run", "start (UTC)", "end (UTC)", "chunks", "images", "alarms", *self.shown_conditions]
        self.matrix.param.update(meta_columns=meta, columns=[
            {"key": f"{scope}|{name}", "scope": scope, "group": name, "label": name,
             "title": f"{name} ({'system' if scope == 'super_group' else 'plot group'})"}
            for scope, name in columns
        ], rows=[self.row_data(run, columns) for run in self.runs])
        self.empty.visible = not self.runs
        self.matrix.visible = bool(self.runs)
        self.empty.object = "" if self.runs else empty_state(
            "No run matches these filters" if self.filtered() else "No runs yet",
            "Runs appear as the pipeline registers their images; flags once the flags step has run for them.",
            "Widen the run range or clear a filter.")
        first = self.page * self.page_size + 1
        if self.total is None:
            total = " (more on the next page)" if self.has_more else " (last page)"
        else:
            total = f" of {self.total:,}" if self.total <= COUNT_CAP else f" of more than {COUNT_CAP:,}"
        self.pager.object = (f"<span class=muted>runs {first:,}–{first + len(self.runs) - 1:,}{total}, newest first"
                             " · click a cell for the images behind its flag</span>" if self.runs else "")
        if self.window_start is not None:
            self.pager.object += (f"<br><span class=muted>The flag filter searched the newest {LOOK_BACK:,} runs "
                                  f"(from run {self.window_start}); type a “Run from” to search further back.</span>")

    def flag_columns(self) -> list[tuple[str, str]]:
        """(scope, group) of the flag columns: systems, then plot groups, then any other group a flag names;
        only the chosen one under a group filter."""
        if self.group:
            return [self.groups[self.group]]
        known = list(self.groups.values())
        seen = {key for run in self.runs for key in run.cells}
        extra = sorted(seen - set(known), key=lambda k: (k[0] != "super_group", k[1].lower()))
        return known + extra

    def row_data(self, run: RunRow, columns: list[tuple[str, str]]) -> dict[str, Any]:
        start = fmt_time(run.started_at) if run.started_at else f"~{fmt_time(run.first_seen)}"
        end = fmt_time(run.ended_at) if run.ended_at else f"~{fmt_time(run.last_seen)}"
        meta = [str(run.number), start, end, str(run.chunk_count), str(run.image_count), str(run.alarm_count),
                *(str(run.conditions.get(k, "")) for k in self.shown_conditions)]
        cells = {}
        for scope, name in columns:
            cell = run.cells.get((scope, name))
            if cell is None:
                continue
            colour, letter = FLAG_STYLE.get(cell.standing, FLAG_STYLE["Null"])
            signed = not needs_signoff(cell)
            cells[f"{scope}|{name}"] = {
                "flag": cell.standing, "letter": letter, "colour": colour, "signed": signed,
                "title": f"run {run.number} · {name}: {cell.standing} ({'signed off' if signed else 'not signed off'})"}
        return {"run": run.number, "meta": meta, "cells": cells}

    def _on_pick(self, event: Any) -> None:
        parts = (event.new or "").split("|")
        if len(parts) >= 3 and parts[0].isdigit():
            self.pick(int(parts[0]), parts[1], parts[2])

    def plot_types_of(self, scope: str, group: str) -> list[int]:
        found = self.store.plot_types_in(group=group if scope == "group" else None,
                                         super_group=group if scope == "super_group" else None)
        return found or []

    def browser_link(self, run: int, scope: str, group: str) -> str:
        key = "group" if scope == "group" else "super_group"
        return "./browser?" + urlencode({"run": run, key: group})

    def pick(self, run: int, scope: str, group: str) -> None:
        """Show one cell's details and the sign-off form for it."""
        self.picked = (run, scope, group)
        cell, history = self.store.flag_cell(run, scope, group)
        if cell is None:
            self.detail.object = empty_state(f"Run {run} has no flag for {group}",
                                             "Flags appear once the flags step has run for this run.")
            self.form.visible = False
            return
        ids = self.plot_types_of(scope, group)
        named, first, last = behind(cell)
        names = {pt.id: pt.name for pt in self.store.catalogue().values()}
        ids = [i for i in ids if names.get(i) in named] or ids
        tiles = self.store.images_behind(run, ids, first, last)
        self.detail.object = detail_html(cell, history, tiles, names, self.browser_link(run, scope, group))
        options = {"whole run": "whole"}
        for r in cell.ranges:
            options[f"{chunks_text(r.first_chunk, r.last_chunk)} ({r.standing})"] = f"{r.first_chunk}-{r.last_chunk}"
        self.range_choice.options = options
        self.range_choice.value = "whole"
        self.form.visible = True

    def sign_off(self, *, chosen_range: str, action: str, flag: str, comment: str) -> str:
        """Confirm or override the picked cell's flag as the form says; returns what was done.  Only what the
        user chose is written (an override without a chosen flag is refused); `flags.signoff.sign_off` checks
        the rest and `certify` (raising FlagError / PermissionDenied)."""
        if self.picked is None:
            raise CatalogError("click a cell of the table first")
        run, scope, group = self.picked
        first = last = None
        if chosen_range != "whole":
            first, last = (int(x) for x in chosen_range.split("-"))
        if action == "override" and flag not in FLAG_VALUES:
            raise CatalogError("choose the new flag for the override")
        self.store.sign_off_flag(run, scope, group, first, last, action=action,
                                 flag=flag if action == "override" else None, comment=comment.strip())
        cell, _history = self.store.flag_cell(run, scope, group)
        now = cell.standing if cell else "?"
        return f"Signed off ({action}): {group} of run {run}, {chunks_text(first, last)}; the run's flag now stands at {now}."

    def _sign_off(self, _event: Any = None) -> None:
        try:
            done = self.sign_off(chosen_range=self.range_choice.value, action=self.action.value,
                                 flag=self.new_flag.value, comment=self.comment.value or "")
        except PermissionDenied as refused:
            self._say(f"Not signed off: {refused}. Signing off needs the certify permission (role coordinator).",
                      "danger")
            return
        except (CatalogError, FlagError) as problem:
            self._say(f"Not signed off: {problem}", "warning")
            return
        self.comment.value = ""
        self.new_flag.value = ""
        self._say(done, "success")
        run, scope, group = self.picked or (0, "", "")
        self.search()
        self.pick(run, scope, group)

    def _say(self, text: str, kind: str) -> None:
        self.feedback.object = esc(text)
        self.feedback.alert_type = kind
        self.feedback.visible = True

    # ---- downloads -----------------------------------------------------------------------------------

    def export(self, fmt: str) -> io.StringIO:
        """The certification file for the runs the filters select (run range and group)."""
        f = self.current_filter()
        try:
            return io.StringIO(self.store.export_flags(fmt, run_min=f.run_min, run_max=f.run_max,
                                                       group=f.group, scope=f.scope))
        except FlagError as problem:  # said on the page; the file says it too rather than being empty
            self._say(f"No certification file: {problem}", "warning")
            return io.StringIO(f"no certification file: {problem}\n")

    # ---- view ---------------------------------------------------------------------------------------

    def _run_field(self, name: str, label: str) -> Field:
        def in_force() -> str:
            value = getattr(self, name)
            return "no bound" if value is None else f"run {value}"

        value = getattr(self, name)
        return Field(label, "" if value is None else str(value),
                     lambda text: parse_number(text, low=0, high=RUN_MAX, integer=True),
                     lambda number: setattr(self, name, number), width=120, placeholder="any", in_force=in_force)

    def __panel__(self) -> pn.viewable.Viewable:
        prev_button = pn.widgets.Button(label="◀ Previous", margin=(5, 6))
        next_button = pn.widgets.Button(label="Next ▶", margin=(5, 6))
        prev_button.on_click(lambda _e: setattr(self, "page", max(0, self.page - 1)))
        next_button.on_click(lambda _e: self.has_more and setattr(self, "page", self.page + 1))
        stamp = utcnow().strftime("%Y%m%d")
        filters = pn.Column(
            pn.Row(
                self._run_field("run_min", "Run from"),
                self._run_field("run_max", "Run to"),
                pn.widgets.Select.from_param(self.param.flag, width=120),
                pn.widgets.Select.from_param(self.param.group, width=180),
                pn.widgets.Select.from_param(self.param.condition_key, width=150),
                pn.widgets.TextInput.from_param(self.param.condition_value, width=120, placeholder="value"),
                tick(self, "needs_signoff", margin=(32, 10, 10, 10)),
            ),
            pn.Row(
                pn.widgets.MultiChoice.from_param(self.param.shown_conditions, width=360),
                pn.widgets.Select.from_param(self.param.page_size, width=110),
                pn.widgets.FileDownload(callback=lambda: self.export("json"), filename=f"hydra-golden-{stamp}.json",
                                        label="Golden JSON (Good ranges)", color="primary",
                                        margin=(24, 10, 10, 10)),
                pn.widgets.FileDownload(callback=lambda: self.export("csv"), filename=f"hydra-flags-{stamp}.csv",
                                        label="CSV (every flag and sign-off)", margin=(24, 10, 10, 10)),
                remember(self, "hydra_runs", SETTINGS),
            ),
        )
        note = "" if self.store.can("certify") else (
            '<p class="muted">Signing off needs the <b>certify</b> permission (role coordinator); the form refuses '
            "otherwise.</p>")
        self.form[:] = [
            html_pane(f"<h4>Sign off this flag</h4>{note}"),
            pn.Row(self.range_choice, self.action, self.new_flag),
            pn.Row(self.comment, self.submit),
        ]
        return pn.Column(filters, pn.Row(prev_button, next_button, self.pager), self.empty, self.matrix,
                         self.feedback, self.detail, self.form, sizing_mode="stretch_width")
