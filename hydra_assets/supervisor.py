"""Starting, watching and stopping the platform's services as child processes (`hydra up`).

Each service runs in its own process group so that stopping it also stops whatever it spawned
(Dagster's webserver starts code-server subprocesses, the daemon starts run workers); nothing may
outlive `hydra up`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


class ServiceError(RuntimeError):
    """A service could not start (port taken, crashed at start, never became ready)."""


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def http_ready(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # our own localhost URL
            return response.status < 500
    except urllib.error.HTTPError as error:
        return error.code < 500  # a login redirect or 401 still means "up"
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class Service:
    """One child process of the platform."""

    name: str
    command: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    port: int | None = None
    host: str = "127.0.0.1"
    ready_url: str | None = None  # polled until it answers; None = ready once started
    url: str | None = None  # shown to the user
    log_path: Path | None = None
    one_shot: bool = False  # a job that ends (the demo set-up): exit 0 is done, not a failure
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    def check_port(self) -> None:
        if self.port is not None and not port_is_free(self.host, self.port):
            raise ServiceError(
                f"port {self.port} on {self.host} is already taken, so {self.name} cannot start; stop what uses it "
                f"(e.g. `ss -ltnp 'sport = :{self.port}'`) or choose another port (see `hydra up --help`)"
            )

    def start(self, cwd: Path) -> None:
        self.check_port()
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            list(self.command),
            cwd=cwd,
            env={**os.environ, **self.env},
            stdin=subprocess.DEVNULL,
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: we stop it and its children together
        )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def failed(self) -> bool:
        """Stopped when it should not have: any exit of a service, a non-zero exit of a one-shot job."""
        if self.process is None or self.process.poll() is None:
            return False
        return not self.one_shot or self.process.returncode != 0

    def wait_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self.one_shot and not self.failed:
                return
            if not self.running:
                raise ServiceError(f"{self.name} exited at start (code {self.process.returncode if self.process else '?'})"
                                   f"; see {self.log_path}")
            if self.ready_url is None or http_ready(self.ready_url):
                return
            time.sleep(0.5)
        raise ServiceError(f"{self.name} did not answer at {self.ready_url} in time; see {self.log_path}")

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM the whole process group, then SIGKILL what is left after `grace` seconds."""
        if self.process is None:
            return
        pgid = self.process.pid
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
            if not _group_alive(pgid):
                break
            time.sleep(min(wait, 2.0))
            if not _group_alive(pgid):
                break
        if self._log is not None:
            self._log.close()
            self._log = None


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Supervisor:
    """Starts services in order, restarts none silently, and stops all of them on exit."""

    def __init__(self, services: Sequence[Service], *, cwd: Path) -> None:
        self.services = list(services)
        self.cwd = cwd
        self.started: list[Service] = []

    def check_ports(self) -> None:
        for service in self.services:
            service.check_port()

    def start_all(self, *, ready_timeout: float = 180.0) -> None:
        self.check_ports()  # before starting anything: a taken port fails fast and cleanly
        try:
            services = [s for s in self.services if not s.one_shot]
            for service in services:
                service.start(self.cwd)
                self.started.append(service)
            deadline = time.monotonic() + ready_timeout
            for service in services:
                service.wait_ready(deadline)
            for job in (s for s in self.services if s.one_shot):  # jobs start once the services answer
                job.start(self.cwd)
                self.started.append(job)
        except BaseException:
            self.stop_all()
            raise

    def first_failure(self) -> Service | None:
        """The first service that stopped; a one-shot job's end (done or failed) is its caller's to report."""
        return next((s for s in self.started if s.failed and not s.one_shot), None)

    def stop_all(self) -> None:
        for service in reversed(self.started):
            service.stop()
        self.started.clear()
