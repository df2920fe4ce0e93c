"""Log page: every confirmed Bad, unconfirmed and novel image of a trailing window, by detector, with a daily
brief; retraining suggestions on top.  It refreshes itself while open (every HYDRA_STATUS_REFRESH_MS)."""

from __future__ import annotations

import base64
import io
from datetime import datetime

import panel as pn
import param

from hydra_assets.db.models import utcnow
from hydra_assets.rules import BAD, NOVEL, NOVEL_TEXT, REFERENCE_TEXT
from panel_app.images import gradcam_url, image_url
from panel_app.pages.common import (
    Field,
    chip,
    empty_state,
    esc,
    fmt_time,
    fmt_weight,
    html_pane,
    needed,
    remember,
    remembered,
    restore,
    suggestions_html,
    tick,
)
from panel_app.store import HydraStore
from panel_app.views_data import LOG_KINDS, LogEntry, ReferenceFlag, fmt_score, group_log, window
from panel_app.when import parse_number

SHOW_MAX = 400  # entries rendered on the page (the brief holds them all)
REFERENCE_KIND = REFERENCE_TEXT  # the reference score's flags (issue 14), beside the classifier's kinds
SETTINGS = ["hours", "kind", "gradcam"]  # remembered per browser

LOG_CSS = """
h3.group { margin: 18px 0 6px; border-bottom: 2px solid #1f2d3d; padding-bottom: 3px; }
h3.group small { color: #5b6878; font-weight: 400; }
.entries { display: grid; grid-template-columns: repeat(auto-fill, minmax(330px, 1fr)); gap: 8px; }
.entry { display: flex; gap: 8px; border: 1px solid #d0d7de; border-left: 5px solid var(--c); border-radius: 6px;
  padding: 6px; background: #fff; }
.entry.unconfirmed, .entry.novel { border-left-style: dashed; }
.entry.novel { border-color: #6f42c1; }
.entry.reference { border-color: #b54708; }
.entry .why { color: #3d4a5a; }
.entry .pics { display: flex; gap: 4px; flex: 0 0 auto; }
.entry .pics img { width: 110px; border-radius: 3px; background: #f6f8fa; }
.entry .info { font-size: 0.85em; line-height: 1.45; min-width: 0; }
.entry .info b { word-break: break-all; }
.summary { display: flex; gap: 20px; flex-wrap: wrap; margin: 4px 0 8px; }
"""


def entry_html(e: LogEntry, *, gradcam: bool) -> str:
    cam = f'<img src="{gradcam_url(e.image_id, "small")}" alt="GradCAM" title="GradCAM">' if gradcam and e.gradcam else ""
    human = f"<br>human: {esc(e.human_label)}" if e.human_label else ""
    return (
        f'<div class="entry {esc(e.keep_reason)}" style="--c:{esc(e.colour)}">'
        f'<div class="pics"><a href="{image_url(e.image_id, "full")}" target="_blank">'
        f'<img src="{image_url(e.image_id, "small")}" alt="{esc(e.plot_type)}" loading="lazy"></a>{cam}</div>'
        f'<div class="info"><b>{esc(e.plot_type)}</b><br>run {e.run} · chunk {e.chunk}<br>'
        f"{fmt_time(e.classified_at)} UTC<br>{chip(e.label, e.colour, hollow=e.keep_reason != BAD)} "
        f"{fmt_weight(e.weight)} <span class=muted>{esc(e.kind)}</span><br><span class=why>{esc(e.reason.removeprefix(NOVEL_TEXT + ': '))}</span>"
        f"{human}</div></div>"
    )


def reference_entry_html(f: ReferenceFlag) -> str:
    """An image its reference score flagged: score against the limit, the reference version, compare link."""
    return (
        f'<div class="entry reference" style="--c:#b54708">'
        f'<div class="pics"><a href="./compare?image={f.image_id}" target="_blank" title="compare with the reference">'
        f'<img src="{image_url(f.image_id, "small")}" alt="{esc(f.plot_type)}" loading="lazy"></a></div>'
        f'<div class="info"><b>{esc(f.plot_type)}</b><br>run {f.run} · chunk {f.chunk}<br>'
        f"{fmt_time(f.computed_at)} UTC<br><span class=why>reference score {fmt_score(f.score)} &gt; limit "
        f"{fmt_score(f.limit)}</span> <span class=muted>(v{f.version})</span><br>"
        f'<a href="./compare?image={f.image_id}" target="_blank">compare</a></div></div>'
    )


