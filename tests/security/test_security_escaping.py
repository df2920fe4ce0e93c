"""Security — HTML/JS in user-controlled text (labels, news, user names, file names, plot types, groups) is shown
escaped on every page, never run.

The catalogue refuses markup in label, user and plot-type names at creation.  A forged or legacy row does not
pass through it, so the rest of this module writes such rows straight into the database — a plot type whose
name, description, labels, label colours, group, system, models, thresholds, alarms and report weights hold
`<script>`/`onerror=` payloads, users named with markup, a news line, a heartbeat, an image and quarantined files
whose file names hold markup — and renders every page to the Bokeh models a browser session receives
(`pages_factory.browser_markup`: what the browser inserts as HTML).  No raw payload and no script tag, `on*`
handler or `javascript:` URL may appear there, while the text itself is shown, escaped.  Labels and names are
also sent as data to widgets that set them as text (Select options, buttons, the Labeler grid), which is safe;
MultiChoice is not (Choices.js renders its options as HTML), so the Plot Browser escapes its options.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import pandas as pd
import panel as pn
import pytest
from bokeh.models import HTMLTemplateFormatter
from pages_factory import (
    active_markup,
    add_bad_image,
    browser_markup,
    database_copy,
    html_table_columns,
    page_store,
    populate,
    template_database,
)
from sqlalchemy import func, select

from hydra_assets import catalog
from hydra_assets.catalog import CatalogError
from hydra_assets.db.engine import HydraDB
from hydra_assets.db.models import (
    Alarm,
    Heartbeat,
    Image,
    Inference,
    Label,
    Model,
    NewsLine,
    PlotGroup,
    PlotType,
    Role,
    SuperGroup,
    Threshold,
    TrainingReportItem,
    User,
)
from hydra_assets.ingest.quarantine import QuarantineItem, quarantine_files
from panel_app.components import LabelerGrid
from panel_app.navigation import frame
from panel_app.pages import PAGES
from panel_app.pages.browser import BrowserPage
from panel_app.pages.labeler import EDITOR, LabelerPage
from panel_app.pages.library import LibraryPage
from panel_app.pages.log import LogPage
from panel_app.pages.report import ReportPage
from panel_app.pages.run import RunPage
from panel_app.pages.status import StatusPage
from panel_app.pages.trends import TrendsPage

VICTIM = "FDC_efficiency"  # the demo plot type whose rows are forged
PLOT_TYPE = "<script>alert(11)</script>"
DESCRIPTION = "<img src=x onerror=alert(12)>"
GOOD = "<img src=x onerror=alert(21)>"
BAD = "<script>alert(22)</script>"
COLOUR = '#f00" onmouseover="alert(23)'  # leaves a double-quoted style attribute unless quotes are escaped
COLOUR_SQ = "#0f0' onmouseover='alert(24)"  # ... a single-quoted one
GROUP = "<b onmouseover=alert(31)>FDC</b>"
SYSTEM = '<a href="javascript:alert(32)">Tracking</a>'
MODEL_NAME = "<script>alert(33)</script>"
TOPOLOGY = "<img src=x onerror=alert(34)>"
SAMPLING = "<svg onload=alert(35)>"
EXPERT = "<img src=x onerror=alert(41)>"  # a forged user name with the expert role
VIEWER = "<svg onload=alert(42)>"  # ... with the viewer role
NEWS = "<script>alert(51)</script> beam off"
STAGE = "<b onclick=alert(52)>x</b>"
HEARTBEAT = "<img src=x onerror=alert(53)>"
ALARM = "<script>alert(54)</script>"
IMAGE_FILE = "<img src=x onerror=alert(1)>_RF_FDC-000001_0001.png"
QUARANTINED_FILE = "<script>alert(1)</script>_RF_FDC-000001_0001.png"  # holds '/': a row only, never a real file
QUARANTINED_REAL = "<img src=x onerror=alert(61)>-121262-0001.png"  # a real file, quarantined by the pipeline
PAYLOADS = (PLOT_TYPE, DESCRIPTION, GOOD, BAD, COLOUR, COLOUR_SQ, GROUP, SYSTEM, MODEL_NAME, TOPOLOGY, SAMPLING,
            EXPERT, VIEWER, NEWS, STAGE, HEARTBEAT, ALARM, IMAGE_FILE, QUARANTINED_FILE, QUARANTINED_REAL)


@dataclass
class Forged:
    plot_type: int
    good: int
    bad: int


def forge(db: HydraDB, settings, demo) -> Forged:  # type: ignore[no-untyped-def]
    """Write markup into every user-text column the pages read, bypassing the catalogue."""
    pt_id, labels = demo.plot_types[VICTIM], demo.labels[VICTIM]
    rename = {"Good": GOOD, "Bad": BAD}

    def work(s) -> None:  # type: ignore[no-untyped-def]
        plot_type = s.get(PlotType, pt_id)
        plot_type.name, plot_type.description = PLOT_TYPE, DESCRIPTION
        s.get(Label, labels["Good"]).name, s.get(Label, labels["Good"]).colour = GOOD, COLOUR
        s.get(Label, labels["Bad"]).name, s.get(Label, labels["Bad"]).colour = BAD, COLOUR_SQ
        s.scalar(select(PlotGroup).where(PlotGroup.name == "FDC")).name = GROUP
        s.scalar(select(SuperGroup).where(SuperGroup.name == "Tracking")).name = SYSTEM
        for row in [*s.scalars(select(Inference).where(Inference.plot_type_id == pt_id)),
                    *s.scalars(select(TrainingReportItem).where(TrainingReportItem.report_id == demo.reports[VICTIM]))]:
            row.weights = {rename.get(name, name): weight for name, weight in row.weights.items()}
        for model in s.scalars(select(Model).where(Model.plot_type_id == pt_id)):
            model.mlflow_name, model.topology, model.sampling, model.created_by = MODEL_NAME, TOPOLOGY, SAMPLING, EXPERT
            model.label_names = [GOOD, BAD]
            model.activated_by = EXPERT if model.active else ""
            model.metrics = {**model.metrics, "validation": {"per_label": {
                BAD: {"precision": 0.9, "recall": 0.8, "f1": 0.85, "support": GOOD}}}}
        for threshold in s.scalars(select(Threshold).where(Threshold.model_id.in_(demo.models[VICTIM]))):
            threshold.changed_by = EXPERT
        for alarm in s.scalars(select(Alarm).where(Alarm.plot_type_id == pt_id)):
            alarm.message = ALARM
        roles = {role.name: role.id for role in s.scalars(select(Role))}
        s.add_all([User(name=EXPERT, role_id=roles["expert"], full_name=NEWS),
                   User(name=VIEWER, role_id=roles["viewer"], full_name=NEWS)])
        s.add(NewsLine(text=NEWS, created_by=EXPERT))
        s.add(Heartbeat(stage=STAGE, detail=HEARTBEAT))
        s.get(Image, demo.images[VICTIM][0]).file_name = IMAGE_FILE
        s.add(Image(plot_type_id=None, digest="", file_name=QUARANTINED_FILE, status="quarantined",
                    quarantine_reason=f"file name {QUARANTINED_FILE!r} does not match <plot_type>-<run>-<chunk>.png"))

    db.write(work, what="forge user text")
    settings.input_dir.mkdir(parents=True, exist_ok=True)
    landed = settings.input_dir / QUARANTINED_REAL
    landed.write_bytes(b"not a png")
    quarantine_files(db, settings, [QuarantineItem(path=landed, reason=f"{QUARANTINED_REAL}: not a PNG image")])
    return Forged(pt_id, labels["Good"], labels["Bad"])


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A populated SQLite database with the forged rows, made once; each test gets a copy of the file."""
    return template_database(tmp_path_factory.mktemp("security_escaping"),
                             lambda db, settings: forge(db, settings, populate(db, settings, queue_extra=10)))


