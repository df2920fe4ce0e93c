"""Processes as /proc shows them: which are alive, their process groups and start times, and which carry
`hydra up`'s mark — what the supervisor needs to stop exactly what it started and never a recycled pid."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

MARK = "HYDRA_UP_ID"  # set in the supervisor's environment: every process it starts, however deep, carries it


def proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, process group, start time in clock ticks since boot) of a process, None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[2]), int(fields[19])


def processes() -> Iterable[tuple[int, str, int, int]]:
    """(pid, state, process group, start time) of every process."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := proc_stat(int(entry.name))) is not None:
            yield int(entry.name), *stat


def start_time(pid: int) -> int | None:
    stat = proc_stat(pid)
    return stat[2] if stat is not None else None


def boot_id() -> str:
    with contextlib.suppress(OSError):
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    return ""


def is_marked(pid: int, mark: str) -> bool:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:  # gone, or another user's
        return False
    return f"\0{MARK}={mark}\0".encode() in b"\0" + environ


def describe(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return str(pid)
    words = [Path(a.decode(errors="replace")).name if i == 0 else a.decode(errors="replace")
             for i, a in enumerate(argv[:4]) if a]
    return f"{pid} ({' '.join(words)[:60]})"


def leftovers(record: Mapping[str, Any]) -> list[int]:
    """Live processes started by the supervisor `record` describes: carrying its mark, or in a process group
    it started (a group counts only while its leader is gone or is the very process recorded: never a
    recycled pid)."""
    if record.get("boot") != boot_id():
        return []  # rebooted since: nothing of it survived
    mark = record.get("mark")
    groups = {int(c["pgid"]): int(c["start"]) for c in record.get("children", [])}
    ours = {pgid for pgid, started in groups.items() if start_time(pgid) in (None, started)}
    found = []
    for pid, state, group, started in processes():
        if pid == os.getpid() or state == "Z":
            continue
        if (group in ours and started >= groups[group]) or (mark and is_marked(pid, mark)):
            found.append(pid)
    return found


def stop_processes(pids: Sequence[int], grace: float = 10.0) -> None:
    """SIGTERM each, SIGKILL those still there after `grace` seconds (each known by its start time, so a pid
    recycled meanwhile is left alone)."""
    starts = {pid: start_time(pid) for pid in pids}
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 3.0)):
        left = [pid for pid in pids if alive(pid, starts[pid])]
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = [pid for pid in left if alive(pid, starts[pid])]
        if not left:
            return


def alive(pid: int, start: int | None = None) -> bool:
    stat = proc_stat(pid)
    return stat is not None and stat[0] != "Z" and (start is None or stat[2] == start)


def supervisor_gone(mark: str) -> bool:
    """Whether the `hydra up` that set `mark` (its MARK value, "<pid>-<start>-<ns>") is no longer running.

    For processes it starts detached (the predictor service), which no parent-death signal reaches."""
    try:
        pid, start = (int(part) for part in mark.split("-")[:2])
    except ValueError:
        return False  # not a mark we wrote: never a reason to stop
    return not alive(pid, start)