def reference_markdown(flags: list[ReferenceFlag], md) -> list[str]:  # type: ignore[no-untyped-def]
    """The daily brief's section of images unlike their reference."""
    if not flags:
        return []
    lines = [f"## Unlike their reference — {len(flags)} image(s)", "",
             "| time (UTC) | plot type | run | chunk | reference score | limit | reference version |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {fmt_time(f.computed_at)} | {md(f.plot_type)} | {f.run} | {f.chunk} | {fmt_score(f.score)} | "
              f"{fmt_score(f.limit)} | v{f.version} |" for f in flags]
    return [*lines, ""]


def counts(entries: list[LogEntry]) -> tuple[int, int]:
    """(confirmed Bad, unlike the training data) among entries; the rest are unconfirmed."""
    return sum(e.keep_reason == BAD for e in entries), sum(e.keep_reason == NOVEL for e in entries)


def brief_markdown(grouped: dict[str, list[LogEntry]], since: datetime, until: datetime,
                   reference: list[ReferenceFlag] | None = None) -> str:
    """The daily brief for the run-coordination meeting, as Markdown (user text escaped for Markdown/HTML)."""

    def md(text: object) -> str:
        return esc(text).replace("|", "\\|").replace("*", "\\*").replace("_", "\\_").replace("`", "\\`")

    entries = [e for items in grouped.values() for e in items]
    bad, novel = counts(entries)
    runs = sorted({e.run for e in entries})
    lines = [
        "# Hydra daily brief",
        "",
        f"Window: {fmt_time(since)} – {fmt_time(until)} UTC  ",
        (f"Confirmed Bad: **{bad}** · unconfirmed: **{len(entries) - bad - novel}** · unlike the training data: "
         f"**{novel}** · runs: {', '.join(map(str, runs)) if runs else '—'}"),
        "",
    ]
    if reference is not None:
        lines[-1:-1] = ["", f"Unlike their reference (reference score above its limit): **{len(reference)}**"]
    if not entries:
        lines += ["Nothing to report: no confirmed Bad and no unconfirmed classification in this window.", ""]
    for group, items in grouped.items():
        group_bad, group_novel = counts(items)
        lines += [f"## {md(group)} — {group_bad} Bad, {len(items) - group_bad - group_novel} unconfirmed, "
                  f"{group_novel} unlike the training data", "",
                  "| time (UTC) | plot type | run | chunk | model label | weight | status | human label |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [
            f"| {fmt_time(e.classified_at)} | {md(e.plot_type)} | {e.run} | {e.chunk} | {md(e.label or '—')} | "
            f"{fmt_weight(e.weight)} | {e.kind} | {md(e.human_label or '')} |"
            for e in items
        ]
        lines.append("")
    return "\n".join(lines + reference_markdown(reference or [], md))


