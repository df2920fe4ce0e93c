"""Realistic Hydra rows for the pages' tests and screenshots, inserted directly through the models.

`populate(db, settings)` builds a small experiment as the pipeline and training would leave it: plot
types in groups and systems, users of every role, two model versions per plot type with thresholds,
curves and a validation report, classified images (PNG files drawn with Pillow) with GradCAM heatmaps
for Bad ones, keep decisions and the Labeler queue, run-time rows, alarms, stage timings, heartbeats
and news.  `add_bad_image` plays the pipeline delivering one new confirmed Bad.
"""

from __future__ import annotations

import functools
import html
import io
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from PIL import Image as PILImage
from PIL import ImageDraw
from sqlalchemy import select

from hydra_assets import catalog
from hydra_assets.db.engine import HydraDB
from hydra_assets.db.models import (
    Alarm,
    Heartbeat,
    Image,
    Inference,
    KeepDecision,
    LabelHistory,
    Model,
    NewsLine,
    Run,
    RunTime,
    StageTiming,
    Threshold,
    TrainingReport,
    TrainingReportItem,
    TrainingSet,
    TrainingSetItem,
    utcnow,
)
from hydra_assets.settings import HydraSettings

# name, labels, bad labels, groups, super group
PLOT_TYPES = [
    ("CDC_occupancy", ["Good", "Bad", "NoData"], ["Bad", "NoData"], ["CDC"], "Tracking"),
    ("FDC_efficiency", ["Good", "Bad"], ["Bad"], ["FDC"], "Tracking"),
    ("RF_FDC_selftiming", ["Good", "Bad"], ["Bad"], ["FDC"], "Tracking"),
    ("BCAL_energy", ["Good", "Bad", "Hot"], ["Bad", "Hot"], ["BCAL"], "Calorimetry"),
    ("FCAL_hits", ["Good", "Bad"], ["Bad"], ["FCAL"], "Calorimetry"),
    ("TOF_timing", ["Good", "Bad"], ["Bad"], [], None),
]


def plot_types_for(style: str) -> list[tuple[str, list[str], list[str], list[str], str | None]]:
    """The plot types to create: the tests' own, or the demo experiment's (style "simulate")."""
    if style == "simulate":
        from hydra_assets.simulate import DEMO_PLOT_TYPES

        return [(p.name, list(p.labels), list(p.bad), [p.group], p.super_group) for p in DEMO_PLOT_TYPES]
    return PLOT_TYPES


USERS = {"admin": "admin", "labeler": "labeler", "expert": "expert", "viewer": "viewer"}  # name -> role
PASSWORDS = {name: f"{name}-pw" for name in USERS}

# What each page says on an empty database (checked without a browser and in Chromium).
EMPTY_MESSAGES = {
    "run": "No images yet",
    "log": "Nothing flagged",
    "library": "No plot types yet",
    "labeler": "No plot types yet",
    "map": "No plot types yet",
    "status": "No pipeline activity",
    "browser": "No images yet",
    "trends": "No plot types yet",
    "report": "No plot types yet",
    "compare": "No images to compare yet",
    "runs": "No runs yet",
    "alarms": "No alarm matches these filters",
}


def isolated_settings(home: Path, db_url: str | None = None) -> HydraSettings:
    """Settings whose every location lies in `home`, whatever HYDRA_* variables the environment holds."""
    from hydra_assets.settings import load_settings

    return load_settings(home=home, db_url=db_url or f"sqlite:///{home / 'hydra.db'}", images_dir=home / "images",
                         kept_dir=home / "kept", gradcam_dir=home / "gradcam",
                         mlflow_tracking_uri=f"sqlite:///{home / 'mlflow.db'}")


def template_database(home: Path, make: Callable[[HydraDB, HydraSettings], Any]) -> tuple[HydraSettings, Any]:
    """A SQLite Hydra database under `home` with the schema and what `make(db, settings)` writes: made once
    per module, then copied for each test (`database_copy`)."""
    from hydra_assets.db.migrate import upgrade

    settings = isolated_settings(home)
    upgrade(settings.db_url)
    db = HydraDB(settings.db_url)
    try:
        return settings, make(db, settings)
    finally:
        db.dispose()


