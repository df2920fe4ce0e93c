"""The Library's reference section (issue 14): a plot type's current reference — version, runs, rule, who and
when, images, limit — its history, "use run N as reference", the rule (auto: follow the latest good runs;
expert: stay where an expert put it), and the reference alarm switch and quantile.

Every write goes through the store (`choose_reference`, `follow_latest_good_runs`, `set_reference_settings`),
which checks `edit_reference` server-side and audits; the form is shown to everyone, so a user without the
permission gets the refusal in words.  Only what the user changed is written; a run typed wrong, unknown to
Hydra or without images of the plot type is said next to the field and nothing is written.
"""

from __future__ import annotations

import panel as pn

from panel_app.pages.common import empty_state, esc, fmt_time, html_pane
from panel_app.store import CatalogError, HydraStore, PermissionDenied
from panel_app.views_data import ReferenceInfo, fmt_score

RULES = {"auto: follow the latest good runs": "auto", "expert: stay where an expert put it": "expert"}


def parse_runs(text: object) -> tuple[list[int], str]:
    """Run numbers typed as "121262, 121263" (commas or spaces): (runs, "") or ([], why not)."""
    raw = str(text or "").replace(",", " ").split()
    if not raw:
        return [], "Type one or more run numbers, e.g. 121262 or 121262, 121263."
    bad = [part for part in raw if not part.isdigit()]
    if bad:
        return [], f"“{bad[0]}” is not a run number: nothing was changed."
    return sorted({int(part) for part in raw}), ""


def parse_quantile(text: object) -> tuple[float | None, str]:
    raw = str(text or "").strip()
    try:
        value = float(raw.replace(",", "."))
    except ValueError:
        return None, f"“{raw}” is not a number: the quantile is between 0.5 and 0.9999 (e.g. 0.99)."
    if not 0.5 <= value < 1.0:
        return None, f"{raw} is outside 0.5 – 0.9999 (0.99 = as unusual as the reference's own 1-in-100)."
    return value, ""


def current_html(sets: list[ReferenceInfo], settings: tuple[bool, float, str] | None) -> str:
    alarm, quantile, rule = settings or (False, 0.99, "auto")
    rules = (f"<p class=muted>Rule: <b>{esc(rule)}</b> · reference alarm <b>{'on' if alarm else 'off'}</b> · "
             f"quantile <b>{quantile:g}</b> (the limit of the next reference version is calibrated there)</p>")
    active = next((s for s in sets if s.active), None)
    if active is None:
        return rules + empty_state(
            "No reference yet for this plot type",
            "Its images get no reference score (marked missing) until one is chosen: type runs below and "
            "<b>Use as reference</b>, or switch the rule to auto.")
    runs = ", ".join(map(str, active.runs)) or "—"
    return (f"<p><b>Current reference: v{active.version}</b> — run{'s' if len(active.runs) != 1 else ''} "
            f"<b>{esc(runs)}</b>, rule {esc(active.rule)}, chosen by {esc(active.chosen_by or '?')} on "
            f"{fmt_time(active.chosen_at)} UTC · {active.n_images} images · limit <b>{fmt_score(active.score_limit)}"
            f"</b> at quantile {active.quantile:g}{' · ' + esc(active.comment) if active.comment else ''}</p>" + rules)


def history_html(sets: list[ReferenceInfo]) -> str:
    if not sets:
        return ""
    rows = "".join(
        f"<tr><td>{'★' if s.active else ''}</td><td>v{s.version}</td><td>{esc(', '.join(map(str, s.runs)))}</td>"
        f"<td>{esc(s.rule)}</td><td>{esc(s.chosen_by)}</td><td>{fmt_time(s.chosen_at)}</td><td>{s.n_images}</td>"
        f"<td>{fmt_score(s.score_limit)}</td><td>{s.quantile:g}</td><td>{esc(s.comment)}</td></tr>"
        for s in sets
    )
    return ("<h4>History of reference changes</h4><table class='hy reference-history'><tr><th></th><th>version</th>"
            "<th>runs</th><th>rule</th><th>chosen by</th><th>when (UTC)</th><th>images</th><th>limit</th>"
            f"<th>quantile</th><th>comment</th></tr>{rows}</table>")


