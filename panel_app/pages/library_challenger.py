"""The Library's Challenger tab (issue 15): the plot type's challenger version, which classifies every live chunk
in shadow beside the active one, and the running comparison of the two, run by run.

From a version row an expert makes that version the challenger, clears it, or promotes it (it becomes the
active version; the MLflow alias `challenger` gives way to `active`).  Every write goes through the store,
which checks `activate_models` server-side and audits; the buttons are shown to everyone, so a user without
the permission gets the refusal in words next to them, and nothing is written.  The comparison counts
alarms and confirmed Bad of each version, their agreement, and — on images a human labeled — Bad recall and
false alarms, with each version's time per image (docs/challenger.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import panel as pn

from panel_app.pages.common import empty_state, esc, fmt_time, html_pane
from panel_app.store import CatalogError, HydraStore, PermissionDenied
from panel_app.views_data import ModelInfo

SINCE = {"last 24 hours": 24, "last 7 days": 24 * 7, "last 30 days": 24 * 30, "since it was named": None}
COLUMNS = (("images", "images"), ("errors", "challenger errors"), ("alarms_active", "alarms active"),
           ("alarms_challenger", "alarms challenger"), ("bad_active", "Bad active"),
           ("bad_challenger", "Bad challenger"), ("agreement", "agreement"), ("labeled_bad", "labeled Bad"),
           ("bad_recall_active", "Bad recall active"), ("bad_recall_challenger", "Bad recall challenger"),
           ("false_alarms_active", "false alarms active"), ("false_alarms_challenger", "false alarms challenger"),
           ("ms_active", "ms / image active"), ("ms_challenger", "ms / image challenger"))


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    return f"{value:.3f}" if isinstance(value, float) else esc(value)


def comparison_html(report: Any) -> str:
    """The per-run table of a `ChallengerComparison` (its totals last)."""
    if report.challenger is None:
        return empty_state("No challenger for this plot type",
                           "Choose a version that is not the active one above and press <b>Make it the "
                           "challenger</b>: it then classifies every new chunk in shadow — never alarming, never "
                           "changing what is kept or shown on the Run page — and its results are compared here.")
    if report.totals is None:
        return empty_state("No images classified by the challenger yet in this period",
                           "Its results appear after the next chunk of a run with images of this plot type.")
    head = "".join(f"<th>{esc(title)}</th>" for _, title in COLUMNS)
    rows = [(str(r.run), r) for r in report.runs] + [("all runs", report.totals)]
    body = "".join(f"<tr><td>{esc(name)}</td>" + "".join(f"<td>{_cell(getattr(r, key))}</td>" for key, _ in COLUMNS)
                   + "</tr>" for name, r in rows)
    return f"<table class='hy challenger-comparison'><tr><th>run</th>{head}</tr>{body}</table>"


class ChallengerSection(pn.viewable.Viewer):
    """The Challenger tab, for the version chosen in the Library (`show`)."""

    def __init__(self, store: HydraStore, on_change: Callable[[bool], None] | None = None) -> None:
        super().__init__()
        self.store = store
        # the Library reads its versions again after a change (marks move); False: choose the active one
        self.on_change = on_change
        self.model: ModelInfo | None = None
        self.report: Any = None
        self.current_pane = html_pane("", css_classes=["challenger-current"])
        self.table_pane = html_pane("")
        self.feedback = pn.pane.Alert("", visible=False, sizing_mode="stretch_width")
        self.since_select = pn.widgets.Select(label="Compare", options=list(SINCE), value="last 7 days", width=200)
        self.since_select.param.watch(lambda _e: self.refresh(), "value")
        self.set_button = pn.widgets.Button(label="Make it the challenger", margin=(24, 10, 10, 10))
        self.set_button.on_click(lambda _e: self.set_challenger())
        self.clear_button = pn.widgets.Button(label="Clear the challenger", margin=(24, 10, 10, 10))
        self.clear_button.on_click(lambda _e: self.clear())
        self.promote_button = pn.widgets.Button(label="Promote the challenger to active", color="warning",
                                                margin=(24, 10, 10, 10))
        self.promote_button.on_click(lambda _e: self.promote())
        self.action_note = html_pane("", width=460, margin=(30, 10, 10, 10), css_classes=["challenger-note"])
        self.permission_note = html_pane("")
        self._layout: pn.Column | None = None

    def _note(self, text: str) -> None:
        self.action_note.object = f"<span style='color:#b42318'>{esc(text)}</span>" if text else ""

    def _say(self, text: str, kind: str) -> None:
        self.feedback.object, self.feedback.alert_type, self.feedback.visible = esc(text), kind, True

    # ---- logic ------------------------------------------------------------------------------------

    def show(self, model: ModelInfo | None) -> None:
        """Load the plot type's challenger and comparison for the chosen version (the Library calls it)."""
        self.model = model
        self.feedback.visible = False
        self._note("")
        self.refresh()

    def refresh(self) -> None:
        model = self.model
        info = self.store.plot_type(model.plot_type_id) if model is not None else None
        if model is None or info is None:
            self.report = None
            self.current_pane.object = self.table_pane.object = ""
            for button in (self.set_button, self.clear_button, self.promote_button):
                button.visible = False
            return
        self.report = report = self.store.challenger_comparison(info.name, SINCE.get(self.since_select.value))
        since = report.since
        chosen = f"{model.name}/{model.version}"
        current = report.challenger if report.current else None
        if current:
            self.current_pane.object = (
                f"<p><b>Challenger: {esc(current)}</b> — classifies every new chunk in shadow beside the active "
                f"version <b>{esc(report.active or 'none')}</b>; its results never alarm, never change what is "
                "kept and never reach the Run page.</p>")
        else:
            self.current_pane.object = "<p class=muted>This plot type has no challenger.</p>"
        self.set_button.label = f"Make v{model.version} the challenger"
        self.set_button.visible = not model.active and chosen != current
        self.clear_button.visible = self.promote_button.visible = current is not None
        if current:
            self.promote_button.label = f"Promote {current} to active"
        may = self.store.can("activate_models", model.plot_type_id)
        self.permission_note.object = "" if may else (
            "<p class=muted>Naming, clearing or promoting a challenger needs the <code>activate_models</code> "
            "permission: the server refuses these buttons for you.</p>")
        period = "" if since is None else f" since {fmt_time(since)} UTC"
        labeler = ""
        if current and report.totals and report.totals.agreement not in (None, 1.0):
            href = "./labeler?" + urlencode({"plot_type": info.name, "queue": "disagreement"})
            labeler = (f"<p><a class='challenger-labeler' href='{esc(href)}'>Label the images where they disagree "
                       "in the Labeler →</a></p>")
        self.table_pane.object = (f"<h4>Running comparison{esc(period)}</h4>" if report.totals else "") + \
            comparison_html(report) + labeler

    def _write(self, action: Callable[[], str], done: str) -> bool:
        """Run one store write; a refusal or bad input is said next to the buttons and nothing changes."""
        try:
            message = action()
        except PermissionDenied as refusal:
            self._note(f"Refused: {refusal}. Nothing was changed.")
            return False
        except CatalogError as error:
            self._note(f"{error}. Nothing was changed." if not str(error).endswith(".") else str(error))
            return False
        self._note("")
        if self.on_change is not None:  # the Library redraws (and calls show again) before the message
            self.on_change(done != "promoted")  # after a promotion the new active version is chosen
        else:
            self.refresh()
        self._say(message, "success")
        return True

    def set_challenger(self) -> bool:
        """Callback of "Make vN the challenger"."""
        model = self.model
        if model is None:
            return False
        return self._write(lambda: f"{self.store.set_challenger(model.id)} is now the challenger: it classifies "
                                   "every new chunk in shadow.", "set")

    def clear(self) -> bool:
        """Callback of "Clear the challenger"."""
        model = self.model
        if model is None:
            return False

        def action() -> str:
            previous = self.store.clear_challenger(model.plot_type_id)
            return f"{previous or 'The challenger'} is no longer the challenger (its results stay)."

        return self._write(action, "cleared")

    def promote(self) -> bool:
        """Callback of "Promote … to active"."""
        model = self.model
        if model is None:
            return False
        return self._write(lambda: f"{self.store.promote_challenger(model.plot_type_id)} (the challenger) is now "
                                   "the active version.", "promoted")

    def __panel__(self) -> pn.viewable.Viewable:
        # one layout for the page's life: the Library re-fills its tabs on every redraw
        if self._layout is None:
            self._layout = pn.Column(
                self.feedback, self.current_pane, self.permission_note,
                pn.Row(self.since_select, self.set_button, self.clear_button, self.promote_button, self.action_note),
                self.table_pane, sizing_mode="stretch_width",
            )
        return self._layout
