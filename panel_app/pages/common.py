"""What every page shares: escaping, time formats, chips, empty states and the base style."""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any

import panel as pn

from hydra_assets.db.models import utcnow
from hydra_assets.scores.suggestions import Suggestion
from panel_app.views_data import labeler_link

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
.suggest { border: 1px solid #d4a72c; background: #fff8c5; border-radius: 8px; padding: 8px 14px; color: #3b2300; }
.suggest b.head { display: block; margin-bottom: 2px; }
.suggest ul { margin: 2px 0 0; padding-left: 20px; }
.warn { border: 2px solid #b42318; background: #fef3f2; border-radius: 8px; padding: 8px 14px; color: #7a271a; }
.warn ul { margin: 2px 0 0; padding-left: 20px; }
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


def suggestions_html(suggestions: list[Suggestion], *, limit: int = 8) -> str:
    """The retraining-suggestions banner (Library, Status, Log): each with a link to the Labeler queue of
    exactly those images; "" when there is none."""
    if not suggestions:
        return ""
    items = "".join(
        f'<li>{esc(s.message)} — <a href="{esc(labeler_link(s.plot_type, s.run, s.kind))}">label them in the '
        f"Labeler</a></li>" for s in suggestions[:limit]
    )
    more = f"<li>… and {len(suggestions) - limit} more</li>" if len(suggestions) > limit else ""
    return (f'<div class="suggest"><b class="head">Retraining suggested ({len(suggestions)})</b>'
            f"<ul>{items}{more}</ul></div>")


def request_args() -> dict[str, str]:
    """The page URL's query parameters (first value of each); {} outside a browser session."""
    try:
        raw = pn.state.session_args or {}
    except Exception:  # no session (tests, scripts)
        return {}
    return {str(k): (v[0].decode(errors="replace") if isinstance(v[0], bytes) else str(v[0]))
            for k, v in raw.items() if v}


def message(text: str, kind: str = "info") -> pn.pane.Alert:
    return pn.pane.Alert(esc(text), alert_type=kind, sizing_mode="stretch_width", margin=(5, 10))
