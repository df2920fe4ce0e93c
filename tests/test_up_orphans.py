"""No orphans: every way `hydra up` can end stops everything it started (issue 17, item 4).

Each test runs the real `hydra up --no-demo --no-auth` (MLflow, Dagster daemon and webserver, pages, the warm
predictor service) on free ports with its own Hydra home, in its own session as a terminal would, waits for
"all services up", ends it one way, and then checks that no process of that home is left (found in /proc by
its environment or command line) and that its ports are free:

- Ctrl-C (SIGINT), `kill` (SIGTERM);
- the terminal closing: `hydra up` runs on a pseudo-terminal whose master is closed (the kernel's SIGHUP, and
  every later write to the terminal fails with EIO);
- `hydra up | tee up.log` and Ctrl-C: stdout is a pipe whose reader is gone (once up, or already while the
  services start: the "all services up" lines then go into a broken pipe), then SIGINT;
- its own crash: a real fault inside the supervisor loop. The Dagster daemon (restart=True) is killed; when
  the loop starts it again it must rewrite its pid file, which a directory in the way of the file's
  temporary copy (`run/up.pid.tmp`) makes impossible, so the loop raises IsADirectoryError;
- SIGKILL of `hydra up`: the kernel's parent-death signal stops the services, and the next `hydra up` of that
  home stops what is left (the detached predictor) from the pid file and says so.

Each takes 30-60 s on two busy cores.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from hydra_assets.supervisor import http_ready, port_is_free
from tests.ui.pages_server import free_port, processes_of

pytestmark = pytest.mark.slow
HYDRA = str(Path(sys.executable).parent / "hydra")
REPO = Path(__file__).resolve().parents[1]
UP_TIMEOUT = 240.0  # "all services up" on two busy cores: ~20-60 s
STOP_TIMEOUT = 120.0


class Up:
    """One `hydra up --no-demo --no-auth` of a Hydra home, in its own session."""

    def __init__(self, home: Path, ports: dict[str, int] | None = None) -> None:
        self.home = home
        self.ports = ports or {"--panel-port": free_port(), "--dagster-port": free_port(),
                               "--mlflow-port": free_port()}
        self.log = home.parent / f"up-{time.monotonic_ns()}.log"
        self.seen = b""
        self.reader: int | None = None  # our end of its stdout when it is a pipe or a terminal

    def command(self) -> list[str]:
        return [HYDRA, "up", "--no-demo", "--no-auth", *(str(x) for pair in self.ports.items() for x in pair)]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("HYDRA_") and k not in ("MLFLOW_TRACKING_URI", "DAGSTER_HOME")}
        return {**env, "HYDRA_HOME": str(self.home)}

    def start(self, stdout: str = "file") -> None:
        """stdout: "file" (a log), "pipe" (as `| tee`), or "terminal" (a pseudo-terminal, its controlling one)."""
        self.output = self.log.open("wb")
        if stdout == "file":
            streams = {"stdout": self.output, "stderr": subprocess.STDOUT}
            preexec, ours = None, None
        elif stdout == "pipe":
            self.reader, theirs = os.pipe()
            streams = {"stdout": theirs, "stderr": self.output}
            preexec, ours = None, theirs
        else:
            self.reader, theirs = pty.openpty()
            streams = {"stdin": theirs, "stdout": theirs, "stderr": theirs}
            preexec, ours = _take_terminal, theirs
        self.process = subprocess.Popen(self.command(), cwd=REPO, env=self.env(),
                                        **{"stdin": subprocess.DEVNULL, **streams},
                                        start_new_session=True, preexec_fn=preexec)
        if ours is not None:
            os.close(ours)

    def text(self) -> str:
        self._drain()
        return (self.seen + self.log.read_bytes()).decode(errors="replace")

    def _drain(self) -> None:
        while self.reader is not None and select.select([self.reader], [], [], 0)[0]:
            try:
                chunk = os.read(self.reader, 65536)
            except OSError:  # a terminal whose other side is gone
                chunk = b""
            if not chunk:
                break
            self.seen += chunk

    def wait_for(self, needle: str, timeout: float = UP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.text():
                return
            assert self.process.poll() is None, f"hydra up exited early:\n{self.text()}"
            time.sleep(0.5)
        raise AssertionError(f"{needle!r} not seen in {timeout:.0f} s:\n{self.text()}")

    def close_reader(self) -> None:
        self._drain()
        os.close(self.reader)
        self.reader = None

    def end(self, sig: int | None = None, timeout: float = STOP_TIMEOUT) -> int:
        if sig is not None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self.output.close()

    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{self.ports['--mlflow-port']}/health",
                f"http://127.0.0.1:{self.ports['--dagster-port']}/server_info",
                f"http://127.0.0.1:{self.ports['--panel-port']}/"]

    def record(self) -> dict:
        return json.loads((self.home / "run" / "up.pid").read_text())


def _take_terminal() -> None:
    """In the child, after setsid: the pseudo-terminal on stdin becomes its controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _pids(home: Path) -> list[int]:
    return [int(line.split(":", 1)[0]) for line in processes_of(home)]


