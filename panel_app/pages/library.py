"""Library page: every model version of a plot type, its confusion matrix, curves and thresholds.

Experts edit a threshold or activate a version here; everyone else sees the same page read-only.  The
write callbacks check permission themselves (`HydraStore.set_threshold` / `activate_model`).
"""

from __future__ import annotations

import panel as pn
import param

from panel_app.pages.charts import confusion_figure, curves_figure
from panel_app.pages.common import empty_state, esc, fmt_time, fmt_weight, html_pane
from panel_app.store import CatalogError, HydraStore, PermissionDenied
from panel_app.views_data import ModelInfo, ThresholdInfo


class LibraryPage(pn.viewable.Viewer):
    plot_type = param.Selector(default=None, objects=[], label="Plot type")
    model_id = param.Selector(default=None, objects=[], label="Model version")

    def __init__(self, store: HydraStore, **params) -> None:
        self.store = store
        super().__init__(**params)
        options = store.plot_type_options()
        self.param.plot_type.objects = options
        self.models: list[ModelInfo] = []
        self.feedback = pn.pane.Alert("", visible=False, sizing_mode="stretch_width")
        self.models_pane = html_pane("")
        self.details_pane = html_pane("")
        self.tabs = pn.Tabs(sizing_mode="stretch_width", dynamic=False)
        self.label_select = pn.widgets.Select(label="Label", width=160)
        self.threshold_input = pn.widgets.FloatInput(label="Threshold", start=0.0, end=1.0, step=0.01, width=120)
        self.save_threshold = pn.widgets.Button(label="Save threshold", color="primary", margin=(24, 10, 10, 10))
        self.save_threshold.on_click(lambda _e: self.edit_threshold(self.label_select.value, self.threshold_input.value))
        self.activate_button = pn.widgets.Button(label="Activate this version", color="warning")
        self.activate_button.on_click(lambda _e: self.activate())
        self.thresholds_pane = html_pane("")
        self._thresholds: list[ThresholdInfo] = []
        self.label_select.param.watch(self._show_threshold, "value")
        self.permission_note = html_pane("")
        if options:
            self.plot_type = next(iter(options.values()))
        self._load_models()

    # ---- logic --------------------------------------------------------------------------------------

    @param.depends("plot_type", watch=True)
    def _load_models(self) -> None:
        self.models = self.store.models_of(self.plot_type) if self.plot_type is not None else []
        names = {f"{'★ ' if m.active else ''}v{m.version} · {m.topology} · {fmt_time(m.created_at)[:16]}": m.id
                 for m in self.models}
        self.param.model_id.objects = names
        chosen = next((m.id for m in self.models if m.active), self.models[0].id if self.models else None)
        if self.model_id == chosen:
            self._render()
        else:
            self.model_id = chosen

    def selected(self) -> ModelInfo | None:
        return next((m for m in self.models if m.id == self.model_id), None)

    def _say(self, text: str, kind: str) -> None:
        self.feedback.object, self.feedback.alert_type, self.feedback.visible = esc(text), kind, True

    def edit_threshold(self, label_id: int | None, value: float | None) -> bool:
        """Callback of "Save threshold": the store checks `edit_thresholds` on this plot type."""
        model = self.selected()
        if model is None or label_id is None or value is None:
            self._say("Choose a model version, a label and a value first.", "warning")
            return False
        try:
            old = self.store.set_threshold(model.id, int(label_id), float(value))
        except PermissionDenied as refusal:
            self._say(f"Refused: {refusal}", "danger")
            return False
        except CatalogError as error:
            self._say(str(error), "warning")
            return False
        label = self.store.plot_type(self.plot_type).label(int(label_id))
        self._render()  # before the message: a redraw hides the previous one
        self._say(f"Threshold of {label.name if label else label_id} for v{model.version}: "
                  f"{fmt_weight(old)} → {float(value):.3f}", "success")
        return True

    def activate(self) -> bool:
        """Callback of "Activate this version": the store checks `activate_models` on this plot type."""
        model = self.selected()
        if model is None:
            return False
        try:
            note = self.store.activate_model(model.id)
        except PermissionDenied as refusal:
            self._say(f"Refused: {refusal}", "danger")
            return False
        except CatalogError as error:
            self._say(str(error), "warning")
            return False
        self._load_models()  # before the message: a redraw hides the previous one
        self._say(f"v{model.version} of {model.name} is now active. {note}".strip(), "success")
        return True

    def _show_threshold(self, *_events) -> None:
        row = next((r for r in self._thresholds if r.label_id == self.label_select.value), None)
        self.threshold_input.value = row.value if row and row.value is not None else 0.5

    # ---- rendering ----------------------------------------------------------------------------------

    def models_html(self) -> str:
        if self.plot_type is None:
            return empty_state("No plot types yet", "Add one with <code>hydra plot-type add NAME --labels Good,Bad "
                               "--bad Bad</code>, or start the demo with <code>hydra up</code>.")
        if not self.models:
            return empty_state("No model versions yet for this plot type",
                               "Label some images in the Labeler, then train one: "
                               "<code>hydra train PLOT_TYPE --activate</code>.")
        config = self.store.config
        rows = []
        for m in self.models:
            accuracy = m.metrics.get("val_accuracy") or m.metrics.get("accuracy")
            link = (f'<a href="{esc(config.mlflow_run_link(m.mlflow_run_id))}" target="_blank" rel="noopener">run</a> · '
                    if m.mlflow_run_id else "")
            rows.append(
                f"<tr><td>{'<span class=star title=active>★</span>' if m.active else ''}</td>"
                f"<td>{esc(m.name)} v{esc(m.version)}</td><td>{esc(m.topology)}</td>"
                f"<td>{fmt_time(m.created_at)}</td><td>{esc(m.created_by)}</td><td>{m.training_set_size}</td>"
                f"<td>{esc(m.sampling)}</td><td>{fmt_weight(accuracy) if isinstance(accuracy, int | float) else '—'}</td>"
                f'<td>{link}<a href="{esc(config.mlflow_model_link(m.name, m.version))}" target="_blank" '
                f'rel="noopener">model</a></td></tr>'
            )
        return ("<table class=hy><tr><th></th><th>version</th><th>topology</th><th>created (UTC)</th><th>by</th>"
                "<th>training images</th><th>sampling</th><th>val. accuracy</th><th>MLflow</th></tr>"
                + "".join(rows) + "</table>")

    def thresholds_html(self, model: ModelInfo, rows: list[ThresholdInfo]) -> str:
        body = "".join(
            f"<tr><td><span class=chip style='background:{esc(r.colour)}'>{esc(r.label)}</span></td>"
            f"<td><b>{fmt_weight(r.value)}</b></td><td>{fmt_weight(r.f1)}</td><td>{fmt_time(r.changed_at)}</td>"
            f"<td>{esc(r.changed_by)}</td></tr>"
            for r in rows
        )
        changes = self.store.threshold_changes(model.id)
        history = "".join(
            f"<tr><td>{fmt_time(at)}</td><td>{esc(label)}</td><td>{fmt_weight(old)} → {fmt_weight(new)}</td>"
            f"<td>{esc(by)}</td></tr>" for at, label, old, new, by in changes
        )
        quality = ""
        per_label = (model.metrics.get("validation") or {}).get("per_label") if isinstance(
            model.metrics.get("validation"), dict) else None
        if isinstance(per_label, dict) and per_label:
            cells = "".join(
                f"<tr><td>{esc(name)}</td><td>{fmt_weight(row.get('precision'))}</td><td>{fmt_weight(row.get('recall'))}"
                f"</td><td>{fmt_weight(row.get('f1'))}</td><td>{esc(row.get('support', ''))}</td></tr>"
                for name, row in per_label.items() if isinstance(row, dict)
            )
            quality = ("<h4>Validation at these thresholds (when trained)</h4><table class=hy><tr><th>label</th>"
                       f"<th>precision</th><th>recall</th><th>F1</th><th>images</th></tr>{cells}</table>")
        return ("<table class=hy><tr><th>label</th><th>threshold</th><th>F1 at threshold</th><th>changed (UTC)</th>"
                f"<th>by</th></tr>{body}</table>" + quality
                + (f"<h4>Changes</h4><table class=hy><tr><th>when (UTC)</th><th>label</th><th>value</th><th>by</th>"
                   f"</tr>{history}</table>" if history else ""))

    @param.depends("model_id", watch=True)
    def _render(self) -> None:
        self.feedback.visible = False
        self.models_pane.object = self.models_html()
        model = self.selected()
        info = self.store.plot_type(self.plot_type)
        if model is None or info is None:
            self.details_pane.object = ""
            self.tabs[:] = []
            for widget in (self.save_threshold, self.activate_button, self.label_select, self.threshold_input):
                widget.visible = False
            return
        counts = self.store.training_set_counts(model.training_set_id) if model.training_set_id else {}
        composition = ", ".join(f"{esc(k)}: {v}" for k, v in counts.items()) or "not recorded"
        self.details_pane.object = (
            f"<p><b>{esc(model.name)} v{esc(model.version)}</b> {'<span class=star>★ active</span>' if model.active else ''}"
            f" — {esc(model.topology)}, created {fmt_time(model.created_at)} UTC by {esc(model.created_by or '?')}; "
            f"training set: {model.training_set_size} images ({composition}), sampling {esc(model.sampling)}"
            f"{'; activated ' + fmt_time(model.activated_at) + ' by ' + esc(model.activated_by) if model.activated_at else ''}"
            "</p>"
        )
        colours = {lab.name: lab.colour for lab in info.labels}
        conf = self.store.confusion(model)
        if conf.total:
            acc = conf.accuracy
            confusion_tab = pn.Column(
                html_pane(f"<p class=muted>Source: {esc(conf.source)} · {conf.total} images · accuracy "
                          f"{fmt_weight(acc)}</p>"),
                pn.pane.Bokeh(confusion_figure(conf, colours)),
            )
        else:
            confusion_tab = html_pane(empty_state(
                "No confusion matrix for this version",
                "It appears once the model has a validation report or has classified images a human labeled."))
        history = self.store.training_curves(model)
        if history:
            curves_tab = pn.Row(
                pn.pane.Bokeh(curves_figure(history, [k for k in history if "loss" in k], "loss")),
                pn.pane.Bokeh(curves_figure(history, [k for k in history if "acc" in k], "accuracy")),
            )
        else:
            curves_tab = html_pane(empty_state("No training curves recorded",
                                               "Neither the model's metrics nor its MLflow run hold per-epoch values."))
        thresholds = self.store.thresholds_of(model.id, model.plot_type_id)
        self.thresholds_pane.object = self.thresholds_html(model, thresholds)
        self._thresholds = thresholds
        self.label_select.options = {r.label: r.label_id for r in thresholds}
        self._show_threshold()
        may_edit = self.store.can("edit_thresholds", model.plot_type_id)
        may_activate = self.store.can("activate_models", model.plot_type_id)
        for widget in (self.label_select, self.threshold_input, self.save_threshold):
            widget.visible = may_edit
        self.activate_button.visible = may_activate and not model.active
        notes = []
        if not may_edit:
            notes.append("Thresholds are read-only for you (needs the <code>edit_thresholds</code> permission).")
        if not may_activate and not model.active:
            notes.append("Activating a version needs the <code>activate_models</code> permission.")
        self.permission_note.object = "".join(f"<p class=muted>{n}</p>" for n in notes)
        self.tabs[:] = [
            ("Confusion matrix", confusion_tab),
            ("Loss & accuracy", curves_tab),
            ("Thresholds", pn.Column(self.thresholds_pane,
                                     pn.Row(self.label_select, self.threshold_input, self.save_threshold),
                                     sizing_mode="stretch_width")),
        ]

    def __panel__(self) -> pn.viewable.Viewable:
        top = pn.Row(
            pn.widgets.Select.from_param(self.param.plot_type, width=260),
            pn.widgets.Select.from_param(self.param.model_id, width=320),
            self.activate_button,
            sizing_mode="stretch_width",
        )
        self.activate_button.margin = (24, 10, 10, 10)
        return pn.Column(top, self.feedback, self.models_pane, self.details_pane, self.permission_note, self.tabs,
                         sizing_mode="stretch_width")
