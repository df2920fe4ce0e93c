"""The Labeler's queue selector: arrival order (the default), most uncertain, most novel, most unlike the
reference, disagreement (active vs challenger, or a backtest's candidate vs active with ``?backtest=ID``)
and likely mislabeled (the audit queue, answered with Confirm / Fix).  docs/labeling-queues.md.

Kept apart from `labeler.py`, which only asks this module for a page of tiles, a header and an empty-queue
message.  The ranked order is computed once when the queue is opened (and after each Apply); pages are
slices of it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import panel as pn

from hydra_assets.scores.queues import ARRIVAL, AUDIT, DISAGREEMENT, NOVEL, REFERENCE, UNCERTAIN
from panel_app.images import image_url
from panel_app.pages.common import empty_state, esc, html_pane
from panel_app.store import CatalogError, HydraStore, PermissionDenied
from panel_app.views_data import Tile

# What the selector shows -> the queue's name (also ?queue=NAME in the URL and the remembered setting).
QUEUE_OPTIONS = {
    "arrival order": ARRIVAL,
    "most uncertain": UNCERTAIN,
    "most novel": NOVEL,
    "most unlike the reference": REFERENCE,
    "disagreement: active vs challenger": DISAGREEMENT,
    "likely mislabeled (audit)": AUDIT,
}
TITLES = {v: k for k, v in QUEUE_OPTIONS.items()}
WHY_EMPTY = {
    UNCERTAIN: "no unlabeled queued image has a classification with label weights.",
    NOVEL: "no unlabeled queued image has a novelty score (the active model has no novelty calibration, or "
           "nothing is queued).",
    REFERENCE: "no unlabeled queued image has a reference score (choose a reference with "
               "<code>hydra reference set</code>).",
    DISAGREEMENT: "the challenger agrees with the active model on every unlabeled queued image it classified, or "
                  "the plot type has no challenger (<code>hydra model challenger</code>).",
    AUDIT: "no label is in doubt: every likely mislabeled image was confirmed or fixed, or no model version has "
           "checked its labels yet (<code>hydra label audit T</code>).",
}


def queue_from_args(args: Mapping[str, str]) -> tuple[str | None, int | None, str, dict[str, str]]:
    """(queue, backtest id, problem, the other arguments) from ``?queue=NAME``, ``?backtest=ID`` and
    ``?plot_type=NAME`` (with a queue: that plot type's queue, e.g. the training report's link to the audit
    queue); problem "" when all are fine."""
    queue, backtest, problem = None, None, ""
    rest = dict(args)
    raw = args.get("queue", "")
    if raw:
        if raw in TITLES:
            queue = raw
        else:
            problem = f"No queue named “{raw}” (one of: {', '.join(TITLES)}): showing arrival order."
    raw = args.get("backtest", "")
    if raw:
        if raw.strip().isdigit():
            backtest, queue = int(raw), DISAGREEMENT
        else:
            problem = f"“{raw}” is not a backtest number: showing the queue without it."
    if queue is not None and not {"run", "reason"} & set(args):
        plot_type = rest.pop("plot_type", "")  # not a retraining suggestion's link: just the plot type
        rest["queue_plot_type"] = plot_type
    return queue, backtest, problem, rest


class RankedQueues:
    """The ranked order of the open queue for the Labeler, and what to say about it."""

    def __init__(self, store: HydraStore, backtest_id: int | None = None) -> None:
        self.store = store
        self.backtest_id = backtest_id
        self.ids: list[int] = []
        self.audit_items: list = []
        self.audit = AuditPanel(store, self)

    def ranked(self, queue: str) -> bool:
        return queue != ARRIVAL

    def wanted_plot_type(self, args: Mapping[str, str]) -> int | None:
        """The plot type the URL asks for: the backtest's, or ``?plot_type=NAME`` given with a queue."""
        if self.backtest_id is not None:
            plot_type_id, _ids = self.store.backtest_queue(self.backtest_id)
            return plot_type_id
        name = args.get("queue_plot_type", "")
        return next((pt.id for pt in self.store.catalogue().values() if pt.name == name), None) if name else None

    def fetch(self, plot_type_id: int, queue: str, offset: int, page_size: int) -> list[Tile]:
        """A page of the ranked queue; its order is read again when `offset` is 0."""
        if queue == AUDIT:
            if offset == 0:
                self.audit_items = self.store.audit_queue(plot_type_id, limit=500)
            self.audit.show(plot_type_id, self.audit_items[offset: offset + page_size])
            return [Tile(a.image_id, plot_type_id, a.run, a.chunk, None) for a in  # type: ignore[arg-type]
                    self.audit_items[offset: offset + page_size]]
        self.audit.show(plot_type_id, [])
        if offset == 0:
            if queue == DISAGREEMENT and self.backtest_id is not None:
                owner, ids = self.store.backtest_queue(self.backtest_id)
                self.ids = ids if owner == plot_type_id else []
            else:
                self.ids = self.store.ranked_queue(plot_type_id, queue)
        return self.store.ranked_tiles(self.ids[offset: offset + page_size])

    def header(self, queue: str, plot_type_id: int | None) -> str:
        """What the ranked queue is (shown above the page); "" for arrival order."""
        if queue == ARRIVAL or plot_type_id is None:
            return ""
        if queue == DISAGREEMENT and self.backtest_id is not None:
            what = (f"images where backtest {self.backtest_id}'s candidate and the active version disagree "
                    "(alarms first)")
        elif queue == DISAGREEMENT:
            key = self.store.challenger_key(plot_type_id)
            what = f"images where the challenger{f' {esc(key)}' if key else ''} and the active version disagree"
        elif queue == AUDIT:
            key = self.store.audit_model_key(plot_type_id)
            what = (f"labeled images whose label the out-of-fold predictions of {esc(key or 'a model version')} "
                    "doubt, most likely mislabeled first: Confirm keeps the label, Fix stores another")
        else:
            what = f"unlabeled queued images, {esc(TITLES[queue])} first"
        count = len(self.audit_items) if queue == AUDIT else len(self.ids)
        return (f"<div class=suggest><b class=head>Queue: {esc(TITLES[queue])}</b> {what} · {count} image(s). "
                f'<a href="./labeler?queue=arrival">Arrival order instead</a></div>')

    def empty_message(self, queue: str, plot_name: str) -> str:
        if queue == DISAGREEMENT and self.backtest_id is not None:
            why = (f"backtest {self.backtest_id} does not exist, is of another plot type, or its candidate and the "
                   "active version agree on every image.")
        else:
            why = WHY_EMPTY[queue]
        return empty_state(f"Nothing in this queue: {TITLES[queue]} of {plot_name}", why,
                           "Pick another queue, or arrival order for every queued image.")