def brief_html(grouped: dict[str, list[LogEntry]], since: datetime, until: datetime,
               thumbnail=None, reference: list[ReferenceFlag] | None = None) -> str:  # type: ignore[no-untyped-def]
    """The daily brief as one self-contained HTML file (thumbnails embedded when `thumbnail(id)` gives PNG bytes)."""
    entries = [e for items in grouped.values() for e in items]
    bad, novel = counts(entries)
    parts = [
        ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>Hydra daily brief</title><style>"
         "body{font-family:system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse;width:100%}"
         "td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:middle}"
         "th{background:#f3f5f8}.chip{color:#fff;padding:1px 8px;border-radius:9px;text-shadow:0 0 2px #0008}"
         "img{width:120px}</style></head><body>"),
        "<h1>Hydra daily brief</h1>",
        (f"<p>Window: {fmt_time(since)} – {fmt_time(until)} UTC<br>Confirmed Bad: <b>{bad}</b> · unconfirmed: "
         f"<b>{len(entries) - bad - novel}</b> · unlike the training data: <b>{novel}</b></p>"),
    ]
    if not entries:
        parts.append("<p>Nothing to report: no confirmed Bad and no unconfirmed classification in this window.</p>")
    for n, (group, items) in enumerate(grouped.items()):
        parts.append(f"<h2>{esc(group)}</h2><table><tr><th></th><th>time (UTC)</th><th>plot type</th><th>run</th>"
                     "<th>chunk</th><th>model label</th><th>weight</th><th>status</th><th>human label</th></tr>")
        for e in items:
            pic = ""
            if thumbnail is not None and n < 50:
                data = thumbnail(e.image_id)
                if data:
                    pic = f"<img src='data:image/png;base64,{base64.b64encode(data).decode()}' alt=''>"
            parts.append(
                f"<tr><td>{pic}</td><td>{fmt_time(e.classified_at)}</td><td>{esc(e.plot_type)}</td><td>{e.run}</td>"
                f"<td>{e.chunk}</td><td><span class='chip' style='background:{esc(e.colour)}'>{esc(e.label or '—')}"
                f"</span></td><td>{fmt_weight(e.weight)}</td><td>{e.kind}</td><td>{esc(e.human_label or '')}</td></tr>"
            )
        parts.append("</table>")
    if reference:
        rows = "".join(f"<tr><td>{fmt_time(f.computed_at)}</td><td>{esc(f.plot_type)}</td><td>{f.run}</td>"
                       f"<td>{f.chunk}</td><td>{fmt_score(f.score)}</td><td>{fmt_score(f.limit)}</td><td>v{f.version}"
                       "</td></tr>" for f in reference)
        parts.append(f"<h2>Unlike their reference ({len(reference)})</h2><table><tr><th>time (UTC)</th><th>plot type"
                     "</th><th>run</th><th>chunk</th><th>reference score</th><th>limit</th><th>reference</th></tr>"
                     f"{rows}</table>")
    parts.append("</body></html>")
    return "".join(parts)