def database_copy(settings: HydraSettings, folder: Path) -> tuple[HydraDB, HydraSettings]:
    """A private copy of a template database in `folder` (tests may write; the images stay shared, read only)."""
    copy = folder / "hydra.db"
    shutil.copyfile(settings.home / "hydra.db", copy)
    settings = settings.model_copy(update={"db_url": f"sqlite:///{copy}"})
    return HydraDB(settings.db_url), settings


def page_store(db: HydraDB, settings: HydraSettings, user: str | None = "labeler"):  # type: ignore[no-untyped-def]
    """A page store for `user` over `db`, with the cache shared between sessions emptied first."""
    from panel_app.config import PagesConfig
    from panel_app.store import SHARED, HydraStore

    SHARED.clear()
    return HydraStore(db, PagesConfig(settings=settings, sync_mlflow_alias=False), user=user)


def browser_markup(viewable: Any) -> list[str]:
    """Every string the browser inserts *as HTML* when it shows `viewable` (hidden parts included).

    The page is rendered to its Bokeh models, as a session would send them: the innerHTML of every HTML,
    Markdown and Alert pane (Panel ships it entity-encoded and decodes it in the browser; Markdown already
    converted, raw HTML in it kept) and the option labels of every MultiChoice (Choices.js renders them
    with innerHTML).  Other widgets (Select, buttons, tabs) and Bokeh figures set their text as text.
    """
    import panel as pn
    from bokeh.models import MultiChoice
    from panel.models.markup import HTML

    root = pn.panel(viewable).get_root()
    markup = [html.unescape(model.text or "") for model in root.select({"type": HTML})]
    for model in root.select({"type": MultiChoice}):
        markup += [option if isinstance(option, str) else option[1] for option in model.options]
    return markup


def html_table_columns(viewable: Any) -> list[str]:
    """Columns of Tabulator / DataFrame widgets whose cells are inserted as HTML (the 'html' Tabulator
    formatter or an HTMLTemplateFormatter, whose `<%= value %>` does not escape); the default
    StringFormatter and NumberFormatter render text."""
    import panel as pn
    from bokeh.models import DataTable, HTMLTemplateFormatter
    from panel.models.tabulator import DataTabulator

    root = pn.panel(viewable).get_root()
    found = []
    for table in root.select({"type": DataTabulator}):
        for column in table.columns:
            spec = column.formatter  # a plain spec ({"type": ...}) or a Bokeh formatter model
            if (spec.get("type") if isinstance(spec, dict) else type(spec).__name__) == "HTMLTemplateFormatter":
                found.append(column.field)
        for column in table.configuration.get("columns", []):
            if column.get("formatter") == "html":
                found.append(column["field"])
    for table in root.select({"type": DataTable}):
        found += [c.field for c in table.columns if isinstance(c.formatter, HTMLTemplateFormatter)]
    return found


class _ActiveMarkup(HTMLParser):
    URL_ATTRIBUTES = ("href", "src", "action", "formaction", "xlink:href")

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "iframe", "object", "embed"):
            self.found.append(f"<{tag}>")
        for name, value in attrs:
            if name.startswith("on"):
                self.found.append(f"<{tag} {name}=...>")
            elif name in self.URL_ATTRIBUTES and (value or "").strip().lower().startswith("javascript:"):
                self.found.append(f"<{tag} {name}=javascript:...>")


def active_markup(markup: str) -> list[str]:
    """Elements in `markup` that run code in a browser: script-like tags, on* handlers, javascript: URLs."""
    parser = _ActiveMarkup()
    parser.feed(markup)
    parser.close()
    return parser.found


