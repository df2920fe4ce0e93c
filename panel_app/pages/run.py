"""Run page: the shift crew's "security camera" — the latest image of every plot type, Bad first, with alarms."""

from __future__ import annotations

from datetime import datetime, timedelta

import panel as pn
import param

from hydra_assets.db.models import utcnow
from hydra_assets.rules import BAD, NOVEL_TEXT, REFERENCE, REFERENCE_TEXT, UNCONFIRMED
from panel_app.components import AlarmSound
from panel_app.images import gradcam_url, image_url
from panel_app.pages.common import (
    ago,
    empty_state,
    esc,
    fmt_time,
    fmt_weight,
    html_pane,
    remember,
    remembered,
    restore,
    tick,
)
from panel_app.pages.run_flags import RunFlagsStrip
from panel_app.store import HydraStore
from panel_app.views_data import GOOD, PENDING, AlarmInfo, Card, fmt_score

ALL = "All plot types"
OPEN_ALARMS_WINDOW = timedelta(hours=24)  # unacknowledged alarms this recent are shown on a page opened later
SETTINGS = ["group", "only_flagged", "gradcam", "opacity", "card_width", "muted"]  # remembered per browser


def mute_label(muted: bool) -> str:
    """The Mute button says the state it is in and what a click does."""
    return "Muted (click to unmute)" if muted else "Sound on (click to mute)"

def alarm_heading(alarms: list[AlarmInfo]) -> str:
    """"confirmed Bad (2), unlike the training data (1), unlike its reference (1)": the banner's alarms by kind."""
    novel = sum(1 for a in alarms if a.kind == "novel")
    reference = sum(1 for a in alarms if a.kind == REFERENCE)
    bad = len(alarms) - novel - reference
    parts = [f"confirmed Bad ({bad})" if bad else "", f"{NOVEL_TEXT} ({novel})" if novel else "",
             f"{REFERENCE_TEXT} ({reference})" if reference else ""]
    return ", ".join(p for p in parts if p)


GRID_CSS = """
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(var(--card, 260px), 1fr)); gap: 10px; }
.card { border: 3px solid var(--c); border-radius: 8px; background: #fff; overflow: hidden; }
.card.unconfirmed { border-style: dashed; }
.card.pending { border-color: #c5ccd6; }
.card.bad { box-shadow: 0 0 0 2px #d55e0044, 0 0 12px #d55e0077; }
.card header { background: var(--c); color: #fff; padding: 4px 8px; text-shadow: 0 0 2px #0009; }
.card.unconfirmed header { background: repeating-linear-gradient(135deg, var(--c), var(--c) 10px, #00000030 10px,
  #00000030 20px); }
.card.pending header { background: #8c96a3; }
.card .title { display: flex; justify-content: space-between; gap: 6px; font-weight: 600; }
.card .title .pt { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.card .meta { font-size: 0.78em; opacity: 0.95; display: flex; justify-content: space-between; gap: 6px; }
.card .imgwrap { position: relative; background: #f6f8fa; min-height: 80px; }
.card .imgwrap img { width: 100%; display: block; }
.card .imgwrap img.cam { position: absolute; inset: 0; height: 100%; object-fit: fill; }
.badge { background: #ffffffe0; color: #333; border-radius: 8px; padding: 0 6px; font-size: 0.78em;
  text-shadow: none; font-weight: 600; }
.badge.novel { background: #6f42c1; color: #fff; }
.card.novel { border-color: #6f42c1; }
.card .foot { font-size: 0.78em; padding: 2px 8px; display: flex; justify-content: space-between; gap: 6px;
  color: #2d3a4a; white-space: nowrap; }
.card .foot .compare { font-weight: 600; }
.badge.ref { background: #b54708; color: #fff; }
.card .why { font-size: 0.78em; padding: 2px 8px; background: #f6f8fa; color: #2d3a4a; border-bottom: 1px solid #e3e7ec;
  white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
"""

STATUS_CSS = """
.status { display: flex; flex-wrap: wrap; gap: 6px 22px; font-size: 0.95em; color: #2d3a4a; align-items: baseline; }
.status b { font-size: 1.05em; }
.news { background: #fff8c5; border: 1px solid #e9d675; border-radius: 6px; padding: 5px 10px; margin-top: 6px;
  font-size: 0.95em; }
"""

