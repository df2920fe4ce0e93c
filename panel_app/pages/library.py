"""Library page: every model version of a plot type, its run-held-out validation (warnings first), confusion
matrix, curves, thresholds with the rule that chose each, novelty calibration, and retraining suggestions.

Experts edit a threshold or activate a version here; everyone else sees the same page read-only.  The
write callbacks check permission themselves (`HydraStore.set_threshold` / `activate_model`).  The threshold
form writes only what the user chose: no label is preselected, Save stays disabled until one is, and a
value outside 0–1 (or not a number) is refused with the reason next to the field.
"""

from __future__ import annotations

import panel as pn
import param

from panel_app.pages.charts import confusion_figure, curves_figure
from panel_app.pages.common import empty_state, esc, fmt_time, fmt_weight, html_pane, suggestions_html
from panel_app.pages.library_backtest import BacktestSection
from panel_app.pages.library_challenger import ChallengerSection
from panel_app.pages.library_masks import MaskSection
from panel_app.pages.library_reference import ReferenceSection
from panel_app.pages.library_training import TrainingSuggestionSection
from panel_app.store import CatalogError, HydraStore, PermissionDenied
from panel_app.views_data import (
    ModelInfo,
    ThresholdInfo,
    ValidationSummary,
    f1_at,
    quality_at,
    validation_summary,
    window,
)

CHOOSE = "— choose a label —"
SUGGESTION_HOURS = 24 * 7  # the Library's suggestions banner looks at the last week


def parse_threshold(text: object) -> tuple[float | None, str]:
    """(value, "") for a weight between 0 and 1, else (None, why not) — said next to the field."""
    raw = str(text if text is not None else "").strip()
    if not raw:
        return None, "Type a threshold: a weight between 0 and 1."
    try:
        value = float(raw.replace(",", "."))
    except ValueError:
        return None, f"“{raw}” is not a number: a threshold is a weight between 0 and 1."
    if value != value or not 0.0 <= value <= 1.0:
        return None, f"{raw} is out of range: a threshold is a weight between 0 and 1."
    return value, ""


def fmt_share(value: object) -> str:
    return f"{value:.1%}" if isinstance(value, int | float) and not isinstance(value, bool) else "—"


def validation_html(summary: ValidationSummary, label_names: list[str]) -> str:
    """The Validation tab: how the version was validated, per-run results, threshold rules, novelty limit."""
    if not summary.split and not summary.per_run and not summary.novelty:
        return empty_state("No run-held-out validation recorded for this version",
                           "It was trained before validation was split by run: its validation figures come from "
                           "images of the same runs as its training images and say little about the next run. "
                           "Retrain it to get per-run results.")
    parts = [f"<p><b>Validation split:</b> {esc(summary.split or 'not recorded')} · <b>{summary.n_runs}</b> run(s)"
             f"{': ' + esc(', '.join(map(str, summary.runs))) if summary.runs else ''}"
             f"{' · share left unconfirmed: <b>' + fmt_share(summary.unconfirmed_rate) + '</b>' if summary.unconfirmed_rate is not None else ''}"
             "</p>"]
    if summary.per_run:
        rows = "".join(
            f"<tr><td>{esc(run)}</td><td>{esc(r.get('images', '—'))}</td><td>{esc(r.get('bad', '—'))}</td>"
            f"<td>{fmt_weight(r.get('accuracy')) if isinstance(r.get('accuracy'), int | float) else '—'}</td>"
            f"<td>{fmt_weight(r.get('bad_recall')) if isinstance(r.get('bad_recall'), int | float) else '—'}</td>"
            f"<td>{fmt_share(r.get('false_alarms'))}</td><td>{fmt_share(r.get('unconfirmed'))}</td></tr>"
            for run, r in sorted(summary.per_run.items())
        )
        parts.append("<h4>Per validation run</h4><table class=hy><tr><th>run</th><th>images</th><th>Bad images</th>"
                     "<th>accuracy</th><th>Bad recall</th><th>false alarms</th><th>unconfirmed</th></tr>"
                     f"{rows}</table>")
    if summary.threshold_rules or summary.precision_target is not None:
        target = (f"<p>Precision target of confirmed labels: <b>{summary.precision_target:.2f}</b> (set per plot "
                  "type); a label whose max-F1 threshold would confirm too much gets the lowest threshold that "
                  "reaches it.</p>" if summary.precision_target is not None else "")
        rules = "".join(f"<tr><td>{esc(label)}</td><td>{esc(rule)}</td></tr>"
                        for label, rule in sorted(summary.threshold_rules.items(),
                                                  key=lambda kv: label_names.index(kv[0]) if kv[0] in label_names
                                                  else len(label_names)))
        parts.append("<h4>How the thresholds were chosen</h4>" + target
                     + (f"<table class=hy><tr><th>label</th><th>rule</th></tr>{rules}</table>" if rules else ""))
    novelty = summary.novelty
    if novelty:
        limit = novelty.get("limit")
        parts.append(
            "<h4>Novelty guard</h4><p>An image whose novelty score is above the limit is <b>unlike the training "
            "data</b>: not confirmed, sent to the Labeler, no alarm unless the plot type enables novel alarms.</p>"
            "<table class=hy><tr><th>limit</th><th>quantile of training scores</th><th>neighbours</th>"
            "<th>method</th><th>validation images above the limit</th><th>training images</th></tr>"
        )
        parts.append(f"<tr><td><b>{limit:.3f}</b></td>" if isinstance(limit, int | float) else "<tr><td>—</td>")
        parts.append(f"<td>{fmt_share(novelty.get('quantile'))}</td><td>{esc(novelty.get('neighbours', '—'))}</td>"
                     f"<td>{esc(novelty.get('method', '—'))}</td><td>{fmt_share(novelty.get('validation_rate'))}</td>"
                     f"<td>{esc(novelty.get('train_images', '—'))}</td></tr></table>")
    return "".join(parts)