def draw_plot(seed: int, *, bad: bool = False, size: tuple[int, int] = (320, 240), title: str = "") -> bytes:
    """A monitoring-plot-like PNG: a histogram with axes; Bad ones have a dead region or a spike."""
    rng = random.Random(seed)
    width, height = size
    image = PILImage.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    left, bottom, top = 30, height - 22, 22
    draw.line([(left, top), (left, bottom), (width - 8, bottom)], fill="black", width=1)
    if title:
        draw.text((left + 4, 4), title[:40], fill="#333333")
    bins = 40
    step = (width - left - 12) / bins
    centre, spread = rng.uniform(0.35, 0.65) * bins, rng.uniform(6, 11)
    dead = range(rng.randrange(5, 25), rng.randrange(27, 38)) if bad else range(0)
    spike = rng.randrange(bins) if bad and rng.random() < 0.5 else -1
    for i in range(bins):
        value = 2.718 ** (-((i - centre) ** 2) / (2 * spread**2)) * rng.uniform(0.85, 1.0)
        if i in dead and spike < 0:
            value = 0.02
        if i == spike:
            value = 1.0
        x0 = left + 2 + i * step
        y0 = min(bottom - 2, bottom - value * (bottom - top - 6))
        draw.rectangle([x0, y0, x0 + step - 1, bottom - 1], fill="#3b78c4", outline="#1d4f91")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@functools.lru_cache(maxsize=64)
def _cached_plot(variant: int, bad: bool) -> bytes:
    """The tests need many files, not many drawings: 24 variants of Good and of Bad."""
    return draw_plot(variant, bad=bad)