@pytest.fixture
def forged_db(template, tmp_path):
    settings, forged = template
    db, settings = database_copy(settings, tmp_path)
    yield db, settings, forged
    db.dispose()


def assert_shown_escaped(view, *texts: str) -> str:  # type: ignore[no-untyped-def]
    """No forged payload reaches the browser as markup; each of `texts` is shown (escaped)."""
    markup = "\n".join(browser_markup(view))
    assert active_markup(markup) == [], "markup that runs code reached the browser"
    raw = [payload for payload in PAYLOADS if payload in markup]
    assert raw == [], "user text reached the browser unescaped"
    missing = [text for text in texts if html.escape(text) not in markup]
    assert missing == [], "user text not shown"
    return markup


def framed(page, slug: str):  # type: ignore[no-untyped-def]
    """The page as a session serves it: with the navigation bar naming the signed-in user."""
    return frame(page.store, slug, page, auth=True)


# ---- the catalogue refuses markup at creation -----------------------------------------------------


@pytest.mark.parametrize("payload", ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>", 'Bad" x="'])
def test_catalog_refuses_markup_in_labels_user_and_plot_type_names(sqlite_db, payload):
    attempts = {
        "label": lambda s: catalog.add_plot_type(s, "FDC_new", ["Good", payload], [payload]),
        "plot type": lambda s: catalog.add_plot_type(s, payload, ["Good", "Bad"], ["Bad"]),
        "user": lambda s: catalog.add_user(s, payload, role="expert"),
    }
    for what, attempt in attempts.items():
        with pytest.raises(CatalogError, match="may hold only"):
            sqlite_db.write(attempt, what=f"add {what}")
    with sqlite_db.read() as s:
        assert s.scalar(select(func.count()).select_from(PlotType)) == 0
        assert s.scalar(select(func.count()).select_from(Label)) == 0
        assert s.scalar(select(func.count()).select_from(User)) == 0
    # the refusal is about the characters: the widest allowed label and name go through
    sqlite_db.write(lambda s: catalog.add_plot_type(s, "FDC_new", ["Good", "No Data+1.5-x_y"], ["No Data+1.5-x_y"]))
    sqlite_db.write(lambda s: catalog.add_user(s, "shift_crew_2", role="viewer"))


# ---- every page, as a forged expert sees it first ------------------------------------------------


@pytest.mark.parametrize("slug", list(PAGES))
def test_no_page_sends_forged_text_as_markup(forged_db, slug):
    """Each page in its opening state (the forged plot type sorts first): nothing runs; tables render text."""
    db, settings, _forged = forged_db
    with db.read() as s:  # the quarantined rows are there, file names untouched, for the pages to ignore or escape
        names = set(s.scalars(select(Image.file_name).where(Image.status == "quarantined")))
    assert {QUARANTINED_FILE, QUARANTINED_REAL} <= names
    page = PAGES[slug].view(store=page_store(db, settings, EXPERT))
    assert_shown_escaped(framed(page, slug), EXPERT)
    assert html_table_columns(framed(page, slug)) == []


# ---- page by page: the forged text is shown, escaped -----------------------------------------------


def test_run_page_escapes_cards_news_alarms_and_user(forged_db):
    db, settings, _forged = forged_db
    page = RunPage(page_store(db, settings, EXPERT))
    add_bad_image(db, settings, PLOT_TYPE, 121299, 1)  # the pipeline delivers a confirmed Bad of the forged type
    page.refresh()
    assert page.alarms and page.alarms[0].plot_type == PLOT_TYPE
    assert GROUP in page.param.group.objects and f"{SYSTEM} (system)" in page.param.group.objects  # Select: text
    assert_shown_escaped(framed(page, "run"), PLOT_TYPE, BAD, NEWS, EXPERT)


def test_log_page_and_daily_briefs_escape_groups_plot_types_and_labels(forged_db):
    db, settings, _forged = forged_db
    page = LogPage(page_store(db, settings, EXPERT))
    assert GROUP in page.grouped
    assert_shown_escaped(framed(page, "log"), GROUP, PLOT_TYPE)
    brief = page.html_brief().getvalue()  # a file opened in a browser
    assert active_markup(brief) == [] and not [p for p in PAYLOADS if p in brief]
    assert html.escape(PLOT_TYPE) in brief and html.escape(GROUP) in brief
    markdown = page.markdown_brief().getvalue()  # Markdown viewers render raw HTML
    assert active_markup(markdown) == [] and not [p for p in PAYLOADS if p in markdown]


def test_library_page_escapes_models_labels_and_users(forged_db):
    db, settings, forged = forged_db
    page = LibraryPage(page_store(db, settings, EXPERT))
    page.plot_type = forged.plot_type
    assert page.edit_threshold(forged.bad, 0.5)  # feedback (an Alert, i.e. Markdown) and history name label and user
    assert BAD in page.label_select.options  # Select: text
    assert_shown_escaped(framed(page, "library"), MODEL_NAME, TOPOLOGY, SAMPLING, EXPERT, GOOD, BAD)


def test_labeler_page_escapes_the_user_and_sends_labels_as_text(forged_db):
    db, settings, forged = forged_db
    page = LabelerPage(page_store(db, settings, VIEWER))
    page.plot_type, page.mode = forged.plot_type, EDITOR
    assert page.tiles
    assert [p["name"] for p in page.grid.palette] == [GOOD, BAD, "erase"]
    assert "innerHTML" not in LabelerGrid._esm  # the grid sets names and captions with textContent
    page.label_all()
    assert page.apply() is None and "Refused" in page.feedback.object
    assert_shown_escaped(framed(page, "labeler"), VIEWER)


def test_status_page_escapes_heartbeats(forged_db):
    db, settings, _forged = forged_db
    page = StatusPage(page_store(db, settings, EXPERT))
    assert_shown_escaped(framed(page, "status"), STAGE, HEARTBEAT)


def test_browser_page_escapes_tiles_and_plot_type_choices(forged_db):
    db, settings, forged = forged_db
    page = BrowserPage(page_store(db, settings, EXPERT))
    page.plot_types = [forged.plot_type]
    assert page.tiles and {t.plot_type_id for t in page.tiles} == {forged.plot_type}
    markup = assert_shown_escaped(framed(page, "browser"), PLOT_TYPE)
    assert html.escape(GOOD) in markup or html.escape(BAD) in markup
    # the MultiChoice hands option labels to Choices.js as HTML: they must arrive escaped
    choice = pn.widgets.MultiChoice.from_param(page.param.plot_types)
    assert html.escape(PLOT_TYPE) in choice.get_root().options


def test_trends_page_escapes_models_and_plot_type(forged_db):
    db, settings, forged = forged_db
    page = TrendsPage(page_store(db, settings, EXPERT))
    page.plot_type = forged.plot_type
    assert page.points and page.chart.objects  # the figure is drawn: forged label colours fall back to grey
    assert {lab.colour for lab in page.store.plot_type(forged.plot_type).labels} == {"#888888"}
    assert_shown_escaped(framed(page, "trends"), f"{MODEL_NAME}/2")
    page.hours = 0.25  # nothing in the window: the empty state names the plot type
    assert_shown_escaped(framed(page, "trends"), PLOT_TYPE)


def test_report_page_escapes_labels_weights_and_plot_type(forged_db):
    db, settings, forged = forged_db
    viewer = ReportPage(page_store(db, settings, VIEWER))
    viewer.plot_type = forged.plot_type
    assert viewer.items
    assert_shown_escaped(framed(viewer, "report"), PLOT_TYPE, GOOD, BAD, VIEWER)
    expert = ReportPage(page_store(db, settings, EXPERT))
    expert.plot_type = forged.plot_type
    item = expert.items[0]
    assert expert.fix(item.image_id, forged.bad)  # "Image … is now labeled <label>" in an Alert
    assert_shown_escaped(framed(expert, "report"), BAD, EXPERT)


# ---- tables: the check above would catch cells rendered as HTML ------------------------------------


def test_tables_render_cells_as_text_unless_given_an_html_formatter():
    """No page has a Tabulator or DataFrame today; this pins what `html_table_columns` flags if one comes."""
    frame_ = pd.DataFrame({"file": [IMAGE_FILE], "size": [1]})
    assert html_table_columns(pn.widgets.Tabulator(frame_)) == []  # StringFormatter: textContent
    assert html_table_columns(pn.widgets.DataFrame(frame_)) == []
    assert html_table_columns(pn.widgets.Tabulator(frame_, formatters={"file": {"type": "html"}})) == ["file"]
    template = HTMLTemplateFormatter(template="<b><%= value %></b>")  # <%= %> does not escape
    assert html_table_columns(pn.widgets.Tabulator(frame_, formatters={"file": template})) == ["file"]
    assert html_table_columns(pn.widgets.DataFrame(frame_, formatters={"file": template})) == ["file"]
