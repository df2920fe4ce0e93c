"""Training report: where a model version and the human label disagree, side by side; one click says who is right
(the model: relabel; the human: keep the label and record the review) or sets another label."""

from __future__ import annotations

import panel as pn
import param

from panel_app.images import image_url
from panel_app.pages.common import chip, empty_state, esc, fmt_time, fmt_weight, html_pane
from panel_app.store import CatalogError, HydraStore, PermissionDenied
from panel_app.views_data import Disagreement

PER_PAGE = 12

ITEM_CSS = """
.item { display: flex; gap: 12px; align-items: center; }
.item img { width: 220px; border-radius: 4px; background: #f6f8fa; }
.side { display: grid; grid-template-columns: auto auto; gap: 4px 12px; font-size: 0.9em; align-items: center; }
.weights span { display: inline-block; margin-right: 8px; }
"""


class ReportPage(pn.viewable.Viewer):
    plot_type = param.Selector(default=None, objects=[], label="Plot type")
    report_id = param.Selector(default=None, objects=[], label="Model version / report")
    split = param.Selector(default="", objects={"all splits": "", "validation": "validation", "train": "train"},
                           label="Split")
    page = param.Integer(default=0, bounds=(0, None))

    def __init__(self, store: HydraStore, **params) -> None:
        self.store = store
        super().__init__(**params)
        self.param.plot_type.objects = store.plot_type_options()
        self.items: list[Disagreement] = []
        self.total = 0
        self.header = html_pane("")
        self.feedback = pn.pane.Alert("", visible=False, sizing_mode="stretch_width")
        self.list = pn.Column(sizing_mode="stretch_width")
        if self.param.plot_type.objects:
            self.plot_type = next(iter(self.param.plot_type.names.values()))
        else:
            self._on_plot_type()

    @param.depends("plot_type", watch=True)
    def _on_plot_type(self) -> None:
        reports = self.store.reports(self.plot_type) if self.plot_type is not None else []
        self.param.report_id.objects = {
            f"{r.model_key} · {fmt_time(r.created_at)[:16]} · {r.n_disagreements}/{r.n_images} disagree": r.id
            for r in reports
        }
        new = reports[0].id if reports else None
        if new == self.report_id:
            self.load()
        else:
            self.report_id = new

    @param.depends("report_id", "split", watch=True)
    def _on_report(self) -> None:
        if self.page:
            self.page = 0
        else:
            self.load()

    @param.depends("page", watch=True)
    def load(self) -> None:
        if self.report_id is None:
            self.items, self.total = [], 0
        else:
            self.items, self.total = self.store.disagreements(self.report_id, limit=PER_PAGE,
                                                              offset=self.page * PER_PAGE, split=self.split or None)
        self._render()

    def fix(self, image_id: int, label_id: int | None) -> bool:
        """One-click fix of the human label; the store checks `label` permission on the image's plot type."""
        try:
            self.store.fix_label(image_id, label_id)
        except PermissionDenied as refusal:
            self._say(f"Refused, label unchanged: {refusal}", "danger")
            return False
        except CatalogError as error:
            self._say(str(error), "warning")
            return False
        info = self.store.plot_type(self.plot_type)
        label = info.label(label_id) if info else None
        self._say(f"Image {image_id} is now labeled {label.name if label else label_id}.", "success")
        self.load()
        return True

    def confirm(self, image_id: int) -> bool:
        """"Human is right": the label stays and the review is recorded, so the item no longer asks for a fix."""
        try:
            label_id = self.store.confirm_label(image_id)
        except PermissionDenied as refusal:
            self._say(f"Refused, nothing recorded: {refusal}", "danger")
            return False
        except CatalogError as error:
            self._say(str(error), "warning")
            return False
        info = self.store.plot_type(self.plot_type)
        label = info.label(label_id) if info else None
        self._say(f"Image {image_id} keeps its human label {label.name if label else label_id}; "
                  "recorded that the human is right.", "success")
        self.load()
        return True

    def _say(self, text: str, kind: str) -> None:
        self.feedback.object, self.feedback.alert_type, self.feedback.visible = esc(text), kind, True

    def _render(self) -> None:
        info = self.store.plot_type(self.plot_type)
        if info is None:
            self.header.object = empty_state("No plot types yet", "Start the demo with <code>hydra up</code>.")
            self.list[:] = []
            return
        if self.report_id is None:
            self.header.object = empty_state(
                f"No training report for {info.name} yet",
                "Training a model (<code>hydra train PLOT_TYPE</code>) writes a report of the images where the new "
                "model and the human label disagree.")
            self.list[:] = []
            return
        if not self.items:
            self.header.object = empty_state("No disagreement", "Model and human agree on every image of this report.")
            self.list[:] = []
            return
        may_label = self.store.can("label", info.id)
        first = self.page * PER_PAGE + 1
        self.header.object = (
            f"<p>Images {first}–{first + len(self.items) - 1} of {self.total} where the model disagrees with the "
            f"human label, most confident first.{'' if may_label else ' <b>Read only: you may not label ' + esc(info.name) + '.</b>'}</p>"
        )
        rows = []
        for item in self.items:
            human_then = info.label(item.human_label_id)
            human_now = info.label(item.current_label_id)
            model = info.label(item.model_label_id)
            weights = " ".join(f"<span>{esc(k)} {fmt_weight(v)}</span>" for k, v in sorted(
                item.weights.items(), key=lambda kv: -float(kv[1] or 0)))
            text = (
                f'<div class="item"><a href="{image_url(item.image_id, "full")}" target="_blank">'
                f'<img src="{image_url(item.image_id)}" alt="image {item.image_id}"></a>'
                f'<div class="side"><span>human (at training)</span><span>{chip(human_then.name if human_then else None, human_then.colour if human_then else None)}</span>'
                f'<span>human (now)</span><span>{chip(human_now.name if human_now else None, human_now.colour if human_now else None)}'
                f"{' ✓ fixed' if item.fixed else ''}{' ✓ human is right' if item.human_confirmed else ''}</span>"
                f'<span>model</span><span>{chip(model.name if model else None, model.colour if model else None)} '
                f"{fmt_weight(item.model_weight)}</span>"
                f"<span>weights</span><span class=weights>{weights}</span>"
                f"<span>image</span><span>run {item.run} · chunk {item.chunk} · {esc(item.split)}</span></div></div>"
            )
            # two equal choices: the page does not know who is right, so neither is the obvious button
            settled = item.fixed or item.human_confirmed
            fix_button = pn.widgets.Button(label=f"Model is right: {model.name}" if model else "no model label",
                                           disabled=model is None or settled, width=220)
            fix_button.on_click(lambda _e, i=item.image_id, m=item.model_label_id: self.fix(i, m))
            keep_button = pn.widgets.Button(
                label=f"Human is right: {human_now.name}" if human_now else "no human label",
                disabled=human_now is None or settled, width=220)
            keep_button.on_click(lambda _e, i=item.image_id: self.confirm(i))
            other = pn.widgets.Select(options={lab.name: lab.id for lab in info.labels}, width=120,
                                      value=item.current_label_id if item.current_label_id else info.labels[0].id)
            set_button = pn.widgets.Button(label="Set", width=60)
            set_button.on_click(lambda _e, i=item.image_id, w=other: self.fix(i, w.value))
            rows.append(pn.Row(html_pane(text, stylesheets=[ITEM_CSS], width=720),
                               pn.Column(fix_button, keep_button, pn.Row(other, set_button)),
                               sizing_mode="stretch_width"))
        self.list[:] = rows

    def next_page(self, _event=None) -> None:
        if (self.page + 1) * PER_PAGE < self.total:
            self.page += 1

    def previous_page(self, _event=None) -> None:
        if self.page:
            self.page -= 1

    def __panel__(self) -> pn.viewable.Viewable:
        prev_button = pn.widgets.Button(label="◀ Previous", margin=(24, 6, 10, 6))
        next_button = pn.widgets.Button(label="Next ▶", margin=(24, 6, 10, 6))
        prev_button.on_click(self.previous_page)
        next_button.on_click(self.next_page)
        controls = pn.Row(pn.widgets.Select.from_param(self.param.plot_type, width=260),
                          pn.widgets.Select.from_param(self.param.report_id, width=420),
                          pn.widgets.Select.from_param(self.param.split, width=140), prev_button, next_button)
        from panel_app.pages.labeler_queues import audit_link  # the audit queue (likely mislabeled), one line

        return pn.Column(controls, pn.bind(audit_link, self.store, self.param.plot_type), self.feedback, self.header,
                         self.list, sizing_mode="stretch_width")
