"""Browser-test fixtures: Debian's Chromium driven by Playwright (its own browser download is impossible here)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pages_server import CHROMIUM, CHROMIUM_ARGS, ROOT, free_port, processes_of

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "ROOT", "free_port", "processes_of"]  # other UI tests import these from here


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        message = f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