ALARM_CSS = """
@keyframes flash { 0%, 100% { background: #b42318; } 50% { background: #f04438; } }
.alarm { color: #fff; border-radius: 8px; padding: 10px 14px; animation: flash 1s step-end infinite;
  font-weight: 600; }
.alarm ul { margin: 4px 0 0; padding-left: 20px; font-weight: 400; }
"""


def reference_html(card: Card) -> str:
    """The card's foot: its reference score against the limit, badged when stored as unlike its reference
    (`reference_scores.flagged`, never re-derived here), and the link to the compare view."""
    link = (f'<a class="compare" href="./compare?image={card.image_id}" target="_blank" '
            'title="the image beside its reference and their difference, with GradCAM">compare</a>')
    score, limit = fmt_score(card.reference_score), fmt_score(card.reference_limit)
    if card.reference_score is None:
        text = '<span class="muted">no reference score</span>'
    elif card.reference_flagged or card.keep_reason == REFERENCE:  # as stored with the score / by the Keeper
        text = f'<span><span class="badge ref">{REFERENCE_TEXT}</span> score {score} &gt; limit {limit}</span>'
    else:
        text = f"<span>reference score {score} / limit {limit}</span>"
    return f'<div class="foot">{text}{link}</div>'


def card_html(card: Card, *, gradcam: bool, opacity: float, now: datetime) -> str:
    """One card of the grid; every piece of text from the database is escaped."""
    state = card.state
    label = card.label if state != PENDING else (card.status or "waiting for classification")
    badge = {BAD: "BAD", UNCONFIRMED: UNCONFIRMED, PENDING: "", GOOD: ""}[state]
    badge_html = f" <span class=badge>{badge}</span>" if badge else ""
    reason = card.reason
    why = f'<div class="why" title="{esc(reason)}">{esc(reason)}</div>' if reason else ""
    if card.novel and state == UNCONFIRMED:  # the header stays short; the line below says it in full
        badge_html = f' <span class="badge novel" title="{NOVEL_TEXT}">novel</span>'
        why = (f'<div class="why" title="{esc(reason)}"><span class="badge novel">{NOVEL_TEXT}</span> '
               f"novelty {fmt_score(card.novelty)} &gt; limit {fmt_score(card.novelty_limit)}</div>")
    cam = ""
    if gradcam and card.gradcam:
        cam = f'<img class="cam" src="{gradcam_url(card.image_id)}" style="opacity:{opacity:.2f}" alt="GradCAM">'
    return (
        f'<div class="card {state}{" novel" if card.novel else ""}" style="--c:{esc(card.colour)}" '
        f'data-plot-type="{esc(card.plot_type)}">'
        f'<header><div class="title"><span class="pt">{esc(card.plot_type)}</span>'
        f'<span>{esc(label)} {fmt_weight(card.weight) if card.weight is not None else ""}'
        f'{badge_html}</span></div>'
        f'<div class="meta"><span>run {card.run} · chunk {card.chunk}</span>'
        f'<span title="{fmt_time(card.updated_at)} UTC">{fmt_time(card.updated_at)[5:]}</span></div></header>{why}'
        f'<a class="imgwrap" href="{image_url(card.image_id, "full")}" target="_blank" style="display:block">'
        f'<img src="{image_url(card.image_id)}" alt="{esc(card.plot_type)} run {card.run} chunk {card.chunk}">'
        f"{cam}</a>{reference_html(card)}</div>"
    )


