"""The Library's suggested training: "enough new labels since this version was trained (or the audit fixed
labels it trained on)", with one action that trains a new version, backtests it on recent runs and offers
activation (hydra_assets/training_suggestion.py; docs/labeling-queues.md).

The action starts ``hydra train T --no-activate --backtest-runs A-B`` in the background; the new version
then appears in the version list with its backtest (the Backtest tab), and "Activate this version" says
what the backtest found.
"""

from __future__ import annotations

import panel as pn

from panel_app.pages.common import esc, html_pane
from panel_app.store import CatalogError, HydraStore, PermissionDenied


class TrainingSuggestionSection(pn.viewable.Viewer):
    """Hidden unless the plot type's version is behind its labels."""

    def __init__(self, store: HydraStore) -> None:
        super().__init__()
        self.store = store
        self.plot_type_id: int | None = None
        self.banner = html_pane("")
        self.runs = pn.widgets.TextInput(label="Backtest on runs", width=180, placeholder="A-B")
        self.start = pn.widgets.Button(label="Train, backtest and offer activation", color="primary",
                                       margin=(24, 10, 10, 10))
        self.start.on_click(lambda _e: self.train())
        self.note = html_pane("", margin=(30, 10, 10, 10))
        self.box = pn.Column(self.banner, pn.Row(self.runs, self.start, self.note), visible=False,
                             sizing_mode="stretch_width", css_classes=["training-suggestion"])

    def show(self, plot_type_id: int | None) -> None:
        """Read the plot type's suggestion again; the runs field offers its newest runs when it changes."""
        changed = plot_type_id != self.plot_type_id
        self.plot_type_id = plot_type_id
        suggestion = self.store.training_suggestion(plot_type_id) if plot_type_id is not None else None
        self.box.visible = suggestion is not None
        if suggestion is None:
            return
        self.banner.object = (f"<div class=suggest><b class=head>Training suggested</b> {esc(suggestion.message)} "
                              f"(from {suggestion.needed} new labels, or any audit fix, a new version is worth "
                              "training).</div>")
        if changed:
            self.runs.value = suggestion.backtest_runs
            self.note.object = ""

    def train(self) -> bool:
        """Start training and the backtest (checked and audited by the store); say where to follow it."""
        if self.plot_type_id is None:
            return False
        runs = (self.runs.value or "").strip()
        if not runs:
            self.note.object = "<b style='color:#b42318'>Give the runs to backtest on, e.g. 1200-1250.</b>"
            return False
        try:
            pid, log_path = self.store.start_suggested_training(self.plot_type_id, runs)
        except (CatalogError, PermissionDenied) as error:
            self.note.object = f"<b style='color:#b42318'>Nothing started: {esc(error)}</b>"
            return False
        self.note.object = (f"<b>Started</b> (process {pid}): training, then the backtest on runs {esc(runs)}. The new "
                            "version appears in the list above when it is registered, its backtest in the Backtest "
                            f"tab; activate it here when the backtest looks right. Log: <code>{esc(log_path)}</code>")
        return True

    def __panel__(self) -> pn.viewable.Viewable:
        return self.box
