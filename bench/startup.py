"""How long `./hydra up` takes from a fresh clone to the first classified demo chunk (issue 6 acceptance).

    python bench/startup.py                 # clone this repository into a temporary folder, fresh venv
    python bench/startup.py --reuse-venv    # already installed: time a first start on an empty home

Prints: install time (first `./hydra` use), time to "all services up" and to the pages answering (a newcomer
sees the platform), time to the first inference row (the first demo model trained in the background), with
--wait-demo the time until every demo model is active, and the time for a second start on the same home
(cached: nothing regenerated or retrained).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sqlite3
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def first_inference(db: Path) -> bool:
    if not db.exists():
        return False
    try:
        with sqlite3.connect(db, timeout=5) as connection:
            return connection.execute("SELECT COUNT(*) FROM inferences WHERE status='classified'").fetchone()[0] > 0
    except sqlite3.Error:
        return False


def answers(url: str) -> bool:
    """The pages answer (the login page, or a redirect to it)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status < 500
    except urllib.error.HTTPError as error:
        return error.code < 500
    except (urllib.error.URLError, OSError):
        return False


def start(clone: Path, home: Path, log: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    ports = [str(free_port()) for _ in range(3)]
    process = subprocess.Popen(
        ["./hydra", "up", "--panel-port", ports[0], "--dagster-port", ports[1], "--mlflow-port", ports[2]],
        cwd=clone, env={**env, "HYDRA_HOME": str(home)}, stdout=log.open("wb"), stderr=subprocess.STDOUT,
        start_new_session=True)
    return process, f"http://127.0.0.1:{ports[0]}/login"


def wait(process: subprocess.Popen[bytes], log: Path, condition, timeout: float) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        if process.poll() is not None:
            raise SystemExit(f"hydra up exited:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(1)
    raise SystemExit(f"timed out after {timeout:.0f} s:\n{log.read_text(errors='replace')[-3000:]}")


def stop(process: subprocess.Popen[bytes]) -> float:
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    process.wait(timeout=120)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reuse-venv", action="store_true", help="use this checkout's .venv (already installed)")
    parser.add_argument("--wait-demo", action="store_true", help="also time until every demo model is active")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items()
           if k not in {"HYDRA_DB_URL", "MLFLOW_TRACKING_URI", "DAGSTER_HOME", "HYDRA_INPUT_DIR", "VIRTUAL_ENV"}}
    with tempfile.TemporaryDirectory(prefix="hydra-startup-") as tmp:
        root = Path(tmp)
        if args.reuse_venv:
            clone = REPO
        else:
            clone = root / "clone"
            subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        home, log = root / "home", root / "up.log"
        began = time.monotonic()
        process, pages = start(clone, home, log, env)
        installed = wait(process, log, lambda: "Hydra home:" in log.read_text(errors="replace"), 1200)
        answering = wait(process, log, lambda: answers(pages), 1200)
        up = answering + wait(process, log, lambda: "all services up" in log.read_text(errors="replace"), 1200)
        classified = wait(process, log, lambda: first_inference(home / "hydra.db"), 1500)
        total = time.monotonic() - began
        ready = (wait(process, log, lambda: "demo ready" in log.read_text(errors="replace"), 3000)
                 if args.wait_demo and "demo:" in log.read_text(errors="replace") else None)
        stopped = stop(process)
        process, _pages = start(clone, home, root / "up2.log", env)
        again = wait(process, root / "up2.log",
                     lambda: "all services up" in (root / "up2.log").read_text(errors="replace"), 600)
        stop(process)
    print(f"{'fresh clone' if not args.reuse_venv else 'installed'} on {os.cpu_count()} cores")
    print(f"  install / environment ready   {installed:7.0f} s")
    print(f"  pages answer after            {answering:7.0f} s   (target: within 60 s of the install)")
    print(f"  all services up after         {up:7.0f} s")
    print(f"  first classified chunk after  {classified:7.0f} s more")
    if ready is not None:
        print(f"  every demo model active after {ready:7.0f} s more")
    print(f"  total to first classification {total:7.0f} s   (target: 600 s fresh, 180 s installed)")
    print(f"  Ctrl-C to all stopped         {stopped:7.0f} s")
    print(f"  second start to services up   {again:7.0f} s   (cached: no generation, no training)")


if __name__ == "__main__":
    main()
