"""The Library's Backtest tab (issue 15): what the chosen version would have done on stored runs, beside the
active version, before anyone activates it.

"Backtest on runs A–B" asks for a backtest through the store (`activate_models`, checked and audited
server-side; runs without images, the active version itself or a missing model file are refused in words,
nothing written).  The Dagster sensor `backtest_requests` launches it as a backfill; this tab shows its
status and progress, then the report per run (alarms of each version, agreement, Bad recall and false
alarms on labeled images), the images where the two disagree with a link to the Labeler on exactly those,
and what activation would say (docs/backtest.md).
"""

from __future__ import annotations

from typing import Any

import panel as pn

from panel_app.pages.common import empty_state, esc, fmt_time, html_pane
from panel_app.store import CatalogError, HydraStore, PermissionDenied
from panel_app.views_data import ModelInfo

REFRESH_MS = 3000  # while a backtest runs, its progress is read again this often


def _num(value: Any) -> str:
    if value is None:
        return "—"
    return f"{value:.3f}" if isinstance(value, float) else esc(value)


def labeler_href(plot_type: str, backtest_id: int) -> str:
    from urllib.parse import urlencode

    return "./labeler?" + urlencode({"plot_type": plot_type, "backtest": backtest_id})


def report_html(backtest: dict[str, Any]) -> str:
    """Status line, the per-run table and the disagreements of one backtest."""
    done, total = backtest["progress"]
    status = backtest["status"]
    head = (f"<p class='backtest-status'><b>Backtest {backtest['id']}</b> of {esc(backtest['candidate'])} vs "
            f"{esc(backtest['active'] or 'no active version')} on runs {esc(backtest['runs'])}: <b>{esc(status)}</b>"
            f" — {done} / {total} images classified · {esc(backtest['message'])} · asked by "
            f"{esc(backtest['requested_by'] or '?')} on {fmt_time(backtest['requested_at'])} UTC"
            f"{' · Dagster backfill ' + esc(backtest['dagster_backfill_id']) if backtest['dagster_backfill_id'] else ''}"
            f"{' · MLflow run ' + esc(backtest['mlflow_run_id']) if backtest['mlflow_run_id'] else ''}</p>")
    report = backtest["report"]
    if status != "done" or not report:
        if status == "requested":
            head += ("<p class=muted>Waiting for Dagster: its sensor <code>backtest_requests</code> launches the "
                     "backfill within seconds while the Dagster daemon runs (<code>hydra up</code>).</p>")
        if status in ("requested", "running"):
            width = 100 * done / total if total else 0
            head += (f"<div class='backtest-progress' style='background:#eef1f5;width:320px;height:10px'>"
                     f"<div style='background:#2f6fde;width:{width:.0f}%;height:10px'></div></div>")
        return head
    rows = [*((str(r["run"]), r) for r in report["per_run"]), ("all runs", report["totals"])]
    body = "".join(
        f"<tr><td>{esc(name)}</td><td>{r['images']}</td><td>{r['alarms_active']}</td><td>{r['alarms_candidate']}</td>"
        f"<td>{_num(r['agreement'])}</td><td>{r['labeled']}</td><td>{_num(r['bad_recall_active'])}</td>"
        f"<td>{_num(r['bad_recall_candidate'])}</td><td>{r['false_alarms_active']}</td>"
        f"<td>{r['false_alarms_candidate']}</td></tr>" for name, r in rows)
    table = ("<table class='hy backtest-report'><tr><th>run</th><th>images</th><th>alarms active</th>"
             "<th>alarms candidate</th><th>agreement</th><th>labeled</th><th>Bad recall active</th>"
             "<th>Bad recall candidate</th><th>false alarms active</th><th>false alarms candidate</th></tr>"
             f"{body}</table>")
    disagreements = report.get("disagreements") or []
    total_disagreements = report["totals"]["disagreements"]
    if total_disagreements:
        listed = "".join(
            f"<tr><td>{d['run']}</td><td>{d['chunk']}</td><td>{esc(d['active'])}{' ⚠' if d['active_alarm'] else ''}"
            f"</td><td>{esc(d['candidate'])}{' ⚠' if d['candidate_alarm'] else ''}</td><td>{esc(d['human'] or '—')}"
            "</td></tr>" for d in disagreements[:20])
        more = f"<p class=muted>… and {total_disagreements - 20} more.</p>" if total_disagreements > 20 else ""
        table += (f"<h4>{total_disagreements} image(s) where they disagree</h4>"
                  f"<p><a class='backtest-labeler' href='{esc(labeler_href(report['plot_type'], backtest['id']))}'>"
                  "Label them in the Labeler →</a></p>"
                  "<table class='hy backtest-disagreements'><tr><th>run</th><th>chunk</th><th>active</th>"
                  f"<th>candidate</th><th>human label</th></tr>{listed}</table>{more}")
    else:
        table += "<p class=muted>The two versions agree on every image.</p>"
    for error, n in (report.get("errors") or {}).items():
        table += f"<p style='color:#b42318'>{n} image(s) not classified: {esc(error)}</p>"
    return head + table