class AuditPanel(pn.viewable.Viewer):
    """The audit queue's rows: image, the label given, the suggested one, Confirm and one Fix per label."""

    def __init__(self, store: HydraStore, owner: RankedQueues) -> None:
        super().__init__()
        self.store = store
        self.owner = owner
        self.rows = pn.Column(sizing_mode="stretch_width", visible=False, css_classes=["audit-queue"])
        self.note = pn.pane.Alert("", visible=False, sizing_mode="stretch_width")
        self.on_change: Callable[[], None] | None = None  # the Labeler reloads its counts and page

    def show(self, plot_type_id: int, items: list) -> None:
        info = self.store.plot_type(plot_type_id)
        names = {lab.id: lab.name for lab in info.labels} if info else {}
        rows = []
        for item in items:
            given, suggested = names.get(item.given_label_id, "—"), names.get(item.suggested_label_id, "—")
            text = html_pane(
                f"<div class=audit-item data-image='{item.image_id}'><b>labeled {esc(given)}</b> · suggested "
                f"<b>{esc(suggested)}</b> · weight of the given label {item.self_confidence:.2f}<br>"
                f"<span class=muted>image {item.image_id} · run {item.run} · chunk {item.chunk} · "
                f"{esc(item.model_key)}</span></div>", width=420)
            picture = pn.pane.HTML(f"<img src='{image_url(item.image_id)}' width=96 height=96 "
                                   f"alt='image {item.image_id}'>", width=110)
            confirm = pn.widgets.Button(label=f"Confirm {given}", color="success", margin=(20, 5))
            confirm.on_click(lambda _e, c=item.check_id: self.answer(c, "confirm"))
            fixes = []
            order = sorted((lid for lid in names if lid != item.given_label_id),
                           key=lambda lid: (lid != item.suggested_label_id, lid))
            for label_id in order:
                fix = pn.widgets.Button(label=f"Fix: {names[label_id]}", margin=(20, 5),
                                        color="primary" if label_id == item.suggested_label_id else "default")
                fix.on_click(lambda _e, c=item.check_id, lid=label_id: self.answer(c, "fix", lid))
                fixes.append(fix)
            rows.append(pn.Row(picture, text, confirm, *fixes, sizing_mode="stretch_width"))
        self.rows.objects = rows
        self.rows.visible = bool(rows)

    def answer(self, check_id: int, action: str, label_id: int | None = None) -> str | None:
        """Store the expert's answer (checked and audited by the store); the row leaves the queue."""
        try:
            done = self.store.resolve_label_check(check_id, action, label_id)
        except PermissionDenied as refusal:
            self._say(f"Refused, nothing stored: {refusal}", "danger")
            return None
        except CatalogError as error:
            self._say(f"Nothing stored: {error}", "danger")
            return None
        if self.on_change is not None:
            self.on_change()
        self._say("Label kept (confirmed)." if done == "confirmed" else "Label fixed.", "success")
        return done

    def _say(self, text: str, kind: str) -> None:
        self.note.object, self.note.alert_type, self.note.visible = esc(text), kind, True

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(self.note, self.rows, sizing_mode="stretch_width")


def audit_link(store: HydraStore, plot_type_id: int | None) -> pn.pane.HTML:
    """The training report's line to the plot type's audit queue (likely mislabeled training images)."""
    info = store.plot_type(plot_type_id) if plot_type_id is not None else None
    if info is None:
        return html_pane("")
    href = f"./labeler?queue={AUDIT}&plot_type={info.name}"
    return html_pane(f"<p class=audit-link>Labels the out-of-fold predictions doubt: "
                     f"<a href=\"{esc(href)}\">the audit queue of {esc(info.name)}</a> (confirm or fix each).</p>")