def draw_gradcam(seed: int, size: tuple[int, int] = (320, 240), centre: tuple[int, int] | None = None) -> bytes:
    """A GradCAM-like heatmap: a warm blob on transparent background (what the overlay toggle shows)."""
    rng = random.Random(seed)
    width, height = size
    image = PILImage.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    cx, cy = centre or (rng.randrange(width // 4, 3 * width // 4), rng.randrange(height // 4, 3 * height // 4))
    for r, alpha in ((90, 60), (65, 110), (40, 170), (20, 220)):
        colour = (255, int(200 - alpha * 0.8), 0, alpha)
        draw.ellipse([cx - r, cy - r * 0.7, cx + r, cy + r * 0.7], fill=colour)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@dataclass
class Demo:
    """Ids of what `populate` made, for assertions."""

    plot_types: dict[str, int] = field(default_factory=dict)
    labels: dict[str, dict[str, int]] = field(default_factory=dict)
    users: dict[str, int] = field(default_factory=dict)
    models: dict[str, list[int]] = field(default_factory=dict)  # plot type -> [old, active]
    images: dict[str, list[int]] = field(default_factory=dict)
    queue: dict[str, list[int]] = field(default_factory=dict)  # unlabeled queued images per plot type
    reports: dict[str, int] = field(default_factory=dict)
    now: datetime = field(default_factory=utcnow)


def _write(folder: Path, relative: str, data: bytes) -> Path:
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _weights(rng: random.Random, labels: list[str], truth: str, confident: bool) -> dict[str, float]:
    raw = {lab: rng.uniform(0.0, 0.15) for lab in labels}
    raw[truth] = rng.uniform(0.8, 0.99) if confident else rng.uniform(0.35, 0.6)
    total = sum(raw.values())
    return {lab: round(w / total, 4) for lab, w in raw.items()}


def populate(
    db: HydraDB,
    settings: HydraSettings,
    *,
    runs: tuple[int, ...] = (121262, 121263, 121264),
    chunks: int = 4,
    queue_extra: int = 40,
    seed: int = 7,
    now: datetime | None = None,
    style: str = "pillow",
) -> Demo:
    """Fill an empty, migrated Hydra database with a small but complete experiment (all in one transaction).

    `style` "pillow" draws simple histograms (fast, for tests); "simulate" uses the demo experiment's plot
    types and `hydra_assets.simulate.generate_image` (realistic, for screenshots).
    """
    rng = random.Random(seed)
    plot_types = plot_types_for(style)
    now = now or utcnow()
    demo = Demo(now=now)
    images_dir, gradcam_dir, kept_dir = settings.images_dir, settings.gradcam_dir, settings.kept_dir
    for folder in (images_dir, gradcam_dir, kept_dir):
        folder.mkdir(parents=True, exist_ok=True)

    def work(s) -> None:  # type: ignore[no-untyped-def]
        roles = catalog.ensure_roles(s)
        for name, role in USERS.items():
            demo.users[name] = catalog.add_user(s, name, role=role, full_name=name.title()).id
        for name, labels, bad, groups, system in plot_types:
            pt = catalog.add_plot_type(s, name, labels, bad, groups=groups, super_group=system,
                                       description=f"{name.replace('_', ' ')} monitoring plot")
            demo.plot_types[name] = pt.id
            demo.labels[name] = {lab.name: lab.id for lab in pt.labels}
        assert roles
        s.flush()
        run_index = {run: i for i, run in enumerate(runs)}
        start = now - timedelta(hours=20)
        total_chunks = len(runs) * chunks
        for run in runs:
            s.add(Run(number=run, first_seen=start, last_seen=now, image_count=chunks * len(plot_types),
                      conditions={"beam": "on", "target": "LH2"}))
        for p_index, (name, labels, bad_names, _g, _sg) in enumerate(plot_types):
            pt_id, label_ids = demo.plot_types[name], demo.labels[name]
            # training: a training set, two model versions, thresholds, a validation report
            tset = TrainingSet(plot_type_id=pt_id, created_at=now - timedelta(days=3), sampling="balanced", seed=seed,
                               n_train=0, n_validation=24, label_counts={lab: 24 // len(labels) for lab in labels})
            s.add(tset)
            s.flush()
            model_ids = []
            for version in (1, 2):
                epochs = 12
                history = {
                    "loss": [round(1.2 * 0.78**e + rng.uniform(0, 0.03), 4) for e in range(epochs)],
                    "val_loss": [round(1.25 * 0.8**e + 0.05 + rng.uniform(0, 0.05), 4) for e in range(epochs)],
                    "accuracy": [round(min(0.99, 0.5 + 0.045 * e + rng.uniform(0, 0.02)), 4) for e in range(epochs)],
                    "val_accuracy": [round(min(0.98, 0.48 + 0.042 * e + rng.uniform(0, 0.03)), 4) for e in range(epochs)],
                }
                model = Model(
                    plot_type_id=pt_id, mlflow_name=f"hydra-{name}", mlflow_version=str(version),
                    mlflow_run_id=f"{p_index:02d}{version:02d}" + "ab" * 14, model_uri=f"models:/hydra-{name}/{version}",
                    topology="compact" if version == 1 else "inceptionv3", input_height=128, input_width=128,
                    label_names=labels, training_set_id=tset.id, training_set_size=24, sampling="balanced",
                    metrics={"history": history, "val_accuracy": history["val_accuracy"][-1]},
                    created_at=now - timedelta(days=3 - version), created_by="expert", active=version == 2,
                    activated_at=now - timedelta(days=1) if version == 2 else None,
                    activated_by="expert" if version == 2 else "",
                )
                s.add(model)
                s.flush()
                model_ids.append(model.id)
                for lab in labels:
                    s.add(Threshold(model_id=model.id, label_id=label_ids[lab], value=0.7 if lab in bad_names else 0.75,
                                    f1=round(rng.uniform(0.8, 0.97), 3), changed_by="training"))
            demo.models[name] = model_ids
            active_id = model_ids[-1]
            model_key = f"hydra-{name}/2"
            # images of every run and chunk, classified by the active model
            demo.images[name], demo.queue[name] = [], []
            last = None
            for run in runs:
                for chunk in range(1, chunks + 1):
                    n = run_index[run] * chunks + chunk - 1
                    at = start + timedelta(hours=20 * (n + 0.5) / total_chunks, minutes=p_index)
                    roll = rng.random()
                    truth = labels[0] if roll < 0.62 else (bad_names[0] if roll < 0.85 else labels[-1])
                    confident = rng.random() < 0.75
                    weights = _weights(rng, labels, truth, confident)
                    image, inference = _classified_image(
                        s, settings, name, pt_id, label_ids, bad_names, run, chunk, weights, at, active_id, model_key,
                        seed=seed * 1000 + p_index * 100 + n, style=style,
                    )
                    demo.images[name].append(image.id)
                    if image.queue_priority is not None and rng.random() < 0.4:  # some already labeled by a human
                        _label(s, image, label_ids[truth], demo.users["labeler"], at + timedelta(minutes=30))
                    elif image.queue_priority is not None:
                        demo.queue[name].append(image.id)
                    last = (image, inference)
                    for stage, base in (("feeder", 350.0), ("predict", 1800.0), ("keeper", 220.0)):
                        duration = base * rng.uniform(0.6, 1.8)
                        s.add(StageTiming(stage=stage, plot_type_id=pt_id, run_number=run, chunk=chunk, image_count=1,
                                          started_at=at, finished_at=at + timedelta(milliseconds=duration),
                                          duration_ms=round(duration, 1), dagster_run_id=f"dr{n:04d}"))
            assert last is not None
            s.add(RunTime(plot_type_id=pt_id, image_id=last[0].id, inference_id=last[1].id,
                          run_number=last[0].run_number, chunk=last[0].chunk, updated_at=last[1].classified_at))
            if p_index == 0:  # a deep Labeler queue for the first plot type (collected, priority 1)
                for k in range(queue_extra):
                    at = start + timedelta(minutes=10 + k)
                    weights = _weights(rng, labels, labels[0], True)
                    image, _ = _classified_image(
                        s, settings, name, pt_id, label_ids, bad_names, runs[-1], 100 + k, weights, at, active_id,
                        model_key, seed=seed * 7000 + k, collect=True, style=style,
                    )
                    demo.images[name].append(image.id)
                    demo.queue[name].append(image.id)
            # the validation report: agreements and disagreements with the human label
            report = TrainingReport(model_id=active_id, created_at=now - timedelta(days=1), mlflow_run_id="r" * 32)
            s.add(report)
            s.flush()
            n_dis = 0
            for k in range(24):
                truth = labels[k % len(labels)]
                agree = rng.random() < 0.7
                predicted = truth if agree else rng.choice([lab for lab in labels if lab != truth])
                weights = _weights(rng, labels, predicted, rng.random() < 0.7)
                image, _box = _plain_image(s, settings, name, pt_id, 0, 500 + k, at=now - timedelta(days=2),
                                           seed=seed * 9000 + p_index * 50 + k, truth=truth, bad=truth in bad_names,
                                           style=style)
                demo.images[name].append(image.id)
                _label(s, image, label_ids[truth], demo.users["expert"], now - timedelta(days=2))
                s.add(TrainingSetItem(training_set_id=tset.id, image_id=image.id, label_id=label_ids[truth],
                                      split="validation"))
                s.add(TrainingReportItem(report_id=report.id, image_id=image.id, split="validation",
                                         human_label_id=label_ids[truth], model_label_id=label_ids[predicted],
                                         model_weight=weights[predicted], weights=weights))
                n_dis += predicted != truth
            report.n_images, report.n_disagreements = 24, n_dis
            demo.reports[name] = report.id
        for stage in ("sensor", "feeder", "predict", "keeper"):
            s.add(Heartbeat(stage=stage, beat_at=now - timedelta(seconds=rng.randrange(2, 40)), detail="ok"))
        s.add(NewsLine(text="Beam back at 14:05 <b>after</b> RF trip — expect FDC timing shifts", created_by="admin",
                       created_at=now - timedelta(minutes=20)))

    db.write(work, what="populate demo")
    return demo


def _plain_image(s, settings, name, pt_id, run, chunk, *, at, seed, truth=None, bad=False,  # type: ignore[no-untyped-def]
                 style="pillow"):
    """Draw and register one image; returns it with the centre of its defect (or None)."""
    box, size = None, (320, 240)
    if style == "simulate":
        from hydra_assets.simulate import generate_image

        data, record = generate_image(name, run=max(run, 1), chunk=chunk, label=truth, seed=seed)
        size = (record["width"], record["height"])
        if record["defect_box"]:
            x0, y0, x1, y1 = record["defect_box"]
            box = ((x0 + x1) // 2, (y0 + y1) // 2)
    else:
        data = _cached_plot(seed % 24, bad)
    path = _write(settings.images_dir, f"{name}/{run}/{name}-{run}-{chunk:04d}-{seed:08d}.png", data)
    image = Image(plot_type_id=pt_id, run_number=run, chunk=chunk, digest=f"{seed:064d}", file_name=path.name,
                  stored_path=str(path), size_bytes=len(data), width=size[0], height=size[1], received_at=at,
                  status="registered")
    s.add(image)
    s.flush()
    return image, (box, size)


def _classified_image(s, settings, name, pt_id, label_ids, bad_names, run, chunk, weights, at, model_id, model_key,
                      *, seed, collect=False, style="pillow"):  # type: ignore[no-untyped-def]
    top = max(weights, key=weights.get)
    is_bad = top in bad_names
    thresholds = {lab: (0.7 if lab in bad_names else 0.75) for lab in weights}
    confirmed = weights[top] >= thresholds[top]
    flagged = (confirmed and is_bad) or not confirmed
    image, (centre, size) = _plain_image(s, settings, name, pt_id, run, chunk, at=at, seed=seed, truth=top, bad=is_bad,
                                         style=style)
    gradcam = None
    if is_bad:
        heatmap = draw_gradcam(seed, size, centre)
        gradcam = str(_write(settings.gradcam_dir, f"{name}/{run}/{image.id}-gradcam.png", heatmap))
    inference = Inference(
        image_id=image.id, plot_type_id=pt_id, run_number=run, chunk=chunk, model_id=model_id, model_key=model_key,
        status="classified", weights=weights, top_label_id=label_ids[top], top_weight=weights[top],
        confirmed=confirmed, is_bad=is_bad, flagged=flagged, gradcam_path=gradcam,
        classified_at=at + timedelta(seconds=20), feed_ms=300.0, predict_ms=1500.0, keep_ms=200.0,
    )
    s.add(inference)
    s.flush()
    reason = "bad" if confirmed and is_bad else "unconfirmed" if not confirmed else ("collect" if collect else None)
    s.add(KeepDecision(inference_id=inference.id, image_id=image.id, keep=reason is not None, reason=reason,
                       kept_path=image.stored_path if reason else None, decided_at=inference.classified_at))
    if reason in ("bad", "unconfirmed"):
        image.queue_priority = 0
    elif reason == "collect":
        image.queue_priority = 1
    if confirmed and is_bad:
        s.add(Alarm(inference_id=inference.id, image_id=image.id, plot_type_id=pt_id, label_id=label_ids[top],
                    message=f"{name} run {run} chunk {chunk}: {top}, weight {weights[top]:.2f} ≥ threshold "
                            f"{thresholds[top]:.2f}",  # as ingest/keeper.alarm_message words it
                    raised_at=inference.classified_at))
    return image, inference


def _label(s, image: Image, label_id: int, user_id: int, at: datetime) -> None:  # type: ignore[no-untyped-def]
    s.add(LabelHistory(image_id=image.id, label_id=label_id, previous_label_id=None, user_id=user_id, labeled_at=at,
                       source="labeler"))
    image.label_id, image.labeled_at, image.labeled_by, image.queue_priority = label_id, at, user_id, None


def add_bad_image(db: HydraDB, settings: HydraSettings, plot_type: str, run: int, chunk: int, *, seed: int = 99,
                  style: str = "pillow") -> int:
    """Play the pipeline delivering a new confirmed Bad: image, inference, keep, run-time row and alarm."""

    def work(s) -> int:  # type: ignore[no-untyped-def]
        pt = catalog.get_plot_type(s, plot_type)
        labels = catalog.labels_of(s, pt)
        label_ids = {lab.name: lab.id for lab in labels}
        bad_names = [lab.name for lab in labels if lab.is_bad]
        model = s.scalar(select(Model).where(Model.plot_type_id == pt.id, Model.active.is_(True)))
        weights = {lab.name: 0.01 for lab in labels}
        weights[bad_names[0]] = 0.97
        now = utcnow()
        image, inference = _classified_image(
            s, settings, plot_type, pt.id, label_ids, bad_names, run, chunk, weights, now - timedelta(seconds=20),
            model.id if model else None, model.key if model else "none", seed=seed, style=style,
        )
        _show_on_run_page(s, pt.id, image, inference, now)
        return image.id

    return db.write(work, what="add bad image")


def _show_on_run_page(s, plot_type_id: int, image: Image, inference: Inference, now: datetime) -> None:  # type: ignore[no-untyped-def]
    """The image becomes its plot type's Run card, as the Keeper's run-time row makes it."""
    row = s.get(RunTime, plot_type_id)
    if row is None:
        s.add(RunTime(plot_type_id=plot_type_id, image_id=image.id, inference_id=inference.id,
                      run_number=image.run_number, chunk=image.chunk, updated_at=now))
    else:
        row.image_id, row.inference_id, row.run_number, row.chunk, row.updated_at = (
            image.id, inference.id, image.run_number, image.chunk, now)


def make_users_only(db: HydraDB) -> dict[str, int]:
    """Roles and the four users, nothing else (the 'empty database' of the page tests)."""

    def work(s) -> dict[str, int]:  # type: ignore[no-untyped-def]
        catalog.ensure_roles(s)
        return {name: catalog.add_user(s, name, role=role).id for name, role in USERS.items()}

    return db.write(work, what="users")


def add_novel_image(db: HydraDB, settings: HydraSettings, plot_type: str, run: int, chunk: int, *, seed: int = 77,
                    novelty: float = 4.2, limit: float = 1.5, style: str = "pillow",
                    ago: timedelta = timedelta(0)) -> int:
    """Play the pipeline delivering an image unlike the active model's training data: its top weight is
    confident, but its novelty score is above the limit, so it is kept as `novel`, queued, and raises no alarm.
    It becomes the plot type's Run card.  Returns the image id."""

    def work(s) -> int:  # type: ignore[no-untyped-def]
        pt = catalog.get_plot_type(s, plot_type)
        labels = catalog.labels_of(s, pt)
        model = s.scalar(select(Model).where(Model.plot_type_id == pt.id, Model.active.is_(True)))
        good = labels[0]
        weights = {lab.name: 0.02 for lab in labels}
        weights[good.name] = 0.95
        now = utcnow() - ago
        image, _box = _plain_image(s, settings, plot_type, pt.id, run, chunk, at=now - timedelta(seconds=20),
                                   seed=seed, truth=good.name, style=style)
        inference = Inference(
            image_id=image.id, plot_type_id=pt.id, run_number=run, chunk=chunk, model_id=model.id if model else None,
            model_key=model.key if model else "none", status="classified", weights=weights, top_label_id=good.id,
            top_weight=weights[good.name], confirmed=False, is_bad=False, flagged=True, novelty=novelty,
            novelty_limit=limit, classified_at=now, feed_ms=300.0, predict_ms=1500.0, keep_ms=200.0,
        )
        s.add(inference)
        s.flush()
        s.add(KeepDecision(inference_id=inference.id, image_id=image.id, keep=True, reason="novel",
                           kept_path=image.stored_path, decided_at=now))
        image.queue_priority = 0
        _show_on_run_page(s, pt.id, image, inference, now)
        return image.id

    return db.write(work, what="add novel image")


VALIDATION_METRICS = {  # what the thresholds step and the novelty calibration write into Model.metrics
    "validation": {
        "split": "runs", "runs": [121250, 121251], "n_runs": 2, "unconfirmed_rate": 0.3,
        "per_run": {"121250": {"images": 12, "bad": 3, "accuracy": 0.917, "bad_recall": 1.0, "false_alarms": 0.0,
                               "unconfirmed": 0.083},
                    "121251": {"images": 10, "bad": 1, "accuracy": 0.8, "bad_recall": 0.0, "false_alarms": 0.1,
                               "unconfirmed": 0.2}},
        "warnings": ["validation holds only 2 runs: figures say little about the next run",
                     "validation holds only 4 Bad images"],
        "precision_target": 0.95,
        "threshold_rules": {"Good": "max F1 on the run-held-out validation (0.75)",
                            "Bad": "lowest threshold whose confirmed precision reaches 0.95 (max F1 landed at 0.50)"},
    },
    "novelty": {"limit": 1.5, "quantile": 0.99, "neighbours": 5, "method": "knn-embedding", "validation_rate": 0.02,
                "train_images": 24},
}


def add_novel_run(db: HydraDB, settings: HydraSettings, plot_type: str, run: int, *, images: int = 12,
                  novel: int = 10, seed: int = 500, style: str = "pillow") -> list[int]:
    """A run the active model is out of its depth on: `novel` of `images` images unlike its training data,
    and the model's metrics saying what validation predicts (so `retraining_suggestions` names this run).
    Returns the ids of the novel images."""
    novel_ids = []
    for k in range(images):  # the novel ones last: the plot type's Run card is novel
        if k >= images - novel:
            novel_ids.append(add_novel_image(db, settings, plot_type, run, k + 1, seed=seed + k, style=style,
                                             novelty=2.0 + k * 0.3, ago=timedelta(minutes=4 * (images - k - 1))))
        else:
            add_novel_image(db, settings, plot_type, run, k + 1, seed=seed + k, style=style, novelty=0.5,
                            ago=timedelta(minutes=4 * (images - k - 1)))

    def fix(s) -> None:  # type: ignore[no-untyped-def]
        pt = catalog.get_plot_type(s, plot_type)
        model = s.scalar(select(Model).where(Model.plot_type_id == pt.id, Model.active.is_(True)))
        model.metrics = {**dict(model.metrics or {}), **VALIDATION_METRICS}
        # the images under the limit are ordinary confirmed Good ones
        for inference in s.scalars(select(Inference).where(Inference.plot_type_id == pt.id,
                                                           Inference.run_number == run, Inference.novelty < 1.5)):
            inference.confirmed, inference.flagged = True, False
            decision = s.scalar(select(KeepDecision).where(KeepDecision.inference_id == inference.id))
            decision.reason, decision.keep = None, False
            s.get(Image, inference.image_id).queue_priority = None

    db.write(fix, what="novel run")
    return novel_ids


# ---- the reference comparison (issue 14) ------------------------------------------------------------


def add_reference(db: HydraDB, settings: HydraSettings, plot_type: str, runs: list[int], *, by: str = "expert"
                  ) -> dict[str, Any]:
    """A reference for `plot_type` made of `runs` as an expert would choose it, and every image of the plot type
    scored against it, as the pipeline's reference step leaves them (`hydra_assets.references`).

    Returns {"version", "limit", "scores": {image id: (score, flagged)}}."""
    from hydra_assets import references
    from hydra_assets.db.models import PlotType

    def work(s) -> dict[str, Any]:  # type: ignore[no-untyped-def]
        change = references.choose_reference(s, settings.images_dir, plot_type, runs, by=by,
                                             comment="test reference")
        pt = s.scalar(select(PlotType).where(PlotType.name == plot_type))
        images = list(s.scalars(select(Image).where(Image.plot_type_id == pt.id, Image.status == "registered")))
        rows = references.score_images(s, images)
        return {"version": change.version, "limit": change.limit,
                "scores": {r.image_id: (r.score, bool(r.flagged)) for r in rows if r.status == "scored"}}

    return db.write(work, what="add reference")
