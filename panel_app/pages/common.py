"""What every page shares: escaping, time formats, chips, empty states and the base style."""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any

import panel as pn

from hydra_assets.db.models import utcnow

BASE_CSS = """
:host { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
a { color: #1f6feb; }
.muted { color: #5b6878; }
.empty { border: 1px dashed #c5ccd6; border-radius: 8px; padding: 18px 22px; background: #fafbfc; color: #3d4a5a; }
.empty h3 { margin: 0 0 6px; font-size: 1.05em; }
.empty p { margin: 4px 0; }
.empty code { background: #eef1f5; padding: 1px 5px; border-radius: 3px; }
table.hy { border-collapse: collapse; font-size: 0.9em; width: 100%; }
table.hy th, table.hy td { border-bottom: 1px solid #e3e7ec; padding: 5px 8px; text-align: left; vertical-align: top; }
table.hy th { background: #f3f5f8; font-weight: 600; }
.chip { display: inline-block; padding: 1px 8px; border-radius: 10px; color: #fff; font-size: 0.85em;
  font-weight: 600; text-shadow: 0 0 2px #0007; }
.chip.hollow { background: #fff !important; color: #333; border: 2px dashed #888; text-shadow: none; }
.star { color: #e3a008; font-size: 1.15em; }
"""

def esc(text: Any) -> str:
    """User-provided text made safe for an HTML or Markdown pane."""
    return html.escape("" if text is None else str(text), quote=True)


def fmt_time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "—"


def ago(value: datetime | None, now: datetime | None = None) -> str:
    """'12 s ago', '5 min ago', '3 h ago', '2 d ago' (times are naive UTC)."""
    if value is None:
        return "never"
    seconds = max(0.0, ((now or utcnow()) - value).total_seconds())
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} d ago"


def fmt_weight(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def chip(name: str | None, colour: str | None, *, hollow: bool = False) -> str:
    if not name:
        return '<span class="chip hollow">none</span>'
    cls = "chip hollow" if hollow else "chip"
    return f'<span class="{cls}" style="background:{esc(colour or "#888")}">{esc(name)}</span>'


def html_pane(text: str, **kwargs: Any) -> pn.pane.HTML:
    if "width" not in kwargs:
        kwargs.setdefault("sizing_mode", "stretch_width")
    return pn.pane.HTML(text, stylesheets=[BASE_CSS, *kwargs.pop("stylesheets", [])], **kwargs)


def empty_state(title: str, *hints: str) -> str:
    """A friendly box explaining why there is nothing to show and what to do (hints may hold HTML)."""
    body = "".join(f"<p>{hint}</p>" for hint in hints)
    return f'<div class="empty"><h3>{esc(title)}</h3>{body}</div>'


def message(text: str, kind: str = "info") -> pn.pane.Alert:
    return pn.pane.Alert(esc(text), alert_type=kind, sizing_mode="stretch_width", margin=(5, 10))