class ReferenceSection(pn.viewable.Viewer):
    """The Reference tab of the Library, for one plot type at a time (`show`)."""

    def __init__(self, store: HydraStore, plot_type_id: int | None = None) -> None:
        super().__init__()
        self.store = store
        self.plot_type_id = plot_type_id
        self.sets: list[ReferenceInfo] = []
        self.settings: tuple[bool, float, str] | None = None
        self.current_pane = html_pane("")
        self.history_pane = html_pane("")
        self.feedback = pn.pane.Alert("", visible=False, sizing_mode="stretch_width")
        self.runs_input = pn.widgets.TextInput(label="Use run(s) as reference", placeholder="121262, 121263",
                                               width=220)
        self.comment_input = pn.widgets.TextInput(label="Comment (optional)", width=260)
        self.use_button = pn.widgets.Button(label="Use as reference", color="primary", margin=(24, 10, 10, 10))
        self.use_button.on_click(lambda _e: self.use_runs(self._typed(self.runs_input), self.comment_input.value))
        self.runs_note = html_pane("", width=420, margin=(30, 10, 10, 10), css_classes=["runs-note"])
        self.rule_select = pn.widgets.Select(label="Rule", options=RULES, width=270)
        self.alarm_box = pn.widgets.Checkbox(label="Reference alarm (alarm on images unlike their reference)",
                                             margin=(32, 10, 10, 10))
        self.quantile_input = pn.widgets.TextInput(label="Quantile of the limit", width=150)
        self.save_button = pn.widgets.Button(label="Save reference settings", margin=(24, 10, 10, 10))
        self.save_button.on_click(lambda _e: self.save_settings(self.rule_select.value, self.alarm_box.value,
                                                                self._typed(self.quantile_input)))
        self.settings_note = html_pane("", width=420, margin=(30, 10, 10, 10))
        self.permission_note = html_pane("")
        self._layout: pn.Column | None = None
        self.show(plot_type_id)

    @staticmethod
    def _typed(widget: pn.widgets.TextInput) -> str:
        """What a field holds now, even before Enter."""
        return widget.value if widget.value_input is None else widget.value_input

    def _say(self, text: str, kind: str) -> None:
        self.feedback.object, self.feedback.alert_type, self.feedback.visible = esc(text), kind, True

    @staticmethod
    def _note(pane: pn.pane.HTML, text: str) -> None:
        pane.object = f"<span style='color:#b42318'>{esc(text)}</span>" if text else ""

    # ---- logic ------------------------------------------------------------------------------------

    def show(self, plot_type_id: int | None) -> None:
        """Load a plot type's reference and put its settings in the form (as they are: nothing to write); the
        last message goes (it was about what was shown before)."""
        self.plot_type_id = plot_type_id
        self.feedback.visible = False
        self._note(self.runs_note, "")
        self._note(self.settings_note, "")
        self.sets = self.store.reference_sets(plot_type_id) if plot_type_id is not None else []
        self.settings = self.store.reference_settings(plot_type_id) if plot_type_id is not None else None
        self.current_pane.object = current_html(self.sets, self.settings) if plot_type_id is not None else ""
        self.history_pane.object = history_html(self.sets)
        alarm, quantile, rule = self.settings or (False, 0.99, "auto")
        self.rule_select.value, self.alarm_box.value, self.quantile_input.value = rule, alarm, f"{quantile:g}"
        may = plot_type_id is not None and self.store.can("edit_reference", plot_type_id)
        self.permission_note.object = "" if may else (
            "<p class=muted>Changing the reference needs the <code>edit_reference</code> permission: the server "
            "refuses the buttons below for you.</p>")

    def use_runs(self, text: object, comment: str = "") -> bool:
        """Callback of "Use as reference": a new reference version from the typed runs, or why not."""
        if self.plot_type_id is None:
            return False
        runs, why = parse_runs(text)
        if why:
            self._note(self.runs_note, why)
            return False
        try:
            change = self.store.choose_reference(self.plot_type_id, runs, comment=str(comment or "").strip())
        except PermissionDenied as refusal:
            self._say(f"Refused: {refusal}. Nothing was changed.", "danger")
            return False
        except CatalogError as error:  # unknown run, no images: next to the field
            self._note(self.runs_note, str(error))
            return False
        self.show(self.plot_type_id)
        excluded = f" {len(change.excluded)} image(s) left out: {'; '.join(change.excluded[:3])}" if change.excluded else ""
        self._say(f"{change.message or f'Reference version {change.version}'}.{excluded}", "success")
        return True

    def save_settings(self, rule: str | None, alarm: bool | None, quantile_text: object) -> list[str]:
        """Callback of "Save reference settings": writes only what differs from what was loaded."""
        if self.plot_type_id is None or self.settings is None:
            return []
        old_alarm, old_quantile, old_rule = self.settings
        quantile, why = parse_quantile(quantile_text)
        if quantile is None:
            self._note(self.settings_note, why + " Nothing was saved.")
            return []
        self._note(self.settings_note, "")
        changes = {"alarm": alarm if alarm is not None and bool(alarm) != old_alarm else None,
                   "quantile": quantile if quantile != old_quantile else None,
                   "rule": "expert" if rule == "expert" and old_rule != "expert" else None}
        done: list[str] = []
        try:
            if any(v is not None for v in changes.values()):
                done = self.store.set_reference_settings(self.plot_type_id, **changes)
            if rule == "auto" and old_rule != "auto":  # the auto rule: follow the latest good runs now
                change = self.store.follow_latest_good_runs(self.plot_type_id)
                done.append(f"rule {old_rule} → auto: {change.message}")
        except PermissionDenied as refusal:
            self.show(self.plot_type_id)  # the form as stored again
            self._say(f"Refused: {refusal}. Nothing was changed.", "danger")
            return []
        except CatalogError as error:
            self._say(str(error), "warning")
            return []
        self.show(self.plot_type_id)
        self._say("Saved: " + "; ".join(done) if done else "Nothing changed: the settings were already so.",
                  "success" if done else "info")
        return done

    def __panel__(self) -> pn.viewable.Viewable:
        # one layout for the page's life: the Library re-fills its tabs on every redraw, and a new layout around
        # the same widgets would have the old one's clean-up unhook them (clicks lost, typed text cleared)
        if self._layout is None:
            self._layout = pn.Column(
                self.feedback, self.current_pane, self.permission_note,
                pn.Row(self.runs_input, self.comment_input, self.use_button, self.runs_note),
                pn.Row(self.rule_select, self.alarm_box, self.quantile_input, self.save_button, self.settings_note),
                self.history_pane, sizing_mode="stretch_width",
            )
        return self._layout