class BacktestSection(pn.viewable.Viewer):
    """The Backtest tab for one model version at a time (`show`)."""

    def __init__(self, store: HydraStore) -> None:
        super().__init__()
        self.store = store
        self.model: ModelInfo | None = None
        self.backtests: list[dict[str, Any]] = []
        self.notes_pane = html_pane("", css_classes=["backtest-notes"])
        self.report_pane = html_pane("")
        self.feedback = pn.pane.Alert("", visible=False, sizing_mode="stretch_width")
        self.runs_input = pn.widgets.TextInput(label="Runs A–B", placeholder="121200-121250", width=200)
        self.run_button = pn.widgets.Button(label="Backtest on runs A–B", color="primary", margin=(24, 10, 10, 10))
        self.run_button.on_click(lambda _e: self.request(self._typed()))
        self.refresh_button = pn.widgets.Button(label="Refresh", margin=(24, 10, 10, 10))
        self.refresh_button.on_click(lambda _e: self.refresh())
        self.runs_note = html_pane("", width=420, margin=(30, 10, 10, 10), css_classes=["backtest-runs-note"])
        self.permission_note = html_pane("")
        self._callback: Any = None

    def _typed(self) -> str:
        widget = self.runs_input
        return widget.value if widget.value_input is None else widget.value_input

    def _say(self, text: str, kind: str) -> None:
        self.feedback.object, self.feedback.alert_type, self.feedback.visible = esc(text), kind, True

    def show(self, model: ModelInfo | None) -> None:
        """Load a version's backtests (the Library calls it when another version is chosen)."""
        self.model = model
        self.feedback.visible = False
        self.runs_note.object = ""
        self.refresh()

    def refresh(self) -> None:
        model = self.model
        if model is None:
            self.backtests = []
            self.notes_pane.object = self.report_pane.object = ""
            return
        self.backtests = self.store.backtests_of(model.id)
        may = self.store.can("activate_models", model.plot_type_id)
        self.run_button.disabled = not may or model.active
        self.permission_note.object = (
            "<p class=muted>Backtesting a version needs the <code>activate_models</code> permission.</p>"
            if not may else "<p class=muted>This is the active version: backtest another version against it.</p>"
            if model.active else "")
        if model.active:
            self.notes_pane.object = ""
        else:
            notes = self.store.activation_notes(model.id)
            self.notes_pane.object = "".join(
                f"<p style='color:{'#b42318' if n.startswith('warning') else '#344054'}'>{esc(n)}</p>" for n in notes)
        if not self.backtests:
            self.report_pane.object = empty_state(
                "No backtest of this version yet",
                "Type stored runs (e.g. 121200-121250) and press <b>Backtest on runs A–B</b>: every stored image "
                "of those runs is classified in shadow by this version — no alarm, no keep decision, nothing on "
                "the Run page — and compared with the active version.")
        else:
            latest, *older = self.backtests
            earlier = "".join(f"<li>backtest {b['id']} on runs {esc(b['runs'])}: {esc(b['status'])} — "
                              f"{esc(b['message'])}</li>" for b in older)
            self.report_pane.object = report_html(latest) + (f"<h4>Earlier backtests</h4><ul>{earlier}</ul>"
                                                             if earlier else "")
        self._follow(any(b["status"] in ("requested", "running") for b in self.backtests[:1]))

    def _follow(self, running: bool) -> None:
        """Read the progress again every few seconds while the latest backtest runs (in a served page)."""
        if running and self._callback is None and pn.state.curdoc is not None:
            try:
                self._callback = pn.state.add_periodic_callback(self.refresh, period=REFRESH_MS, timeout=3_600_000)
            except Exception:  # not served (a test): the Refresh button does it
                self._callback = None
        elif not running and self._callback is not None:
            self._callback.stop()
            self._callback = None

    def request(self, runs: str) -> bool:
        """Callback of "Backtest on runs A–B": nothing is written unless the store accepts the request."""
        model = self.model
        if model is None:
            return False
        if not str(runs or "").strip():
            self.runs_note.object = "<span style='color:#b42318'>Type the runs, e.g. 121200-121250: nothing was asked.</span>"
            return False
        try:
            request = self.store.request_backtest(model.id, str(runs))
        except PermissionDenied as refusal:
            self._say(f"Refused: {refusal}", "danger")
            return False
        except CatalogError as error:
            self.runs_note.object = f"<span style='color:#b42318'>{esc(error)}: nothing was asked.</span>"
            return False
        self.runs_note.object = ""
        self.refresh()
        self._say(f"Backtest {request.id} asked: {request.n_images} images of {len(request.runs)} runs; Dagster "
                  "runs it as a backfill (its progress shows here).", "success")
        return True

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(self.feedback, self.notes_pane,
                         pn.Row(self.runs_input, self.run_button, self.refresh_button, self.runs_note),
                         self.permission_note, self.report_pane, sizing_mode="stretch_width")
