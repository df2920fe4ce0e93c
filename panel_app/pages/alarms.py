"""Alarm history page: every alarm, newest first, with who acknowledged it and when; filtered by kind, plot
type, acknowledged or not and a time window (typed as on the Plot Browser: "-24h", "yesterday", a date)."""

from __future__ import annotations

import panel as pn
import param

from hydra_assets.db.models import utcnow
from panel_app.images import image_url
from panel_app.pages.common import Field, empty_state, esc, fmt_time, html_pane, remember, remembered, restore
from panel_app.store import HydraStore
from panel_app.views_data import AlarmFilter, AlarmRow
from panel_app.when import FORMS, parse_when

ANY = ""
KINDS = {"any kind": ANY, "confirmed Bad": "bad", "unlike the training data": "novel", "unlike the reference": "reference"}
ACKNOWLEDGED = {"acknowledged or not": ANY, "not acknowledged": "no", "acknowledged": "yes"}
SETTINGS = ["kind", "plot_type", "acknowledged", "page_size", "since_text", "until_text"]  # remembered per browser
KIND_WORDS = {value: name for name, value in KINDS.items() if value}

ALARMS_CSS = """
table.hy td.open { color: #b42318; font-weight: 600; }
table.hy img { width: 72px; border-radius: 3px; background: #f6f8fa; }
table.hy td.msg { max-width: 520px; }
"""


def alarm_row_html(a: AlarmRow) -> str:
    """One alarm as a table row; every text from the database escaped."""
    ack = (f"{esc(a.acknowledged_by)}<br><span class=muted>{fmt_time(a.acknowledged_at)}</span>"
           if a.acknowledged_at else "")
    where = f"run {a.run} · chunk {a.chunk}" if a.run is not None else "—"
    return (
        f'<tr data-alarm="{a.id}"><td><a href="{image_url(a.image_id, "full")}" target="_blank">'
        f'<img src="{image_url(a.image_id, "small")}" alt="" loading="lazy"></a></td>'
        f"<td>{fmt_time(a.raised_at)}</td><td>{esc(KIND_WORDS.get(a.kind, a.kind))}</td><td>{esc(a.plot_type)}</td>"
        f"<td>{where}</td><td class=msg>{esc(a.message or a.label or '')}</td>"
        f'<td class="{"" if a.acknowledged_at else "open"}">{ack or "not acknowledged"}</td></tr>'
    )


class AlarmsPage(pn.viewable.Viewer):
    """Every alarm the pipeline raised, newest first, paged."""

    kind = param.Selector(default=ANY, objects=KINDS, label="Kind")
    plot_type = param.Selector(default=ANY, objects=[ANY], label="Plot type")
    acknowledged = param.Selector(default=ANY, objects=ACKNOWLEDGED, label="Acknowledged")
    since = param.Date(default=None, allow_None=True, label="Raised from (UTC)")
    until = param.Date(default=None, allow_None=True, label="Raised until (UTC)")
    page_size = param.Selector(default=50, objects=[25, 50, 100], label="Per page")
    page = param.Integer(default=0, bounds=(0, None))
    since_text = param.String(default="", doc="The 'Raised from' field as typed")
    until_text = param.String(default="", doc="The 'Raised until' field as typed")

    def __init__(self, store: HydraStore, **params) -> None:
        self.store = store
        super().__init__(**params)
        self.param.plot_type.objects = {"any plot type": ANY, **{pt.name: pt.id
                                                                 for pt in store.catalogue().values()}}
        restore(self, remembered("hydra_alarms"), [n for n in SETTINGS if n not in params])
        with param.parameterized.discard_events(self):
            for name in ("since", "until"):
                try:
                    setattr(self, name, parse_when(getattr(self, f"{name}_text"), utcnow()))
                except ValueError:
                    setattr(self, f"{name}_text", "")
        self.rows: list[AlarmRow] = []
        self.has_more = False
        self.table = html_pane("", stylesheets=[ALARMS_CSS])
        self.pager = html_pane("")
        self.search()

    def current_filter(self) -> AlarmFilter:
        acknowledged = {"yes": True, "no": False}.get(self.acknowledged)
        return AlarmFilter(kind=self.kind or None, plot_type_id=self.plot_type if self.plot_type != ANY else None,
                           acknowledged=acknowledged, since=self.since, until=self.until)

    @param.depends("kind", "plot_type", "acknowledged", "since", "until", "page_size", watch=True)
    def _on_filter(self) -> None:
        if self.page:
            self.page = 0  # the page watcher searches
        else:
            self.search()

    @param.depends("page", watch=True)
    def search(self) -> None:
        self.rows, self.has_more = self.store.alarm_history(self.current_filter(), limit=self.page_size,
                                                            offset=self.page * self.page_size)
        self.table.object = self.render()
        first = self.page * self.page_size + 1
        self.pager.object = (f"<span class=muted>alarms {first:,}–{first + len(self.rows) - 1:,}"
                             f"{' (more on the next page)' if self.has_more else ' (last page)'}</span>"
                             if self.rows else "")

    def render(self) -> str:
        if not self.rows:
            return empty_state("No alarm matches these filters",
                               "Alarms are raised for confirmed Bad images (and, where a plot type asks for it, for "
                               "images unlike the training data or the reference). Widen the time window or "
                               "the filters.")
        head = ("<tr><th></th><th>raised (UTC)</th><th>kind</th><th>plot type</th><th>run · chunk</th>"
                "<th>message</th><th>acknowledged by</th></tr>")
        return f'<table class="hy alarms">{head}{"".join(alarm_row_html(a) for a in self.rows)}</table>'

    def next_page(self, _event=None) -> None:
        if self.has_more:
            self.page += 1

    def previous_page(self, _event=None) -> None:
        if self.page:
            self.page -= 1

    def _time_field(self, name: str, label: str) -> Field:
        def apply(value: object) -> None:
            setattr(self, f"{name}_text", field.input.value.strip())  # remembered as typed
            setattr(self, name, value)

        def in_force() -> str:
            value = getattr(self, name)
            return "no bound" if value is None else f"{fmt_time(value)} UTC"

        field = Field(label, getattr(self, f"{name}_text"), lambda text: parse_when(text, utcnow()), apply,
                      width=190, placeholder="-24h, yesterday, 2026-11-28",
                      explain=lambda value: f"= {fmt_time(value)} UTC", in_force=in_force)
        field.input.description = f"Type {FORMS}. Empty: no bound."
        return field

    def __panel__(self) -> pn.viewable.Viewable:
        prev_button = pn.widgets.Button(label="◀ Previous", margin=(5, 6))
        next_button = pn.widgets.Button(label="Next ▶", margin=(5, 6))
        prev_button.on_click(self.previous_page)
        next_button.on_click(self.next_page)
        filters = pn.Row(
            pn.widgets.Select.from_param(self.param.kind, width=200),
            pn.widgets.Select.from_param(self.param.plot_type, width=220),
            pn.widgets.Select.from_param(self.param.acknowledged, width=180),
            self._time_field("since", "Raised from (UTC)"),
            self._time_field("until", "Raised until (UTC)"),
            pn.widgets.Select.from_param(self.param.page_size, width=90),
            remember(self, "hydra_alarms", SETTINGS),
        )
        return pn.Column(filters, pn.Row(prev_button, next_button, self.pager), self.table,
                         sizing_mode="stretch_width")
