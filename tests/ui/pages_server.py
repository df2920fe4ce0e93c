"""Serving `hydra pages` for the browser tests and the screenshots: a Hydra home, a free port, a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from hydra_assets.db.engine import HydraDB
from hydra_assets.db.migrate import upgrade
from hydra_assets.settings import HydraSettings, load_settings

CHROMIUM = os.environ.get("HYDRA_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Served:
    """A running `hydra pages` and the Hydra home behind it."""

    url: str
    settings: HydraSettings
    db: HydraDB
    process: subprocess.Popen
    log: Path
    extra: dict = field(default_factory=dict)

    def server_log(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def processes_of(home: Path) -> list[str]:
    """Command lines of live processes that mention this Hydra home (by argument or environment)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            stat = (proc / "stat").read_text()
            if stat.split(")")[-1].split()[0] == "Z":
                continue
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (proc / "environ").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if str(home) in cmdline or f"HYDRA_HOME={home}\0" in environ:
            found.append(f"{proc.name}: {cmdline[:160]}")
    return found


def make_home(root: Path) -> HydraSettings:
    root.mkdir(parents=True, exist_ok=True)
    settings = load_settings(home=root, db_url=f"sqlite:///{root / 'hydra.db'}", images_dir=root / "images",
                             kept_dir=root / "kept", gradcam_dir=root / "gradcam", input_dir=root / "incoming",
                             mlflow_tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    upgrade(settings.db_url)
    return settings


def start_pages(settings: HydraSettings, *args: str, timeout: float = 90.0) -> Served:
    """Run `hydra pages` (the real command) in a subprocess against `settings.home`; wait until it answers."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYDRA_") and k not in ("MLFLOW_TRACKING_URI",
                                                                                             "DAGSTER_HOME")}
    env.update(HYDRA_HOME=str(settings.home), HYDRA_DB_URL=settings.db_url,
               MLFLOW_TRACKING_URI=settings.mlflow_tracking_uri, HYDRA_RUN_REFRESH_MS="1000",
               HYDRA_COOKIE_SECRET="test-cookie-secret-" + "x" * 32, PYTHONUNBUFFERED="1")
    log = settings.home / f"pages-{port}.log"
    handle = log.open("w")
    process = subprocess.Popen(
        [sys.executable, "-c", "from hydra_assets.cli import main; main()", "pages", "--port", str(port), *args],
        cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"hydra pages exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/login" if "--no-auth" not in args else url, timeout=2):
                break
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.3)
    else:
        process.terminate()
        raise RuntimeError(f"hydra pages did not answer within {timeout}s:\n{log.read_text()}")
    return Served(url, settings, HydraDB(settings.db_url), process, log)


def stop_pages(served: Served) -> None:
    served.process.terminate()
    try:
        served.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        served.process.kill()
    served.db.dispose()


def serve_populated(root: Path, **populate_options: object) -> Served:
    """A fresh home with `pages_factory.populate`'s experiment and the test logins, served by `hydra pages`.

    `served.extra["demo"]` holds what `populate` returned; stop it with `stop_pages`.
    """
    from pages_factory import PASSWORDS, populate

    from panel_app.auth import write_credentials

    settings = make_home(root)
    db = HydraDB(settings.db_url)
    demo = populate(db, settings, **populate_options)
    db.dispose()
    credentials = write_credentials(settings.home / "credentials.json", PASSWORDS)
    served = start_pages(settings, "--credentials", str(credentials))
    served.extra["demo"] = demo
    return served


def sign_in(browser: object, served: Served, user: str, *, width: int = 1400, height: int = 1000
            ) -> tuple[object, object]:
    """A new browser context signed in as one of the test users: (context, page); close the context after."""
    from pages_factory import PASSWORDS

    context = browser.new_context(viewport={"width": width, "height": height})  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto(f"{served.url}/login")
    page.fill("#username", user)
    page.fill("#password", PASSWORDS[user])
    page.click("button[type=submit]")
    page.wait_for_load_state()
    return context, page