class RunPage(pn.viewable.Viewer):
    """Latest image per plot type, refreshed every second or two; alarms on new confirmed Bad."""

    group = param.Selector(default=ALL, objects=[ALL], doc="Plot group or detector system to show")
    only_flagged = param.Boolean(default=False, label="Bad & unconfirmed only")
    gradcam = param.Boolean(default=False, label="GradCAM overlay")
    opacity = param.Number(default=0.8, bounds=(0.0, 1.0), step=0.05, label="GradCAM opacity")  # see save_overlay
    card_width = param.Integer(default=260, bounds=(160, 640), step=20, label="Card size")
    muted = param.Boolean(default=False, label="Mute alarm sound")

    def __init__(self, store: HydraStore, **params) -> None:
        self.store = store
        super().__init__(**params)
        self._group_values = {ALL: ("", "")}
        for sg in store.super_group_names():
            self._group_values[f"{sg} (system)"] = ("", sg)
        for g in store.group_names():
            self._group_values[g] = (g, "")
        self.param.group.objects = list(self._group_values)
        restore(self, remembered("hydra_run"), [n for n in SETTINGS if n not in params])
        self.cards: list[Card] = []
        self.total = 0
        self.refreshed_at: datetime | None = None
        self._signature: object = None
        self._last_alarm = store.last_alarm_id()  # only alarms raised after the page opened sound ...
        # ... but those raised before and not acknowledged are shown (issue 18: a page opened later showed none)
        self.alarms: list[AlarmInfo] = list(reversed(store.open_alarms(utcnow() - OPEN_ALARMS_WINDOW)))
        self.sound = AlarmSound(muted=self.muted, height=0, width=0, margin=0)
        self.grid_pane = html_pane("", stylesheets=[GRID_CSS])
        self.status_pane = html_pane("", stylesheets=[STATUS_CSS])
        self.flags_strip = RunFlagsStrip(store)  # the live run's flag per group, above the grid
        self.alarm_pane = html_pane("", stylesheets=[ALARM_CSS], visible=False)
        self.acknowledge = pn.widgets.Button(label="Acknowledge alarm", color="danger", visible=False,
                                             description="Marks these alarms as seen, with your name, on every "
                                                         "Run page")
        self.acknowledge.on_click(self._acknowledge)
        self.mute_button = pn.widgets.Toggle(label=mute_label(self.muted), value=self.muted, width=210,
                                             margin=(24, 10, 10, 10))
        self.mute_button.param.watch(lambda event: setattr(self, "muted", event.new), "value")
        self.refresh()

    # ---- logic (unit-tested without a browser) ----------------------------------------------------

    def selected_plot_types(self) -> list[int] | None:
        group, super_group = self._group_values.get(self.group, ("", ""))
        return self.store.plot_types_in(group=group or None, super_group=super_group or None)

    def refresh(self) -> None:
        """Poll the database: grid, new alarms, status line (re-rendering the grid only when it changed)."""
        new_alarms = self.store.alarms_after(self._last_alarm)
        everything = self.store.run_grid(fresh=bool(new_alarms))
        wanted = self.selected_plot_types()
        cards = everything if wanted is None else [c for c in everything if c.plot_type_id in set(wanted)]
        if self.only_flagged:
            cards = [c for c in cards if c.state in (BAD, UNCONFIRMED)]
        self.cards, self.total = cards, len(everything)
        self.flags_strip.show(max((c.run for c in everything), default=None))
        if self.alarms:  # acknowledged on another Run page meanwhile: off this one too
            seen = self.store.acknowledged_among([a.id for a in self.alarms])
            self.alarms = [a for a in self.alarms if a.id not in seen]
        if new_alarms:
            self._last_alarm = new_alarms[-1].id
            self.alarms = (list(reversed(new_alarms)) + self.alarms)[:10]
            self.sound.beeps += 1
        self.refreshed_at = utcnow()
        self._render()

    def _render(self) -> None:
        now = self.refreshed_at or utcnow()
        signature = (tuple((c.image_id, c.inference_id, c.updated_at, c.reference_score, c.reference_flagged)
                           for c in self.cards), self.gradcam,
                     round(self.opacity, 2), self.card_width)
        if signature != self._signature:
            self._signature = signature
            self.grid_pane.object = self.grid_html(now)
        self.status_pane.object = self.status_html(now)
        self.alarm_pane.object = self.alarm_html()
        self.alarm_pane.visible = self.acknowledge.visible = bool(self.alarms)

    def grid_html(self, now: datetime) -> str:
        if not self.total:
            return empty_state(
                "No images yet",
                "The grid shows the latest image of every plot type as soon as the pipeline classifies it.",
                "Start the demo with <code>hydra up</code>, or drop files named "
                "<code>&lt;plot_type&gt;-&lt;run&gt;-&lt;chunk&gt;.png</code> into the incoming folder.",
            )
        if not self.cards:
            return empty_state("Nothing to show with these filters",
                               "No plot type of this group has an image yet, or none is Bad or unconfirmed.")
        cards = "".join(card_html(c, gradcam=self.gradcam, opacity=self.opacity, now=now) for c in self.cards)
        return f'<div class="grid" style="--card:{int(self.card_width)}px">{cards}</div>'

    def status_html(self, now: datetime) -> str:
        newest = max((c.updated_at for c in self.cards), default=None)
        runs = [c.run for c in self.cards]
        bad = sum(c.state == BAD for c in self.cards)
        unconfirmed = sum(c.state == UNCONFIRMED for c in self.cards)
        novel = sum(c.state == UNCONFIRMED and c.novel for c in self.cards)
        news = self.store.news(limit=1)
        news_html = (f'<div class="news"><b>News:</b> {esc(news[0][1])} <span class="muted">— {esc(news[0][2])}, '
                     f"{ago(news[0][0], now)}</span></div>" if news else "")
        return (
            '<div class="status">'
            f"<span>last update <b>{ago(newest, now)}</b></span>"
            f"<span>showing <b>{len(self.cards)} / {self.total}</b> images</span>"
            f"<span>last run <b>{max(runs) if runs else '—'}</b></span>"
            f'<span><b style="color:#b42318">{bad}</b> Bad · <b>{unconfirmed}</b> unconfirmed'
            f'{f" ({novel} {NOVEL_TEXT})" if novel else ""}</span>'
            f'<span class="muted">refreshed {fmt_time(now)[11:]} UTC</span>'
            f"</div>{news_html}"
        )

    def alarm_html(self) -> str:
        if not self.alarms:
            return ""

        def line(a) -> str:  # type: ignore[no-untyped-def]
            # Messages of ingest/keeper.alarm_message start with plot type, run and chunk and name the label:
            # shown as they are, each fact once (issue 18); older, shorter ones get the heading.
            where = f"{a.plot_type} run {a.run} chunk {a.chunk}: "
            what = NOVEL_TEXT if a.kind == "novel" else REFERENCE_TEXT if a.kind == REFERENCE else (a.label or "Bad")
            text = a.message if (a.message or "").startswith(where) else (
                f"{where}{what}{' — ' + a.message if a.message else ''}")
            return f"<li>{esc(text)} ({fmt_time(a.raised_at)[11:]} UTC)</li>"

        items = "".join(line(a) for a in self.alarms)
        return f'<div class="alarm">⚠ ALARM: {alarm_heading(self.alarms)}<ul>{items}</ul></div>'

    def _acknowledge(self, _event=None) -> None:
        """The shift crew has seen these alarms: recorded with the user's name, gone from every Run page."""
        if self.store.user:  # without sign-in (pages run without auth) the banner goes from this page only
            self.store.acknowledge_alarms([a.id for a in self.alarms])
        self.alarms = []
        self._render()

    @param.depends("group", "only_flagged", "gradcam", "opacity", "card_width", watch=True)
    def _on_view_change(self) -> None:
        self.refresh()

    @param.depends("muted", watch=True)
    def _on_mute(self) -> None:
        self.sound.muted = self.mute_button.value = self.muted
        self.mute_button.label = mute_label(self.muted)

    # ---- view ---------------------------------------------------------------------------------------

    def __panel__(self) -> pn.viewable.Viewable:
        if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            pn.state.add_periodic_callback(self.refresh, period=self.store.config.run_refresh_ms)
        controls = pn.Row(
            pn.widgets.Select.from_param(self.param.group, width=220),
            tick(self, "only_flagged", margin=(30, 10, 10, 10)),
            tick(self, "gradcam", margin=(30, 10, 10, 10)),
            pn.widgets.FloatSlider.from_param(self.param.opacity, width=160),
            pn.widgets.IntSlider.from_param(self.param.card_width, width=160),
            self.mute_button,
            self.sound,
            remember(self, "hydra_run", SETTINGS),
            sizing_mode="stretch_width",
        )
        return pn.Column(self.flags_strip, controls, self.status_pane, pn.Row(self.alarm_pane, self.acknowledge, sizing_mode="stretch_width"),
                         self.grid_pane, sizing_mode="stretch_width")
