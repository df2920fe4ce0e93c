"""The main job end to end: `hydra up` alone brings the platform up and the Run page shows classified cards.

Runs the real command (Dagster webserver and daemon with the file sensor, MLflow UI, pages, demo feeder, then
the demo set-up in the background: a small history, training through Dagster), logs in with Chromium while
the models are still being trained (the Status page shows the set-up's progress), waits for classified
cards and for every demo model, stops it with Ctrl-C, checks that no process of that Hydra home survives,
then starts again and checks that the data stayed and nothing was retrained.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from hydra_assets.db.engine import HydraDB
from hydra_assets.db.models import Image, Inference, Model
from tests.ui.conftest import ROOT, free_port, processes_of

pytestmark = [pytest.mark.ui, pytest.mark.slow]
HYDRA = str(Path(sys.executable).parent / "hydra")


class Up:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.ports = {"panel": free_port(), "dagster": free_port(), "mlflow": free_port()}
        self.log = home.parent / f"up-{time.monotonic_ns()}.log"

    def start(self) -> None:
        env = {**os.environ, "HYDRA_HOME": str(self.home)}
        for key in ("HYDRA_DB_URL", "MLFLOW_TRACKING_URI", "DAGSTER_HOME", "HYDRA_INPUT_DIR"):
            env.pop(key, None)
        self.output = self.log.open("wb")
        self.process = subprocess.Popen(
            [HYDRA, "up", "--per-label", "24", "--epochs", "3", "--feed-interval", "4",
             "--panel-port", str(self.ports["panel"]), "--dagster-port", str(self.ports["dagster"]),
             "--mlflow-port", str(self.ports["mlflow"])],
            cwd=ROOT, env=env, stdout=self.output, stderr=subprocess.STDOUT, start_new_session=True)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.text():
                return
            assert self.process.poll() is None, f"hydra up exited early:\n{self.text()}"
            time.sleep(1)
        raise AssertionError(f"{needle!r} not seen in {timeout:.0f} s:\n{self.text()}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        try:
            code = self.process.wait(timeout=90)
        finally:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
            self.output.close()
        return code


def counts(home: Path) -> tuple[int, int, int]:
    db = HydraDB(f"sqlite:///{home / 'hydra.db'}")
    with db.read() as s:
        result = (s.scalar(select(func.count(Image.id))), s.scalar(select(func.count(Inference.id))),
                  s.scalar(select(func.count(Model.id))))
    db.dispose()
    return result


def test_hydra_up_shows_classified_cards_then_stops_cleanly_and_restarts_with_its_data(browser, tmp_path):
    home = tmp_path / "home"
    up = Up(home)
    up.start()
    try:
        started = time.monotonic()
        up.wait_for("all services up", timeout=900)
        seeded_in = time.monotonic() - started
        assert "demo login" in up.text()
        passwords = json.loads((home / "credentials.json").read_text())
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        base = f"http://127.0.0.1:{up.ports['panel']}"
        page.goto(f"{base}/login")
        page.fill("#username", "shift")
        page.fill("#password", passwords["shift"])
        page.click("button[type=submit]")
        page.wait_for_load_state()
        page.goto(f"{base}/status")
        page.get_by_text("Demo set-up:").first.wait_for(timeout=60_000)  # the models are still to come
        page.goto(f"{base}/run")
        # a classified card: one whose header carries a label (not the grey "pending" state)
        page.locator(".card:not(.pending)").first.wait_for(timeout=600_000)  # models train after the services start
        first_card_in = time.monotonic() - started
        assert page.get_by_text("Traceback").count() == 0
        cards = page.locator(".card:not(.pending)")
        assert cards.count() >= 1
        text = cards.first.inner_text()
        assert any(label in text.upper() for label in ("GOOD", "BAD", "NODATA"))
        page.screenshot(path=str(tmp_path / "run.png"))
        context.close()
        up.wait_for("demo ready", timeout=900)  # every demo model trained and active
    finally:
        code = up.stop()
    print(f"hydra up: all services up after {seeded_in:.0f} s, first classified card after {first_card_in:.0f} s")
    assert code == 0, up.text()
    time.sleep(2)
    assert processes_of(home) == [], "processes survived the stop"
    images, inferences, models = counts(home)
    assert inferences >= 1 and models == 6

    again = Up(home)
    again.start()
    try:
        again.wait_for("all services up", timeout=300)
        assert "training" not in again.text()  # cached: nothing retrained
        assert "demo login" not in again.text()  # passwords are shown once
    finally:
        assert again.stop() == 0, again.text()
    time.sleep(2)
    assert processes_of(home) == []
    images_after, inferences_after, models_after = counts(home)
    assert images_after >= images and inferences_after >= inferences and models_after == models
