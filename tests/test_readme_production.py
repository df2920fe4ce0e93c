"""README's "Point it at a real experiment", run as written on a fresh Hydra home, ends with alice signed in.

The commands are read from README.md itself, so the README and this test cannot drift: `./hydra` becomes
this environment's `hydra`, the `export`ed folders become temporary ones, and `hydra up --no-demo` gets free
ports.  Then Chromium signs in as alice with the password `hydra user add` printed, a page renders, and
Ctrl-C leaves no process of that home behind.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.ui.pages_server import free_port, processes_of

ROOT = Path(__file__).resolve().parents[1]
HYDRA = str(Path(sys.executable).parent / "hydra")
CHROMIUM = os.environ.get("HYDRA_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


def readme_block(title: str = "## Point it at a real experiment") -> list[list[str]]:
    """The shell commands of the first bash block under `title`, one argument list per command."""
    section = (ROOT / "README.md").read_text(encoding="utf-8").split(title, 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [args for line in block.replace("\\\n", " ").splitlines() if (args := shlex.split(line, comments=True))]


def test_readme_block_is_what_this_test_runs() -> None:
    commands = readme_block()
    assert [c[0] for c in commands if c[0] != "export"] == ["./hydra"] * (len(commands) - 2)
    assert ["./hydra", "up", "--no-demo"] in commands
    assert any(c[:3] == ["./hydra", "user", "add"] and "alice" in c for c in commands)


@pytest.mark.ui
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_readme_production_commands_end_with_alice_signed_in(tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not found at {CHROMIUM}")
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items()
           if k not in ("HYDRA_DB_URL", "MLFLOW_TRACKING_URI", "DAGSTER_HOME", "HYDRA_IMAGES_DIR")}
    exported = {"HYDRA_HOME": str(home), "HYDRA_INPUT_DIR": str(tmp_path / "incoming")}
    ports = {"--panel-port": free_port(), "--dagster-port": free_port(), "--mlflow-port": free_port()}
    outputs: list[str] = []
    up_command: list[str] | None = None
    for args in readme_block():
        if args[0] == "export":
            name = args[1].split("=", 1)[0]
            assert name in exported, f"README exports {name}; this test does not know where to point it"
            env[name] = exported[name]
            continue
        command = [HYDRA, *args[1:]]
        if args[1] == "up":
            up_command = [*command, *(str(x) for pair in ports.items() for x in pair)]
            continue
        done = subprocess.run(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=180)
        outputs.append(done.stdout + done.stderr)
        assert done.returncode == 0, f"{shlex.join(args)} failed:\n{done.stdout}{done.stderr}"
    assert up_command is not None

    found = re.search(r"login for alice: password (\S+)", "\n".join(outputs))
    assert found, "`hydra user add alice` printed no password:\n" + "\n".join(outputs)
    password = found.group(1)
    credentials = home / "credentials.json"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600

    log = tmp_path / "up.log"
    with log.open("wb") as output:
        up = subprocess.Popen(up_command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=output,
                              stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while "all services up" not in log.read_text(errors="replace"):
                assert up.poll() is None, f"hydra up --no-demo exited:\n{log.read_text(errors='replace')}"
                assert time.monotonic() < deadline, f"not up in 300 s:\n{log.read_text(errors='replace')}"
                time.sleep(1)
            text = log.read_text(errors="replace")
            assert "first admin login" in text and "admin / " in text
            signed_in_as_alice(f"http://127.0.0.1:{ports['--panel-port']}", password)
        finally:
            if up.poll() is None:
                up.send_signal(signal.SIGINT)  # what Ctrl-C sends
            try:
                code = up.wait(timeout=90)
            finally:
                if up.poll() is None:
                    os.killpg(up.pid, signal.SIGKILL)
    assert code == 0, log.read_text(errors="replace")
    time.sleep(2)
    assert processes_of(home) == [], "processes survived the stop"


def signed_in_as_alice(base: str, password: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.goto(f"{base}/login", timeout=60_000)
            page.fill("#username", "alice")
            page.fill("#password", password)
            page.click("button[type=submit]")
            page.wait_for_load_state()
            page.goto(f"{base}/run", timeout=60_000)
            page.locator("nav").wait_for(timeout=60_000)
            assert "/login" not in page.url
            assert "alice" in page.locator("nav").inner_text()
            assert page.get_by_text("Traceback").count() == 0
        finally:
            browser.close()
