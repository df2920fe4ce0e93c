"""A run launcher that starts each run by forking a warm worker process (configured in dagster.yaml).

Why: the default launcher asks the code server to *spawn* a fresh interpreter per run, which then imports
Python's scientific stack, Dagster and the Hydra definitions before the first step — 2 s on an idle
2-core machine, 4 s and more while it is busy (bench/ingest.py), i.e. half of a live chunk's latency.
This launcher keeps one "zygote" process that imported all of that once; each run is a fork of it, which
starts in milliseconds and then executes exactly as `dagster api execute_run` would (same run worker
code, same event log, one process per run, so a crashing run still takes only itself down).

Safety: the zygote never opens a database connection, starts a thread or imports TensorFlow (the warm
predictor service holds the models), so forking it is safe.  It checks the Hydra code's files before
every fork and is replaced when they changed (a `dagster dev` reload picks up new code).  Anything it
cannot serve — another Python executable, a zygote that fails to start — goes through the default
launcher, so runs never stop launching because of this optimisation.

Run monitoring: Dagster's DefaultRunLauncher cannot tell whether a run's worker is alive, so with it a run
whose worker was killed stays "started" forever and run retries never fire (found by
tests/faults/test_fault_run_retry.py).  This launcher knows its workers' pids (tag `hydra/worker_pid`) and
answers the monitoring daemon's health check from them.

Private Dagster API this module depends on (checked against dagster 1.13.27).  Dagster exports no run
launcher API beyond `DefaultRunLauncher`, so a custom launcher needs these names;
tests/test_warm_launcher_api.py imports each one and checks the signature or attribute used here, so a
Dagster upgrade that moves one fails that test with the name instead of failing the first run launch:
- `dagster._core.launcher.LaunchRunContext`: the argument of `launch_run` (we read `.dagster_run`).
- `dagster._core.launcher.CheckRunHealthResult`, `WorkerStatus`: what run monitoring expects from
  `check_run_worker_health` (status RUNNING / FAILED, message, `run_worker_id`).
- `dagster._serdes.ConfigurableClassData`: the `inst_data` a class configured in dagster.yaml receives
  (`config_type` / `from_config_value` are the ConfigurableClass protocol).
- `DefaultRunLauncher._instance` and `._run_ids`: the instance the launcher serves, and the set of runs it
  launched (its own `terminate` and `dispose` use it; we add the runs we fork).
- `dagster._cli.api._execute_run_command_body(run_id, instance, write_stream_fn, set_exit_code_on_failure)`:
  the body of `dagster api execute_run`, i.e. the run worker each fork runs.
- `dagster._core.instance.ref.InstanceRef`: the serialisable instance reference handed to the fork.
- `dagster._utils.interrupts.capture_interrupts`: SIGINT becomes a clean run stop, as in the run worker.
Dagster's own public names (`DefaultRunLauncher`, `DagsterInstance`, `serialize_value`,
`deserialize_value`) come through `import dagster as dg`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.launcher import CheckRunHealthResult, LaunchRunContext, WorkerStatus
from dagster._serdes import ConfigurableClassData

log = logging.getLogger(__name__)
PID_TAG = "hydra/worker_pid"
HOST_TAG = "hydra/worker_host"
HYDRA_ROOT = Path(__file__).resolve().parent  # the hydra_assets package


def code_fingerprint(root: Path = HYDRA_ROOT) -> str:
    """Sizes and mtimes of the Hydra package's Python files: changes whenever the code does."""
    parts = []
    for path in sorted(root.rglob("*.py")):
        try:
            info = path.stat()
        except FileNotFoundError:
            continue
        parts.append(f"{path.relative_to(root)}:{info.st_size}:{info.st_mtime_ns}")
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()


def worker_alive(pid: int) -> bool:
    """Whether process `pid` still runs here.  A killed worker is a zombie until the warm worker reaps it
    (within 5 s), and a zombie still answers signal 0, hence /proc where there is one."""
    proc = Path("/proc")
    if proc.is_dir():
        try:
            stat = (proc / str(pid) / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            return False
        return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


class ZygoteError(RuntimeError):
    """The warm worker could not start a run; the default launcher is used instead."""


class Zygote:
    """The launcher's handle on its warm worker process (one per launcher, started on first use)."""

    def __init__(self, preload: Sequence[str]) -> None:
        self.preload = list(preload)
        self.process: subprocess.Popen[str] | None = None
        self.lock = threading.Lock()

    def _start(self) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "hydra_assets.warm_launcher", *self.preload],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, text=True, bufsize=1,
        )
        ready = process.stdout.readline() if process.stdout else ""
        if not ready.startswith("ready"):
            process.kill()
            raise ZygoteError(f"warm worker did not start: {ready.strip() or 'no answer'}")
        return process

    def fork_run(self, run_id: str, instance_ref: str) -> int:
        """Start run `run_id` in a fork of the warm worker; returns the run worker's pid."""
        with self.lock:
            for attempt in range(2):
                if self.process is None or self.process.poll() is not None:
                    self.process = self._start()
                assert self.process.stdin and self.process.stdout
                try:
                    self.process.stdin.write(json.dumps({"run_id": run_id, "instance_ref": instance_ref}) + "\n")
                    self.process.stdin.flush()
                    reply = json.loads(self.process.stdout.readline() or "{}")
                except (BrokenPipeError, OSError, ValueError) as error:
                    reply = {"error": str(error)}
                if "pid" in reply:
                    return int(reply["pid"])
                self.stop()  # stale code or a broken worker: a fresh one gets the second attempt
                if attempt == 1 or not reply.get("stale"):
                    raise ZygoteError(reply.get("error") or "warm worker gave no pid")
        raise ZygoteError("unreachable")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None


