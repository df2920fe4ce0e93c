"""Starting, watching and stopping the platform's services as child processes (`hydra up`).

Each service runs in its own process group so that stopping it also stops whatever it spawned
(Dagster's webserver starts code-server subprocesses, the daemon starts run workers); nothing may
outlive `hydra up`, however it ends:

- a signal (Ctrl-C, `kill`, the terminal closing) or a crash of its loop: it stops every group it started;
- SIGKILL (nothing of it runs any more): each child gets SIGTERM from the kernel (a parent-death signal),
  and the next `hydra up` of the same home reads the pid file this one left (`RunRecord`) and stops what
  is left of it, found by process group and by a mark in the environment every descendant inherits.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import functools
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from hydra_assets.processes import (
    MARK,
    boot_id,
    describe,
    is_marked,
    leftovers,
    processes,
    start_time,
    stop_processes,
)

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


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


@functools.cache
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def parent_death_signal(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A `preexec_fn` that makes the kernel send `sig` to the child when this process dies, SIGKILL included.

    Linux only (prctl). The signal follows the *thread* that forked: start children from the main thread.
    """
    libc = _libc()
    if libc is None:
        return None
    parent = os.getpid()

    def arm() -> None:
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl: no signal would ever come
            os.kill(os.getpid(), sig)

    return arm


@dataclass
class Service:
    """One child process of the platform.

    `restart` (opt-in): when the service exits it is started again after `backoff_s` (doubling each time), at
    most `max_restarts` times within `restart_window_s`; the next exit in that window is a failure.
    """

    name: str
    command: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    port: int | None = None
    host: str = "127.0.0.1"
    ready_url: str | None = None  # polled until it answers; None = ready once started
    url: str | None = None  # shown to the user
    log_path: Path | None = None
    one_shot: bool = False  # a job that ends (the demo set-up): exit 0 is done, not a failure
    restart: bool = False
    max_restarts: int = 3
    restart_window_s: float = 600.0
    backoff_s: float = 5.0
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None
    restarted_at: list[float] = field(default_factory=list)  # monotonic times of the restarts in the window
    restart_due: float | None = None  # when the pending restart is due
    gave_up: bool = False  # exited once more than the restart policy allows
    start_ticks: int | None = None  # the process's start time (/proc): tells it from a recycled pid

    def check_port(self) -> None:
        if self.port is not None and not port_is_free(self.host, self.port):
            raise ServiceError(
                f"port {self.port} on {self.host} is already taken, so {self.name} cannot start; stop what uses it "
                f"(e.g. `ss -ltnp 'sport = :{self.port}'`) or choose another port (see `hydra up --help`)"
            )

    def start(self, cwd: Path) -> None:
        self.check_port()
        if self.log_path is not None and self._log is None:
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
            preexec_fn=parent_death_signal(),  # SIGTERM if we are SIGKILLed
        )
        self.start_ticks = start_time(self.process.pid)

    def note(self, line: str) -> None:
        """A line of ours in the service's log, between its own lines."""
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.write(f"--- hydra up: {line}\n".encode())
                self._log.flush()

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

    def stop(self, grace: float = 15.0, *, close_log: bool = True) -> None:
        """SIGTERM the whole process group, then SIGKILL what is left after `grace` seconds."""
        if self.process is None:
            return
        stop_group(self.process.pid, grace, leader=self.process, start=self.start_ticks)
        if close_log and self._log is not None:
            self._log.close()
            self._log = None