def assert_nothing_left(up: Up, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while processes_of(up.home) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = processes_of(up.home)
    assert left == [], "processes of this `hydra up` survived:\n" + "\n".join(left) + "\n" + up.text()
    taken = [port for port in up.ports.values() if not port_is_free("127.0.0.1", port)]
    assert taken == [], f"ports still taken: {taken}"


@pytest.fixture
def home(tmp_path: Path):
    """A fresh Hydra home; whatever of it still runs at the end (a failed test) is killed."""
    path = tmp_path / "home"
    yield path
    for pid in _pids(path):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_everything(home, sig):
    up = Up(home)
    up.start()
    try:
        up.wait_for("all services up")
        record = up.record()
        assert {c["name"] for c in record["children"]} >= {"MLflow UI", "Dagster daemon", "Dagster UI", "Hydra pages"}
        if sig == signal.SIGTERM:  # a second `hydra up` of the same home is refused, and touches nothing
            second = subprocess.run(Up(home).command(), cwd=REPO, env=up.env(), stdin=subprocess.DEVNULL,
                                    capture_output=True, text=True, timeout=120)
            assert second.returncode != 0
            assert f"`hydra up` is already running for this Hydra home (pid {up.process.pid}" in second.stderr
            assert up.process.poll() is None and up.record() == record
    finally:
        code = up.end(sig)
    assert code == 0, up.text()
    assert "stopped." in up.text()
    assert not (home / "run" / "up.pid").exists()
    assert_nothing_left(up)


def test_closing_the_terminal_stops_everything(home):
    up = Up(home)
    up.start(stdout="terminal")
    try:
        up.wait_for("all services up")
        assert _pids(home)
        up.close_reader()  # the terminal window closes: SIGHUP, and writes to it fail from now on
        code = up.end()
    finally:
        if up.process.poll() is None:
            up.end(signal.SIGKILL)
    assert code == 0  # no BrokenPipe / EIO at exit
    assert not (home / "run" / "up.pid").exists()
    assert_nothing_left(up)


@pytest.mark.parametrize("broken", ["once up", "while starting"])
def test_a_broken_stdout_then_ctrl_c_stops_everything(home, broken):
    """`hydra up | tee up.log`, then Ctrl-C: tee is gone first. "while starting": the pipe breaks before the
    "all services up" lines are printed (`| head -2` does the same); `hydra up` must go on, silently."""
    up = Up(home)
    up.start(stdout="pipe")
    try:
        if broken == "once up":
            up.wait_for("Ctrl-C stops everything.")
            up.close_reader()
        else:
            up.wait_for("starting services…")
            up.close_reader()
            deadline = time.monotonic() + UP_TIMEOUT
            while not all(http_ready(url) for url in up.urls()) and time.monotonic() < deadline:
                assert up.process.poll() is None, up.text()
                time.sleep(0.5)
            time.sleep(3)  # it prints "all services up" into the broken pipe now
            assert up.process.poll() is None, up.text()
    finally:
        code = up.end(signal.SIGINT)
    errors = up.log.read_text(errors="replace")  # its stderr
    assert code == 0, errors
    assert "BrokenPipeError" not in errors and "Exception ignored" not in errors, errors
    assert not (home / "run" / "up.pid").exists()
    assert_nothing_left(up)


def test_a_crash_of_its_loop_stops_everything(home):
    up = Up(home)
    up.start()
    try:
        up.wait_for("all services up")
        (daemon,) = [c for c in up.record()["children"] if c["name"] == "Dagster daemon"]
        (home / "run" / "up.pid.tmp").mkdir()  # the fault: the pid file can no longer be rewritten
        os.kill(daemon["pgid"], signal.SIGKILL)
        up.wait_for("Dagster daemon exited (killed by SIGKILL); restarting in 5 s, 1st restart", timeout=30)
        code = up.end(timeout=STOP_TIMEOUT)  # the restart meets the fault: the loop raises
    finally:
        if up.process.poll() is None:
            up.end(signal.SIGINT)
    text = up.text()
    assert code == 1, text
    assert "IsADirectoryError" in text and "stopped." in text, text
    assert_nothing_left(up)


def test_after_a_sigkill_everything_stops_by_itself_and_the_next_up_starts(home):
    first = Up(home)
    first.start()
    try:
        first.wait_for("all services up")
        predictors = [int(line.split(":")[0]) for line in processes_of(home) if "ingest.predictor" in line]
        groups = {_group(pid) for pid in _pids(home) if pid not in predictors} - {first.process.pid}
        assert len(groups) >= 4  # MLflow, the daemon, the webserver, the pages: each in its own group
    finally:
        first.end(signal.SIGKILL)
    deadline = time.monotonic() + 60
    while any(_group_alive(g) for g in groups) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not [g for g in groups if _group_alive(g)], "the parent-death signal did not stop the services"
    # the predictor runs detached (no parent-death signal): it sees its `hydra up` gone and stops itself
    while processes_of(home) and time.monotonic() < deadline + 30:
        time.sleep(0.5)
    assert processes_of(home) == [], "left running after SIGKILL of hydra up"

    second = Up(home, first.ports)  # the same ports: they must be free again
    second.start()
    try:
        second.wait_for("all services up")
        text = second.text()
        line = re.search(r"stopped (\d+) process(es)? left running by a `hydra up` of this home that did not "
                         rf"stop \(pid {first.process.pid}\): (.*)", text)
        if line:  # something outlived it after all: it must not be a process of the new one
            stopped = {int(pid) for pid in re.findall(r"(\d+) \(", line.group(3))}
            assert stopped and not stopped & set(_pids(home)), "it stopped a process of its own"
    finally:
        code = second.end(signal.SIGINT)
    assert code == 0, second.text()
    assert_nothing_left(second)


def _stat(pid: int | str) -> list[str]:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _group(pid: int) -> int:
    return int(_stat(pid)[2]) if _stat(pid) else -1


def _group_alive(pgid: int) -> bool:
    return any((fields := _stat(proc.name)) and int(fields[2]) == pgid and fields[0] != "Z"
               for proc in Path("/proc").iterdir() if proc.name.isdigit())
