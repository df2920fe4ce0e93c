"""The page registry: one entry per page, in navigation order; each page is a `pn.viewable.Viewer` over a
per-session `HydraStore`, in a module of its own.

Everything that lists the pages reads `PAGES`: the routes and window titles `pn.serve` gets (`app.py`),
the navigation bar (`navigation.py`) and the index page (`templates/index.html`).  A new page is one
module here and one line below.
"""

from __future__ import annotations

from dataclasses import dataclass

import panel as pn

from panel_app.pages.alarms import AlarmsPage
from panel_app.pages.browser import BrowserPage
from panel_app.pages.compare import ComparePage
from panel_app.pages.labeler import LabelerPage
from panel_app.pages.library import LibraryPage
from panel_app.pages.log import LogPage
from panel_app.pages.report import ReportPage
from panel_app.pages.run import RunPage
from panel_app.pages.runs import RunsPage
from panel_app.pages.similarity import MapPage
from panel_app.pages.status import StatusPage
from panel_app.pages.trends import TrendsPage


@dataclass(frozen=True)
class Page:
    slug: str  # its URL path
    title: str
    purpose: str  # one line, shown as the navigation link's tooltip
    view: type[pn.viewable.Viewer]


PAGES: dict[str, Page] = {page.slug: page for page in (
    Page("run", "Run", "live grid of the latest image of every plot type", RunPage),
    Page("log", "Log", "confirmed Bad and unconfirmed images of the last hours", LogPage),
    Page("runs", "Runs", "runs by plot group, coloured by flag; sign-off and certification files", RunsPage),
    Page("alarms", "Alarms", "every alarm raised, and who acknowledged it", AlarmsPage),
    Page("library", "Library", "model versions, confusion matrices, thresholds", LibraryPage),
    Page("labeler", "Labeler", "paint labels on images", LabelerPage),
    Page("map", "Map", "a similarity map of images: paint whole clusters with a label", MapPage),
    Page("status", "Status", "pipeline timings and heartbeats", StatusPage),
    Page("browser", "Plot Browser", "filter and sort every image", BrowserPage),
    Page("trends", "Trends", "label weights over time", TrendsPage),
    Page("report", "Training report", "where model and human disagree", ReportPage),
    Page("compare", "Compare", "an image beside its reference and their difference", ComparePage),
)}

__all__ = ["PAGES", "Page"]