def stop_group(pgid: int, grace: float, *, leader: subprocess.Popen[bytes] | None = None,
               start: int | None = None) -> None:
    """SIGTERM a process group, SIGKILL it after `grace` seconds; reaps `leader` if it is our child.

    `start`: the leader's start time; a live process with the group's number but another start time is a
    recycled pid (our leader is gone and reaped, and so is the rest of its group): left alone."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        if start is not None and start_time(pgid) not in (None, start):
            break
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if leader is not None:
                leader.poll()  # reap it, else a zombie leader keeps the group "alive"
            if not _group_alive(pgid):
                break
            time.sleep(0.1)
        else:
            continue
        break
    if leader is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            leader.wait(timeout=1.0)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return any(state != "Z" for _, state, group, _ in processes() if group == pgid)


def exit_text(code: int | None) -> str:
    """`code 1`, or `killed by SIGKILL` for a negative return code."""
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"code {code}"


def _ordinal(n: int) -> str:
    return f"{n}{'tsnrhtdd'[(n // 10 % 10 != 1) * (n % 10 < 4) * n % 10::4]}"


class AlreadyRunning(ServiceError):
    """Another supervisor holds this home."""


class RunRecord:
    """The pid file of a running supervisor: its pid, and each child's process group and start time.

    Held under an exclusive lock (`<name>.lock`) for the supervisor's lifetime, which the kernel releases
    however it dies; a pid file whose lock is free was left by a supervisor that did not stop cleanly.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_suffix(".lock")
        self.mark = ""
        self._lock: IO[str] | None = None

    def read(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def claim(self, grace: float = 10.0) -> tuple[dict[str, Any], list[str]]:
        """Take this home for this process; stop what a dead supervisor left running.

        Returns the dead supervisor's record and what was stopped (described); raises AlreadyRunning when a
        live supervisor holds the home. Marks this process's environment: everything it starts carries it.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = self.lock_path.open("a")  # not inherited by children (O_CLOEXEC)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            other = self.read()
            who = f" (pid {other['pid']}, since {other.get('started', '?')})" if other.get("pid") else ""
            raise AlreadyRunning(
                f"`hydra up` is already running for this Hydra home{who}; stop it first (Ctrl-C in its terminal"
                f"{', or `kill ' + str(other['pid']) + '`' if other.get('pid') else ''}), or use another HYDRA_HOME"
            ) from None
        self._lock = lock
        previous = self.read()
        stopped: list[str] = []
        if previous:
            pids = leftovers(previous)
            stopped = [describe(pid) for pid in pids]
            stop_processes(pids, grace)
        self.mark = f"{os.getpid()}-{start_time(os.getpid())}-{time.time_ns()}"
        os.environ[MARK] = self.mark
        self.write([])
        return previous, stopped

    def write(self, services: Sequence[Service]) -> None:
        """Record this supervisor and its children now (after every start: a restart changes the group)."""
        record = {
            "pid": os.getpid(), "start": start_time(os.getpid()), "boot": boot_id(), "mark": self.mark,
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "children": [{"name": s.name, "pgid": s.process.pid, "start": s.start_ticks}
                         for s in services if s.process is not None and s.start_ticks is not None],
        }
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_text(json.dumps(record, indent=1))
        temporary.replace(self.path)

    def release(self) -> None:
        """A clean stop: no pid file any more, and the home free for the next supervisor."""
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)
        if self._lock is not None:
            self._lock.close()
            self._lock = None


class Supervisor:
    """Starts services in order, restarts only those that ask for it (saying so), and stops all on exit."""

    def __init__(self, services: Sequence[Service], *, cwd: Path, record: RunRecord | None = None,
                 say: Callable[[str], None] | None = None) -> None:
        self.services = list(services)
        self.cwd = cwd
        self.started: list[Service] = []
        self.record = record
        self.say = say or log.warning

    def check_ports(self) -> None:
        for service in self.services:
            service.check_port()

    def _start(self, service: Service) -> None:
        service.start(self.cwd)
        if service not in self.started:
            self.started.append(service)
        if self.record is not None:
            self.record.write(self.started)

    def start_all(self, *, ready_timeout: float = 180.0) -> None:
        self.check_ports()  # before starting anything: a taken port fails fast and cleanly
        try:
            services = [s for s in self.services if not s.one_shot]
            for service in services:
                self._start(service)
            deadline = time.monotonic() + ready_timeout
            for service in services:
                service.wait_ready(deadline)
            for job in (s for s in self.services if s.one_shot):  # jobs start once the services answer
                self._start(job)
        except BaseException:
            self.stop_all()
            raise

    def watch(self) -> Service | None:
        """One look at the services: start again those due for a restart; the first one that stopped for good.

        Call it from the thread that started the services (the parent-death signal follows that thread).
        """
        now = time.monotonic()
        for service in self.started:
            if not service.restart or service.one_shot or service.gave_up:
                continue
            if service.restart_due is not None:
                if now >= service.restart_due:
                    self._restart(service, now)
                continue
            if not service.failed:
                continue
            code = exit_text(service.process.returncode if service.process else None)
            service.restarted_at = [t for t in service.restarted_at if now - t < service.restart_window_s]
            count = len(service.restarted_at)
            if count >= service.max_restarts:
                service.gave_up = True
                line = (f"{service.name} exited ({code}) after {count} restarts within "
                        f"{service.restart_window_s:g} s; not restarting it again")
            else:
                delay = service.backoff_s * 2**count
                service.restart_due = now + delay
                line = f"{service.name} exited ({code}); restarting in {delay:g} s, {_ordinal(count + 1)} restart"
            service.note(line)
            self.say(line)
        return self.first_failure()

    def _restart(self, service: Service, now: float) -> None:
        service.restart_due = None
        service.restarted_at.append(now)
        service.stop(grace=5.0, close_log=False)  # what its group left behind (a port, a child)
        try:
            self._start(service)
        except ServiceError as error:  # e.g. its port still taken: counts as one more exit
            service.note(str(error))
            self.say(f"{service.name} could not start again: {error}")
            return
        service.note("started again")

    def first_failure(self) -> Service | None:
        """The first service that stopped and will not be restarted; a one-shot job's end is its caller's."""
        return next((s for s in self.started if s.failed and not s.one_shot and (not s.restart or s.gave_up)),
                    None)

    def stop_all(self) -> None:
        for service in reversed(self.started):
            service.stop()
        self.started.clear()

    def close(self, grace: float = 10.0) -> list[str]:
        """The end, however it came: stop every service, then whatever else carries this supervisor's mark
        (processes the services left in other sessions, the detached predictor); release the record.

        Returns what the sweep found beyond the services (described)."""
        try:
            self.stop_all()
        finally:
            swept: list[str] = []
            if self.record is not None:
                if self.record.mark:
                    pids = [pid for pid, state, _, _ in processes()
                            if state != "Z" and pid != os.getpid() and is_marked(pid, self.record.mark)]
                    swept = [describe(pid) for pid in pids]
                    stop_processes(pids, grace)
                self.record.release()
        return swept
