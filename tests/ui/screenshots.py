"""Screenshots of every page for docs/screenshots/, on the demo experiment's plot types and simulated images.

    .venv/bin/python tests/ui/screenshots.py [OUTPUT_DIR]

Builds a fresh Hydra home with `pages_factory.populate(style="simulate")` (the demo plot types drawn by
`hydra_assets.simulate`), serves `hydra pages` with a login, signs in as the expert and captures each page
in Debian's Chromium; the Run page is taken right after a new confirmed Bad arrives (alarm showing).  A run
of BCAL_eta_phi the model is out of its depth on (`add_novel_run`) shows the novelty guard and the
retraining suggestion on the Run, Log, Library, Status, Trends and Labeler pages.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from pages_factory import PASSWORDS, add_bad_image, add_novel_run, add_reference, populate  # noqa: E402
from pages_server import CHROMIUM, CHROMIUM_ARGS, ROOT, make_home, start_pages, stop_pages  # noqa: E402

from hydra_assets.db.engine import HydraDB  # noqa: E402
from panel_app.auth import write_credentials  # noqa: E402

SHOTS = [  # file, page, text to wait for, what to do before the shot
    ("run.png", "run", "showing", "alarm"),
    ("run-gradcam.png", "run", "showing", "gradcam"),
    ("log.png", "log", "confirmed Bad", None),
    ("library.png", "library", "Confusion matrix", None),
    ("library-curves.png", "library", "Confusion matrix", "curves"),
    ("library-validation.png", "library", "Confusion matrix", "validation"),
    ("labeler-suggestion.png", "labeler?plot_type=BCAL_eta_phi&run=131013&reason=novel", "Label all on page", None),
    ("labeler.png", "labeler", "Label all on page", "paint"),
    ("status.png", "status", "images in 24 h", None),
    ("browser.png", "browser", "images 1–", None),
    ("trends.png", "trends", "classifications,", None),
    ("report.png", "report", "where the model disagrees", None),
]


def main(output: Path) -> None:
    from playwright.sync_api import sync_playwright

    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        settings = make_home(Path(tmp) / "home")
        db = HydraDB(settings.db_url)
        populate(db, settings, style="simulate", runs=(131010, 131011, 131012), chunks=6)
        add_novel_run(db, settings, "BCAL_eta_phi", 131013, style="simulate")
        scores = add_reference(db, settings, "FDC_occupancy", [131010])["scores"]  # issue 14: the compare view
        unlike = max(scores, key=lambda image_id: scores[image_id][0])
        shots = [*SHOTS, ("compare.png", f"compare?image={unlike}", "limit", None),
                 ("library-reference.png", "library", "Confusion matrix", "reference")]
        from hydra_assets.flags.compute import compute_run_flags  # issue 16: the Runs page and alarm history

        for run in (131010, 131011, 131012, 131013):
            compute_run_flags(db, run)
        shots += [("runs.png", "runs?run=131012&scope=group&group=CDC", "Sign-off history", None),
                  ("alarms.png", "alarms", "acknowledged by", None)]
        credentials = write_credentials(settings.home / "credentials.json", PASSWORDS)
        served = start_pages(settings, "--credentials", str(credentials))
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1440, "height": 1000})
                page.goto(f"{served.url}/login")
                page.fill("#username", "expert")
                page.fill("#password", PASSWORDS["expert"])
                page.click("button[type=submit]")
                page.wait_for_load_state()
                for name, slug, expected, action in shots:
                    page.goto(f"{served.url}/{slug}")
                    page.get_by_text(expected).first.wait_for(timeout=30000)
                    page.wait_for_timeout(1200)
                    if action == "alarm":
                        add_bad_image(db, settings, "CDC_timing", 131013, 1, seed=4242, style="simulate")
                        page.get_by_text("ALARM: confirmed Bad").wait_for(timeout=5000)
                    elif action == "gradcam":
                        boxes = page.locator("input[type=checkbox]")  # "Bad & unconfirmed only", "GradCAM overlay"
                        boxes.nth(1).check()
                        boxes.nth(0).check()
                        page.locator("img.cam").first.wait_for(timeout=5000)
                    elif action == "curves":
                        page.get_by_text("Loss & accuracy").click()
                    elif action == "reference":
                        page.locator("select").first.select_option(label="FDC_occupancy")
                        page.wait_for_timeout(2500)
                        page.get_by_text("Reference", exact=True).first.click()
                    elif action == "validation":
                        page.get_by_text("Validation", exact=True).click()
                    elif action == "paint":
                        select = page.locator("select").first
                        option = next(o for o in select.locator("option").all_text_contents()
                                      if o.startswith("FDC_occupancy "))
                        select.select_option(label=option)
                        page.wait_for_timeout(800)
                        tiles = page.locator(".tile")
                        tiles.nth(0).click()
                        tiles.nth(5).click(modifiers=["Shift"])
                        page.keyboard.press("2")
                        tiles.nth(7).click()
                    page.wait_for_timeout(1500)  # images and charts settle
                    page.screenshot(path=str(output / name), full_page=False)
                    print(f"wrote {output / name}")
                browser.close()
        finally:
            stop_pages(served)
            db.dispose()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screenshots")
