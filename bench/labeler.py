"""How many images an expert can label per hour through the Labeler, counting only the machines' time.

    python bench/labeler.py                    # 2000 images, pages of 100
    python bench/labeler.py --images 5000 --page-size 200

Serves `hydra pages` on a throw-away home with a deep queue, logs in with Chromium and labels page after page
the way an expert does when most images share a label: Shift+1 (paint every image Good), Enter (Apply), wait
until the next page is shown.  Prints images/minute and per hour of UI time (server + browser; a person's
looking time is not in it) against Hydra's published 10,000 labels per expert-hour, and exits 1 below it.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "ui")]

from pages_factory import PASSWORDS, populate  # noqa: E402
from pages_server import CHROMIUM, CHROMIUM_ARGS, make_home, start_pages, stop_pages  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from hydra_assets.db.engine import HydraDB  # noqa: E402
from hydra_assets.db.models import Image  # noqa: E402
from panel_app.auth import write_credentials  # noqa: E402

TARGET_PER_HOUR = 10_000
PLOT_TYPE = "CDC_occupancy"


def wait_fresh_page(page, count: int, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while page.locator(".tile").count() != count or page.locator(".tile.painted").count():
        if time.monotonic() > deadline:
            raise SystemExit("the Labeler did not show a fresh page in time")
        page.wait_for_timeout(20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--page-size", type=int, choices=[20, 50, 100, 200], default=100)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="hydra-labeler-bench-") as tmp:
        settings = make_home(Path(tmp) / "home")
        db = HydraDB(settings.db_url)
        populate(db, settings, queue_extra=args.images + args.page_size)
        credentials = write_credentials(settings.home / "credentials.json", PASSWORDS)
        served = start_pages(settings, "--credentials", str(credentials))
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.goto(f"{served.url}/login")
                page.fill("#username", "labeler")
                page.fill("#password", PASSWORDS["labeler"])
                page.click("button[type=submit]")
                page.wait_for_load_state()
                page.goto(f"{served.url}/labeler")
                page.get_by_text("Label all on page").first.wait_for(timeout=60000)
                chooser = page.locator("select").first
                option = next(o for o in chooser.locator("option").all_text_contents() if o.startswith(PLOT_TYPE))
                chooser.select_option(label=option)
                page.wait_for_timeout(500)
                for sizes in page.locator("select").all():
                    if str(args.page_size) in sizes.locator("option").all_text_contents():
                        sizes.select_option(label=str(args.page_size))
                        break
                wait_fresh_page(page, args.page_size)
                before = int(page.locator("b.today").first.inner_text())  # the factory's labels of today
                labeled, pages, started = 0, 0, time.perf_counter()
                while labeled < args.images:
                    wait_fresh_page(page, args.page_size)
                    page.keyboard.press("Shift+Digit1")
                    page.keyboard.press("Enter")
                    labeled += args.page_size
                    pages += 1
                    page.locator("b.today", has_text=re.compile(f"^{before + labeled}$")).first.wait_for(timeout=60000)
                elapsed = time.perf_counter() - started
                browser.close()
            with db.read() as s:
                queued = s.scalar(select(func.count()).select_from(Image).where(Image.label_id.is_(None),
                                                                              Image.queue_priority.is_not(None)))
        finally:
            stop_pages(served)
            db.dispose()
    per_minute = labeled / elapsed * 60
    per_hour = per_minute * 60
    print(f"Labeler, pages of {args.page_size}: {labeled} images ({pages} pages, 2 key presses each) in "
          f"{elapsed:.1f} s of UI time")
    print(f"  {per_minute:.0f} images/minute = {per_hour:.0f} per hour; target {TARGET_PER_HOUR} per hour: "
          f"{'met' if per_hour >= TARGET_PER_HOUR else 'MISSED'}")
    print(f"  images left in the queue: {queued}")
    if per_hour < TARGET_PER_HOUR:
        sys.exit(1)


if __name__ == "__main__":
    main()
