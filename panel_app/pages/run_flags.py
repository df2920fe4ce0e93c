"""How run flags are shown: the strip at the top of the Run page (the live run's flag for every plot group and
system as it stands, computed or as a run coordinator signed it off, each linking to that cell on the Runs
page), and a Runs page cell's details (ranges, reasons in words, the images behind it, its sign-offs)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

import panel as pn

from hydra_assets.flags.standing import StandingFlag, StandingRange
from panel_app.images import image_url
from panel_app.pages.common import esc, fmt_time, html_pane
from panel_app.store import HydraStore
from panel_app.views_data import FLAG_STYLE, Signoff, Tile, needs_signoff

STRIP_CSS = """
.flags { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; font-size: 0.92em; }
.flags a.flag { display: inline-flex; gap: 5px; align-items: center; text-decoration: none; color: #fff;
  background: var(--c); border-radius: 12px; padding: 1px 9px 1px 3px; text-shadow: 0 0 2px #0008; }
.flags a.flag b { background: #ffffffe6; color: #1f2d3d; border-radius: 9px; padding: 0 5px; text-shadow: none;
  font-size: 0.85em; }
.flags a.flag.unsigned { outline: 2px dashed #1f2d3d55; outline-offset: 1px; }
.flags .system { font-weight: 600; }
"""


def cell_link(cell: StandingFlag) -> str:
    """The Runs page opened on this run with this cell's details."""
    return "./runs?" + urlencode({"run": cell.run_number, "scope": cell.scope, "group": cell.group_name})


def strip_html(run: int | None, cells: dict[tuple[str, str], StandingFlag]) -> str:
    if run is None:
        return ""
    if not cells:
        return (f'<div class="flags"><span class="muted">Run {run}: no flags computed yet '
                f'(<a href="./runs">Runs page</a>).</span></div>')
    items = []
    ordered = sorted(cells.values(), key=lambda c: (c.scope != "super_group", c.group_name.lower()))
    for cell in ordered:
        colour, letter = FLAG_STYLE.get(cell.standing, FLAG_STYLE["Null"])
        signed = not needs_signoff(cell)
        state = "signed off" if signed else "not signed off"
        items.append(
            f'<a class="flag{"" if signed else " unsigned"}" href="{esc(cell_link(cell))}" '
            f'style="--c:{colour}" title="{esc(cell.group_name)}: {esc(cell.standing)}, {state}" '
            f'data-group="{esc(cell.group_name)}" data-flag="{esc(cell.standing)}"><b>{letter}</b>'
            f'<span class="{"system" if cell.scope == "super_group" else ""}">{esc(cell.group_name)}</span></a>'
        )
    return f'<div class="flags"><span>Run <b>{run}</b> flags:</span>{"".join(items)}</div>'


class RunFlagsStrip(pn.viewable.Viewer):
    """Shown above the Run page's grid; `show(run)` is called on every refresh of the page (cheap: one
    index range of `ix_run_flags_run`, shared by all sessions for 2 s)."""

    def __init__(self, store: HydraStore) -> None:
        super().__init__()
        self.store = store
        self.run: int | None = None
        self.pane = html_pane("", stylesheets=[STRIP_CSS], visible=False)

    def show(self, run: int | None) -> None:
        self.run = run
        text = strip_html(run, self.store.run_flags(run) if run is not None else {})
        if text != self.pane.object:
            self.pane.object = text
        self.pane.visible = bool(text)

    def __panel__(self) -> pn.viewable.Viewable:
        return self.pane


# ---- a Runs page cell's details -------------------------------------------------------------------

DETAIL_CSS = """
.detail h3 { margin: 6px 0; }
.tiles { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 6px; margin-top: 6px; }
.tile { border: 1px solid #d0d7de; border-radius: 6px; padding: 3px; font-size: 0.78em; background: #fff; }
.tile.bad { border: 2px solid #D55E00; }
.tile img { width: 100%; display: block; border-radius: 3px; background: #f6f8fa; min-height: 40px; }
.flagchip { display: inline-block; min-width: 18px; text-align: center; color: #fff; font-weight: 700;
  border-radius: 9px; padding: 0 7px; text-shadow: 0 0 2px #000a; }
"""


def flag_chip(flag: str) -> str:
    colour, letter = FLAG_STYLE.get(flag, FLAG_STYLE["Null"])
    return f'<span class="flagchip" style="background:{colour}" title="{esc(flag)}">{letter}</span> {esc(flag)}'


def reasons_text(reasons: Sequence[Any]) -> str:
    """A flag's reasons in words: "CDC_occupancy Bad in chunks 3-5 (why) alarms 7, 9"; other shapes as text."""
    parts = []
    for reason in reasons:
        if not isinstance(reason, dict):
            parts.append(str(reason))
            continue
        who = reason.get("plot_type") or reason.get("group")
        if who:
            spans = ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in reason.get("chunks", []))
            text = f"{who} {reason.get('flag', '')} in chunks {spans}"
            text += f" ({reason['text']})" if reason.get("text") else ""
            text += f" alarms {', '.join(map(str, reason['alarms']))}" if reason.get("alarms") else ""
            text += f" and {reason['more_alarms']} more" if reason.get("more_alarms") else ""
            parts.append(text)
        else:
            parts.append(str(reason.get("rule") or reason.get("text") or ""))
    return "; ".join(p for p in parts if p)


def behind(flag: StandingFlag) -> tuple[list[str], int, int]:
    """(plot types named by the reasons, first chunk, last chunk) of the ranges that are not Good (of the whole
    flag when all are Good): where the images behind the flag are."""
    bad = [r for r in flag.ranges if r.standing != "Good" or r.computed != "Good"] or list(flag.ranges)
    names = sorted({str(x.get("plot_type")) for r in bad for x in r.reasons
                    if isinstance(x, dict) and x.get("plot_type") and x.get("flag") != "Good"})
    return names, min(r.first_chunk for r in bad), max(r.last_chunk for r in bad)


def chunks_text(first: int | None, last: int | None) -> str:
    return "whole run" if first is None else f"chunks {first}–{last}"


def signoff_row(s: Signoff) -> str:
    return (f"<tr><td>{fmt_time(s.signed_at)}</td><td>{esc(s.user)}</td><td>{esc(s.action)}</td>"
            f"<td>{chunks_text(s.first_chunk, s.last_chunk)}</td>"
            f"<td>{esc(s.previous_flag or '—')} → {esc(s.flag)}</td><td>{esc(s.comment)}</td></tr>")


def signed_text(r: StandingRange) -> str:
    if r.signed_at is None:
        return "not signed off"
    return f"{esc(r.action)} by {esc(r.signed_by)}, {fmt_time(r.signed_at)}"


def detail_html(cell: StandingFlag, history: list[Signoff], tiles: list[Tile], names: dict[int, str],
                browser_link: str) -> str:
    """What stands behind one cell: its ranges and reasons, the images, and every sign-off (newest first)."""
    kind = "system" if cell.scope == "super_group" else "plot group"
    ranges = "".join(
        f"<tr><td>{chunks_text(r.first_chunk, r.last_chunk)}</td><td>{flag_chip(r.computed)}</td>"
        f"<td>{flag_chip(r.standing)}</td><td>{esc(reasons_text(r.reasons)) or '—'}</td>"
        f"<td>{signed_text(r)}</td></tr>"
        for r in cell.ranges
    )
    tile_html = "".join(
        f'<div class="tile{" bad" if t.keep_reason == "bad" else ""}"><a href="{image_url(t.image_id, "full")}" '
        f'target="_blank"><img src="{image_url(t.image_id, "small")}" alt="" loading="lazy"></a>'
        f"<b>{esc(names.get(t.plot_type_id, '?'))}</b><br>chunk {t.chunk}"
        f"{' · ' + esc(t.keep_reason) if t.keep_reason else ''}</div>"
        for t in tiles
    )
    images = (f'<div class="tiles">{tile_html}</div>' if tiles else
              '<p class="muted">No image of this group in these chunks.</p>')
    audit = ("<table class='hy audit'><tr><th>when (UTC)</th><th>who</th><th>action</th><th>range</th>"
             f"<th>before → after</th><th>comment</th></tr>{''.join(signoff_row(s) for s in reversed(history))}</table>"
             if history else '<p class="muted">Nobody has signed this flag off yet.</p>')
    return (
        f'<div class="detail"><h3>Run {cell.run_number} · {esc(cell.group_name)} <span class="muted">({kind})'
        f"</span>: {flag_chip(cell.standing)}</h3>"
        "<table class='hy ranges'><tr><th>range</th><th>computed</th><th>stands</th><th>reasons</th>"
        f"<th>signed off</th></tr>{ranges}</table>"
        f'<p>Images behind this flag (Bad and unconfirmed first) — <a href="{esc(browser_link)}" target="_blank">'
        f"all of them in the Plot Browser</a></p>{images}<h4>Sign-off history</h4>{audit}</div>"
    )