class LogPage(pn.viewable.Viewer):
    """Confirmed Bad and unconfirmed classifications in a trailing window, grouped by plot group."""

    hours = param.Number(default=24.0, bounds=(0.25, 24 * 31), step=1, label="Window (hours)")
    kind = param.Selector(default="all", objects=["all", *LOG_KINDS.values(), REFERENCE_KIND], label="Show")
    gradcam = param.Boolean(default=True, label="GradCAM next to Bad images")

    def __init__(self, store: HydraStore, **params) -> None:
        self.store = store
        super().__init__(**params)
        restore(self, remembered("hydra_log"), [n for n in SETTINGS if n not in params])
        self.body = html_pane("", stylesheets=[LOG_CSS])
        self.suggestions_pane = html_pane("")
        self.grouped: dict[str, list[LogEntry]] = {}
        self.reference: list[ReferenceFlag] = []
        self._shown: tuple = ()
        self.since, self.until = window(self.hours)
        self.refresh()

    def load(self) -> dict[str, list[LogEntry]]:
        self.since, self.until = window(self.hours)
        entries = self.store.log_entries(self.since, self.until)
        if self.kind != "all":
            entries = [e for e in entries if e.kind == self.kind]
        self.grouped = group_log(entries, self.store.groups_of())
        shown = self.kind in ("all", REFERENCE_KIND)
        self.reference = self.store.flagged_by_reference(self.since, self.until) if shown else []
        return self.grouped

    @param.depends("hours", "kind", "gradcam", watch=True)
    def refresh(self) -> None:
        self.load()
        self._shown = self._signature()
        self.suggestions_pane.object = suggestions_html(self.store.suggestions(since=self.since))
        self.body.object = self.render()

    def poll(self) -> None:
        """While the page is open: show new or changed entries; redraw nothing when none changed (no flicker)."""
        self.load()
        if self._signature() != self._shown:
            self.refresh()

    def _signature(self) -> tuple:
        return (tuple((e.image_id, e.kind, e.human_label, e.gradcam) for items in self.grouped.values() for e in items),
                tuple((f.image_id, f.version) for f in self.reference))

    def render(self) -> str:
        entries = [e for items in self.grouped.values() for e in items]
        if not entries and self.reference:
            return self.reference_html()
        if not entries:
            return empty_state(
                f"Nothing flagged in the last {self.hours:g} hours",
                "No confirmed Bad and no unconfirmed classification in this window — or nothing was classified.",
                "Widen the window above, or check the Status page that the pipeline is running.",
            )
        bad, novel = counts(entries)
        out = [(f'<div class="summary"><span><b>{bad}</b> confirmed Bad</span><span><b>{len(entries) - bad - novel}'
                f"</b> unconfirmed</span><span><b>{novel}</b> unlike the training data</span><span class=muted>{fmt_time(self.since)} – {fmt_time(self.until)} UTC, "
                "newest first</span></div>")]
        shown = 0
        for group, items in self.grouped.items():
            if shown >= SHOW_MAX:
                break
            group_bad, group_novel = counts(items)
            visible = items[: SHOW_MAX - shown]
            shown += len(visible)
            out.append(f'<h3 class="group">{esc(group)} <small>{group_bad} Bad · '
                       f"{len(items) - group_bad - group_novel} unconfirmed · {group_novel} unlike the training data"
                       "</small></h3>")
            out.append('<div class="entries">' + "".join(entry_html(e, gradcam=self.gradcam) for e in visible)
                       + "</div>")
        if shown < len(entries):
            out.append(f"<p class=muted>Showing the newest {shown} of {len(entries)}; the daily brief lists all.</p>")
        return "".join(out) + self.reference_html()

    def reference_html(self) -> str:
        """Images their reference score flagged (issue 14), newest first, after the classifier's."""
        if not self.reference:
            return ""
        visible = self.reference[:SHOW_MAX]
        more = (f"<p class=muted>Showing the newest {len(visible)} of {len(self.reference)}; the daily brief lists "
                "all.</p>" if len(visible) < len(self.reference) else "")
        return (f'<h3 class="group">Unlike their reference <small>{len(self.reference)} image(s): reference score '
                "above the limit of their reference version</small></h3>"
                f'<div class="entries">{"".join(reference_entry_html(f) for f in visible)}</div>{more}')

    def markdown_brief(self) -> io.StringIO:
        self.load()
        return io.StringIO(brief_markdown(self.grouped, self.since, self.until, self.reference))

    def html_brief(self) -> io.StringIO:
        self.load()

        def thumbnail(image_id: int) -> bytes | None:
            found = self.store.locator.read("image", image_id, "small")
            return found[0] if found else None

        return io.StringIO(brief_html(self.grouped, self.since, self.until, thumbnail, self.reference))

    def __panel__(self) -> pn.viewable.Viewable:
        if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            pn.state.add_periodic_callback(self.poll, period=self.store.config.status_refresh_ms)
        stamp = utcnow().strftime("%Y%m%d")
        low, high = self.param.hours.bounds
        hours = Field("Window (hours)", f"{self.hours:g}",
                      lambda text: needed(parse_number(text, low=low, high=high, unit="hours"), "a number of hours"),
                      self._set_hours,
                      width=140, in_force=lambda: f"{self.hours:g} hours")
        controls = pn.Row(
            hours,
            pn.widgets.RadioButtonGroup.from_param(self.param.kind, margin=(26, 10, 10, 10)),
            tick(self, "gradcam", margin=(32, 10, 10, 10)),
            pn.widgets.FileDownload(callback=self.markdown_brief, filename=f"hydra-brief-{stamp}.md",
                                    label="Daily brief (Markdown)", color="primary", margin=(24, 10, 10, 10)),
            pn.widgets.FileDownload(callback=self.html_brief, filename=f"hydra-brief-{stamp}.html",
                                    label="Daily brief (HTML)", margin=(24, 10, 10, 10)),
            remember(self, "hydra_log", SETTINGS),
            sizing_mode="stretch_width",
        )
        return pn.Column(self.suggestions_pane, controls, self.body, sizing_mode="stretch_width")

    def _set_hours(self, value: float) -> None:
        self.hours = value
