"""What every page shares: escaping, time formats, chips, empty states and the base style."""

from __future__ import annotations

import html
import json
import urllib.parse
from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar

import panel as pn
import param
from panel.custom import JSComponent

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


# ---- inputs that take their value or say why not, and settings remembered per browser -----------------

FIELD_CSS = """
.refused { color: #b42318; font-size: 0.8em; line-height: 1.25; }
.understood { color: #5b6878; font-size: 0.8em; line-height: 1.25; }
"""


class Field(pn.viewable.Viewer):
    """A text input whose text is parsed by `parse` (text -> value, raising ValueError with a reason).

    A parsed value goes to `apply`; a refused one applies nothing and the reason shows right under the
    field, with what is still in force.  `explain(value)` may say how the text was read (e.g. "-24h").
    Emptying the field applies at once (no Enter needed), since an empty field means "no filter".
    """

    def __init__(self, label: str, text: str, parse: Callable[[str], Any], apply: Callable[[Any], None], *,
                 width: int = 150, placeholder: str = "", explain: Callable[[Any], str] | None = None,
                 in_force: Callable[[], str] | None = None) -> None:
        super().__init__()
        self.parse, self.apply, self.explain, self.in_force = parse, apply, explain, in_force
        self.input = pn.widgets.TextInput(label=label, value=text, width=width, placeholder=placeholder,
                                          margin=(5, 10, 0, 10))
        self.note = pn.pane.HTML("", width=width, margin=(0, 10, 4, 10), stylesheets=[FIELD_CSS],
                                 css_classes=["field-note"])
        self.input.param.watch(self._typed, "value")
        self.input.param.watch(self._emptied, "value_input")
        if text and explain is not None:
            try:
                self.note.object = f'<span class="understood">{esc(explain(parse(text)))}</span>'
            except ValueError:
                pass

    def _emptied(self, event: Any) -> None:
        if not (event.new or "").strip() and (event.old or "").strip():
            self.input.value = ""

    def _typed(self, event: Any) -> None:
        try:
            value = self.parse(event.new or "")
        except ValueError as refused:
            kept = f" — still {self.in_force()}" if self.in_force else ""
            self.note.object = f'<span class="refused">{esc(refused)}{esc(kept)}</span>'
            return
        said = self.explain(value) if self.explain is not None and value is not None else ""
        self.note.object = f'<span class="understood">{esc(said)}</span>' if said else ""
        self.apply(value)

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(self.input, self.note, margin=0)


class Remembered(JSComponent):
    """Writes a page's settings to a cookie in this browser whenever they change; the page reads the cookie
    when it is built (`remembered`), so a reload opens with the same filters and view."""

    key = param.String(default="hydra_settings")
    values = param.Dict(default={})

    _esm = """
export function render({ model }) {
  const save = () => {
    document.cookie = model.key + '=' + encodeURIComponent(JSON.stringify(model.values)) +
      '; path=/; max-age=31536000; SameSite=Lax';
  };
  model.on('values', save);
  const el = document.createElement('span');
  el.style.display = 'none';
  return el;
}
"""


def needed(value: Any, what: str) -> Any:
    """`value`, or a refusal saying what to type when the field was emptied and a value is needed."""
    if value is None:
        raise ValueError(f"empty: type {what}")
    return value


def remembered(key: str) -> dict[str, Any]:
    """The settings this browser saved under `key` ({} outside a browser session or when unreadable)."""
    try:
        raw = (pn.state.cookies or {}).get(key)
    except Exception:  # no session (tests, scripts)
        return {}
    if not raw:
        return {}
    try:
        values = json.loads(urllib.parse.unquote(raw))
    except ValueError:
        return {}
    return values if isinstance(values, dict) else {}


def restore(viewer: param.Parameterized, values: dict[str, Any], names: list[str]) -> None:
    """Set the remembered values of `names` that are still valid (a removed plot type is skipped), without
    triggering the page's watchers: the caller draws once afterwards."""
    with param.parameterized.discard_events(viewer):
        for name in names:
            if name in values:
                try:
                    setattr(viewer, name, values[name])
                except (ValueError, TypeError):
                    pass


def remember(viewer: param.Parameterized, key: str, names: list[str], extra: Callable[[], dict] | None = None,
             ) -> Remembered:
    """A `Remembered` kept up to date with `names` of `viewer` (and `extra()`); put it in the page's layout."""

    def snapshot() -> dict[str, Any]:
        return {**{n: getattr(viewer, n) for n in names}, **(extra() if extra else {})}

    memory = Remembered(key=key, values=snapshot(), height=0, width=0, margin=0)

    def update(*_events: Any) -> None:
        memory.values = snapshot()

    viewer.param.watch(update, names)
    memory.save_now = update  # type: ignore[attr-defined]  # for settings kept outside params (field texts)
    return memory


class Tick(JSComponent):
    """A checkbox inside a real <label>: clicking its text toggles it too (Bokeh's Checkbox puts the text in a
    plain <div> beside the box, so only the 14-px box itself reacted)."""

    value = param.Boolean(default=False)
    label = param.String(default="")

    _stylesheets: ClassVar[list[str]] = [
        "label { display: inline-flex; gap: 6px; align-items: center; cursor: pointer; user-select: none; "
        "font: inherit; white-space: nowrap; } input { margin: 0; cursor: pointer; }"
    ]

    _esm = """
export function render({ model }) {
  const label = document.createElement('label');
  const box = document.createElement('input');
  box.type = 'checkbox';
  box.checked = model.value;
  const text = document.createElement('span');
  text.textContent = model.label;
  label.append(box, text);
  box.addEventListener('change', () => { model.value = box.checked; });
  model.on('value', () => { box.checked = model.value; });
  model.on('label', () => { text.textContent = model.label; });
  return label;
}
"""


def tick(viewer: param.Parameterized, name: str, **kwargs: Any) -> Tick:
    """A `Tick` bound both ways to the Boolean parameter `name` of `viewer`, labelled with its label."""
    widget = Tick(value=getattr(viewer, name), label=viewer.param[name].label, **kwargs)
    widget.param.watch(lambda event: setattr(viewer, name, event.new), "value")
    viewer.param.watch(lambda event: setattr(widget, "value", event.new), name)
    return widget