def warnings_html(summary: ValidationSummary) -> str:
    """The validation's warnings, where nobody misses them (a figure of 1.000 next to them means little)."""
    if not summary.warnings:
        return ""
    items = "".join(f"<li>{esc(w)}</li>" for w in summary.warnings)
    return (f'<div class="warn"><b>⚠ Validation of this version says little ({len(summary.warnings)} warning'
            f"{'s' if len(summary.warnings) > 1 else ''}):</b><ul>{items}</ul></div>")


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
        self.label_select = pn.widgets.Select(label="Label", width=180, options={CHOOSE: None}, value=None)
        self.threshold_input = pn.widgets.TextInput(label="Threshold", width=120, placeholder="0 … 1")
        self.save_threshold = pn.widgets.Button(label="Save threshold", color="primary", margin=(24, 10, 10, 10),
                                                disabled=True)
        self.save_threshold.on_click(lambda _e: self.edit_threshold(self.label_select.value, self._typed()))
        self.threshold_note = html_pane("", width=420, margin=(30, 10, 10, 10))
        self.suggestions_pane = html_pane("")
        self.warnings_pane = html_pane("")
        self.activate_button = pn.widgets.Button(label="Activate this version", color="warning")
        self.activate_button.on_click(lambda _e: self.activate())
        self.thresholds_pane = html_pane("")
        self._thresholds: list[ThresholdInfo] = []
        self.label_select.param.watch(self._show_threshold, "value")
        self.threshold_input.param.watch(self._check_value, ["value", "value_input"])
        self.permission_note = html_pane("")
        self.reference = ReferenceSection(store)  # the Reference tab (issue 14)
        self.masks = MaskSection(store)  # the Mask tab (issue 14)
        self.backtest = BacktestSection(store)  # the Backtest tab (issue 15)
        self.challenger = ChallengerSection(store, on_change=lambda keep: self._load_models(keep=keep))  # issue 15
        self.training = TrainingSuggestionSection(store)  # suggested training (issue 15)
        if options:
            self.plot_type = next(iter(options.values()))
        self._load_models()

    # ---- logic --------------------------------------------------------------------------------------

    @param.depends("plot_type", watch=True)
    def _load_models(self, keep: bool = False) -> None:
        """Read the plot type's versions; choose the active one (`keep`: the chosen one stays chosen)."""
        self.models = self.store.models_of(self.plot_type) if self.plot_type is not None else []
        self.reference.show(self.plot_type)
        self.masks.show(self.plot_type)
        names = {f"{'★ ' if m.active else ''}v{m.version} · {m.topology} · {fmt_time(m.created_at)[:16]}"
                 f"{' · challenger' if m.challenger else ''}": m.id for m in self.models}
        self.param.model_id.objects = names
        chosen = next((m.id for m in self.models if m.active), self.models[0].id if self.models else None)
        if keep and self.model_id in names.values():
            chosen = self.model_id
        if self.model_id == chosen:
            self._render()
        else:
            self.model_id = chosen

    def selected(self) -> ModelInfo | None:
        return next((m for m in self.models if m.id == self.model_id), None)

    def _say(self, text: str, kind: str) -> None:
        self.feedback.object, self.feedback.alert_type, self.feedback.visible = esc(text), kind, True

    def _typed(self) -> str:
        """What the threshold field holds now (as typed, even before Enter or leaving the field)."""
        typed = self.threshold_input.value_input
        return self.threshold_input.value if typed is None else typed

    def _note(self, text: str, kind: str = "error") -> None:
        colour = "#b42318" if kind == "error" else "#5b6878"
        self.threshold_note.object = f"<span style='color:{colour}'>{esc(text)}</span>" if text else ""

    def edit_threshold(self, label_id: int | None, value: float | str | None) -> bool:
        """Callback of "Save threshold": writes only a label the user chose and a weight between 0 and 1; the
        store checks `edit_thresholds` on this plot type."""
        model = self.selected()
        if model is None or label_id is None:
            self._note("Choose a label first: nothing was saved.")
            self._say("Choose a model version and a label first: nothing was saved.", "warning")
            return False
        number, why = parse_threshold(value)
        if number is None:
            self._note(f"{why} Nothing was saved.")
            self._say(f"{why} Nothing was saved.", "warning")
            return False
        try:
            old = self.store.set_threshold(model.id, int(label_id), number)
        except PermissionDenied as refusal:
            self._say(f"Refused: {refusal}", "danger")
            return False
        except CatalogError as error:
            self._say(str(error), "warning")
            return False
        label = self.store.plot_type(self.plot_type).label(int(label_id))
        self._render_thresholds(model)
        self._note("")
        self._say(f"Threshold of {label.name if label else label_id} for v{model.version}: "
                  f"{fmt_weight(old)} → {number:.3f}", "success")
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
        self._say(f"v{model.version} of {model.name} is now active. {note}".strip(),
                  "warning" if "warning:" in note else "success")  # backtest notes (issue 15)
        return True

    def _show_threshold(self, *_events) -> None:
        """The chosen label's own threshold in the field; nothing (and Save disabled) without a label."""
        row = next((r for r in self._thresholds if r.label_id == self.label_select.value), None)
        if row is None:
            self.threshold_input.value = ""
            self._note("")
        else:
            self.threshold_input.value = "" if row.value is None else f"{row.value:.6g}"
            self._note("" if row.value is not None else "No threshold stored: the default 0.5 applies.", "info")
        self._check_value()

    def _check_value(self, *_events) -> None:
        """Say next to the field why a value cannot be saved, and keep Save disabled until it can."""
        if self.label_select.value is None:
            self.save_threshold.disabled = True
            return
        value, why = parse_threshold(self._typed())
        self.save_threshold.disabled = value is None
        if why and str(self._typed() or "").strip():
            self._note(why)
        elif value is not None:
            self._note("")

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
            summary = validation_summary(m.metrics)
            shown = fmt_weight(accuracy) if isinstance(accuracy, int | float) else "—"
            if summary.warnings:  # never a bare, reassuring 1.000 next to a validation that says little
                shown = (f"<span style='color:#b42318' title='{esc('; '.join(summary.warnings))}'>⚠ {shown} "
                         f"({len(summary.warnings)} warning{'s' if len(summary.warnings) > 1 else ''})</span>")
            runs = f"{summary.n_runs} run{'s' if summary.n_runs != 1 else ''}" if summary.split else "not by run"
            link = (f'<a href="{esc(config.mlflow_run_link(m.mlflow_run_id))}" target="_blank" rel="noopener">run</a> · '
                    if m.mlflow_run_id else "")
            rows.append(
                f"<tr><td>{'<span class=star title=active>★</span>' if m.active else ''}"
                f"{'<span class=challenger title=challenger>challenger</span>' if m.challenger else ''}</td>"
                f"<td>{esc(m.name)} v{esc(m.version)}</td><td>{esc(m.topology)}</td>"
                f"<td>{fmt_time(m.created_at)}</td><td>{esc(m.created_by)}</td><td>{m.training_set_size}</td>"
                f"<td>{esc(m.sampling)}</td><td>{runs}</td><td>{shown}</td>"
                f'<td>{link}<a href="{esc(config.mlflow_model_link(m.name, m.version))}" target="_blank" '
                f'rel="noopener">model</a></td></tr>'
            )
        return ("<table class=hy><tr><th></th><th>version</th><th>topology</th><th>created (UTC)</th><th>by</th>"
                "<th>training images</th><th>sampling</th><th>validation</th><th>val. accuracy</th><th>MLflow</th></tr>"
                + "".join(rows) + "</table>")

    def thresholds_html(self, model: ModelInfo, rows: list[ThresholdInfo]) -> str:
        names, true, weights = self.store.validation_predictions(model)

        def f1_cell(row: ThresholdInfo) -> tuple[str, bool]:
            """As training recorded it, else recomputed on the validation images (a hand-set threshold has no
            recorded F1); (text, recomputed)."""
            if row.f1 is not None or row.value is None:
                return fmt_weight(row.f1), False
            f1 = f1_at(names, true, weights, row.label, row.value) if true else None
            return (f"{f1:.3f}*", True) if f1 is not None else ("— (no validation predictions)", False)

        cells = [f1_cell(r) for r in rows]
        body = "".join(
            f"<tr><td><span class=chip style='background:{esc(r.colour)}'>{esc(r.label)}</span></td>"
            f"<td><b>{fmt_weight(r.value)}</b></td><td>{f1}</td><td>{fmt_time(r.changed_at)}</td>"
            f"<td>{esc(r.changed_by)}</td></tr>"
            for r, (f1, _) in zip(rows, cells, strict=True)
        )
        if any(recomputed for _, recomputed in cells):
            body += ("<tr><td colspan=5 class=muted>* recomputed at this threshold on the version's validation "
                     "images</td></tr>")
        changes = self.store.threshold_changes(model.id)
        history = "".join(
            f"<tr><td>{fmt_time(at)}</td><td>{esc(label)}</td><td>{fmt_weight(old)} → {fmt_weight(new)}</td>"
            f"<td>{esc(by)}</td></tr>" for at, label, old, new, by in changes
        )
        current = {r.label: r.value for r in rows if r.value is not None}
        per_label = quality_at(names, true, weights, current)
        source = f"{len(true)} validation images, the same as the confusion matrix's"
        if not per_label:  # no predictions to recompute from: what training recorded, said as such
            recorded = (model.metrics.get("validation") or {}).get("per_label") if isinstance(
                model.metrics.get("validation"), dict) else None
            per_label = {k: v for k, v in recorded.items() if isinstance(v, dict)} if isinstance(recorded, dict) else {}
            source = "as recorded when trained"
        quality = ""
        if per_label:
            cells_html = "".join(
                f"<tr><td>{esc(name)}</td><td>{fmt_weight(row.get('precision'))}</td><td>{fmt_weight(row.get('recall'))}"
                f"</td><td>{fmt_weight(row.get('f1'))}</td><td>{esc(row.get('support', ''))}</td></tr>"
                for name, row in per_label.items()
            )
            quality = (f"<h4>Validation at these thresholds <small class=muted>({esc(source)})</small></h4>"
                       "<table class=hy><tr><th>label</th><th>precision</th><th>recall</th><th>F1</th><th>images</th>"
                       f"</tr>{cells_html}</table>")
        rules = validation_summary(model.metrics).threshold_rules
        explained = "".join(f"<li><b>{esc(label)}</b>: {esc(rule)}</li>" for label, rule in rules.items())
        return ("<table class=hy><tr><th>label</th><th>threshold</th><th>F1 at threshold</th><th>changed (UTC)</th>"
                f"<th>by</th></tr>{body}</table>"
                + (f"<h4>How training chose them</h4><ul>{explained}</ul>" if explained else "") + quality
                + (f"<h4>Changes</h4><table class=hy><tr><th>when (UTC)</th><th>label</th><th>value</th><th>by</th>"
                   f"</tr>{history}</table>" if history else ""))

    @param.depends("model_id", watch=True)
    def _render(self) -> None:
        self.feedback.visible = False
        self.models_pane.object = self.models_html()
        model = self.selected()
        self.backtest.show(model)
        self.challenger.show(model)
        info = self.store.plot_type(self.plot_type)
        recent = window(SUGGESTION_HOURS)[0]  # bounded: the count reads every classification of the window
        self.suggestions_pane.object = suggestions_html(self.store.suggestions(info.name, since=recent)) if info else ""
        self.training.show(info.id if info else None)
        if model is None or info is None:
            self.details_pane.object = self.warnings_pane.object = ""
            self.tabs[:] = [("Reference", self.reference), ("Mask", self.masks)] if info is not None else []
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
        summary = validation_summary(model.metrics)
        self.warnings_pane.object = warnings_html(summary)
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
        self._render_thresholds(model, reset=True)
        may_edit = self.store.can("edit_thresholds", model.plot_type_id)
        may_activate = self.store.can("activate_models", model.plot_type_id)
        for widget in (self.label_select, self.threshold_input, self.save_threshold, self.threshold_note):
            widget.visible = may_edit
        self.activate_button.visible = may_activate and not model.active
        notes = []
        if not may_edit:
            notes.append("Thresholds are read-only for you (needs the <code>edit_thresholds</code> permission).")
        if not may_activate and not model.active:
            notes.append("Activating a version needs the <code>activate_models</code> permission.")
        if may_activate and not model.active:  # before the button is pressed: its backtest's warnings (issue 15)
            notes += [f"{esc(n)} (Backtest tab)" for n in self.store.activation_notes(model.id) if n.startswith("warning")]
        self.permission_note.object = "".join(f"<p class=muted>{n}</p>" for n in notes)
        self.tabs[:] = [
            ("Confusion matrix", confusion_tab),
            ("Validation", html_pane(validation_html(summary, [lab.name for lab in info.labels]))),
            ("Backtest", self.backtest),
            ("Challenger", self.challenger),
            ("Loss & accuracy", curves_tab),
            ("Thresholds", pn.Column(self.thresholds_pane,
                                     pn.Row(self.label_select, self.threshold_input, self.save_threshold,
                                            self.threshold_note),
                                     sizing_mode="stretch_width")),
            ("Reference", self.reference),
            ("Mask", self.masks),
        ]

    def _render_thresholds(self, model: ModelInfo, *, reset: bool = False) -> None:
        """The thresholds table; with `reset` (another version) the form starts again with no label chosen."""
        thresholds = self.store.thresholds_of(model.id, model.plot_type_id)
        self.thresholds_pane.object = self.thresholds_html(model, thresholds)
        self._thresholds = thresholds
        chosen = self.label_select.value
        self.label_select.options = {CHOOSE: None, **{r.label: r.label_id for r in thresholds}}
        if reset or chosen not in {r.label_id for r in thresholds}:
            chosen = None
        self.label_select.value = chosen
        self._show_threshold()

    def __panel__(self) -> pn.viewable.Viewable:
        top = pn.Row(
            pn.widgets.Select.from_param(self.param.plot_type, width=260),
            pn.widgets.Select.from_param(self.param.model_id, width=320),
            self.activate_button,
            sizing_mode="stretch_width",
        )
        self.activate_button.margin = (24, 10, 10, 10)
        return pn.Column(top, self.suggestions_pane, self.training, self.feedback, self.models_pane, self.details_pane,
                         self.warnings_pane, self.permission_note, self.tabs, sizing_mode="stretch_width")