class WarmRunLauncher(dg.DefaultRunLauncher):
    """DefaultRunLauncher that starts runs as forks of a warm worker (see the module docstring)."""

    def __init__(self, inst_data: ConfigurableClassData | None = None,
                 preload_modules: Sequence[str] = ("hydra_assets.definitions",)) -> None:
        super().__init__(inst_data=inst_data)
        self.preload_modules = list(preload_modules)
        self._zygote = Zygote(self.preload_modules)

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {"preload_modules": dg.Field([str], is_required=False, default_value=["hydra_assets.definitions"],
                                            description="Modules the warm worker imports once.")}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]) -> "WarmRunLauncher":
        return cls(inst_data=inst_data, **config_value)

    def _can_fork(self, context: LaunchRunContext) -> bool:
        origin = context.dagster_run.job_code_origin
        if origin is None:
            return False
        executable = origin.repository_origin.executable_path
        return not executable or os.path.realpath(executable) == os.path.realpath(sys.executable)

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        if not self._can_fork(context):
            super().launch_run(context)
            return
        if run.tags.get(PID_TAG):  # a retry inherits its parent's tags: forget the dead parent's worker
            self._instance.add_run_tags(run.run_id, {PID_TAG: ""})
        try:
            pid = self._zygote.fork_run(run.run_id, dg.serialize_value(self._instance.get_ref()))
        except ZygoteError as error:
            log.warning("warm launch of run %s failed (%s); using the default launcher", run.run_id, error)
            super().launch_run(context)
            return
        self._instance.add_run_tags(run.run_id, {PID_TAG: str(pid), HOST_TAG: socket.gethostname()})
        self._run_ids.add(run.run_id)

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        """For run monitoring: FAILED when the forked worker of a started run is gone (then the run is marked
        failed and run retries re-execute it).  Runs this launcher cannot see — launched by the default
        launcher, or on another host — count as running, as they did before this check existed."""
        pid = run.tags.get(PID_TAG)
        if not pid or run.tags.get(HOST_TAG) != socket.gethostname():
            return CheckRunHealthResult(WorkerStatus.RUNNING, "not a warm worker of this host; not checked")
        if worker_alive(int(pid)):
            return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=pid)
        return CheckRunHealthResult(WorkerStatus.FAILED, f"run worker (pid {pid}) is gone", run_worker_id=pid)

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id) if self.has_instance else None
        if run is None or run.is_finished or not run.tags.get(PID_TAG):
            return super().terminate(run_id)
        self._instance.report_run_canceling(run)
        try:
            os.kill(int(run.tags[PID_TAG]), signal.SIGINT)  # Dagster's run worker turns it into a clean stop
        except ProcessLookupError:
            return False
        return True

    def dispose(self) -> None:
        self._zygote.stop()
        super().dispose()


# ---- the warm worker ------------------------------------------------------------------------------------


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _run_child(run_id: str, instance_ref: str) -> int:
    from dagster._cli.api import _execute_run_command_body
    from dagster._core.instance.ref import InstanceRef
    from dagster._utils.interrupts import capture_interrupts

    with capture_interrupts():
        with dg.DagsterInstance.from_ref(dg.deserialize_value(instance_ref, InstanceRef)) as instance:
            return _execute_run_command_body(run_id, instance, lambda _event: None, set_exit_code_on_failure=False)


def zygote_main(preload: Sequence[str]) -> None:
    """Import everything once, then fork one run worker per request read from stdin."""
    import importlib

    try:
        from dagster._cli.api import _execute_run_command_body  # noqa: F401 - fail now, not in each child

        for module in preload:
            importlib.import_module(module)
    except Exception as error:  # reported to the launcher, which falls back
        print(f"error {type(error).__name__}: {error}", flush=True)
        return
    fingerprint = code_fingerprint()
    print("ready", flush=True)
    stdin = sys.stdin
    while True:
        readable, _, _ = select.select([stdin], [], [], 5.0)
        _reap()
        if not readable:
            continue
        line = stdin.readline()
        if not line:
            return  # the launcher went away
        request = json.loads(line)
        if code_fingerprint() != fingerprint:
            print(json.dumps({"stale": True}), flush=True)
            return
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                devnull = os.open(os.devnull, os.O_RDONLY)
                os.dup2(devnull, 0)
                os.dup2(2, 1)  # the run's prints go where the daemon's go, not into the launcher's pipe
                code = _run_child(request["run_id"], request["instance_ref"])
            except BaseException:  # a child must never return into the zygote's loop
                import traceback

                traceback.print_exc()
            finally:
                for stream in (sys.stdout, sys.stderr):
                    with contextlib.suppress(Exception):
                        stream.flush()  # os._exit skips Python's own flushing
                os._exit(code or 0)
        print(json.dumps({"pid": pid}), flush=True)


if __name__ == "__main__":
    try:
        zygote_main(sys.argv[1:])
    except KeyboardInterrupt:  # Ctrl-C of `dagster dev` reaches the whole process group
        pass
