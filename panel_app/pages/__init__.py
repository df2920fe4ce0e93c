"""One module per page; each page is a `pn.viewable.Viewer` over a per-session `HydraStore`."""

from __future__ import annotations

from panel_app.pages.browser import BrowserPage
from panel_app.pages.labeler import LabelerPage
from panel_app.pages.library import LibraryPage
from panel_app.pages.log import LogPage
from panel_app.pages.report import ReportPage
from panel_app.pages.run import RunPage
from panel_app.pages.status import StatusPage
from panel_app.pages.trends import TrendsPage

PAGE_CLASSES = {
    "run": RunPage,
    "log": LogPage,
    "library": LibraryPage,
    "labeler": LabelerPage,
    "status": StatusPage,
    "browser": BrowserPage,
    "trends": TrendsPage,
    "report": ReportPage,
}

__all__ = ["PAGE_CLASSES"]
