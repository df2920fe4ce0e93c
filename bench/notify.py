"""Notifier and run-conditions import: what a pass and an import cost, on SQLite and on MariaDB.

    .venv/bin/python bench/notify.py                  # both parts, both databases
    .venv/bin/python bench/notify.py --alarms 2000 --runs 20000 --backends sqlite

(a) notifier: a flood of N alarms in a plot group with three targets (a local webhook, a local SMTP server
    and a webhook nobody listens on): the pass that queues and sends them (one message per live target),
    then an idle pass with nothing new (what the sensor pays every 30 s).
(b) run conditions: a CSV of N runs (half of them known to Hydra already) imported with `hydra runs import`'s
    function; then the same file again (every run known).
Everything runs in fresh databases (a temporary SQLite file, a new MariaDB database dropped at the end).
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hydra_assets import catalog
from hydra_assets.db.engine import HydraDB
from hydra_assets.db.migrate import upgrade
from hydra_assets.db.models import Alarm, Image, Inference, Run, utcnow
from hydra_assets.notify import add_target, dispatch
from hydra_assets.run_conditions import import_conditions
from hydra_assets.settings import load_settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sink(BaseHTTPRequestHandler):
    received = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Sink.received += 1
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def database(backend: str, folder: Path) -> tuple[HydraDB, object]:
    if backend == "sqlite":
        url = f"sqlite:///{folder / 'hydra.db'}"
        drop = None
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from conftest import MYSQL_SERVER, fresh_mysql_database

        url, drop = fresh_mysql_database(MYSQL_SERVER, prefix="hydra_bench")
    upgrade(url)
    return HydraDB(url), drop


def bench_notifier(backend: str, alarms: int, folder: Path) -> None:
    from aiosmtpd.controller import Controller

    class Box:
        count = 0

        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            Box.count += 1
            return "250 OK"

    db, drop = database(backend, folder)
    smtp_port = free_port()
    smtp = Controller(Box(), hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    http = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    settings = load_settings(home=folder / "home", db_url=db.url, smtp_host="127.0.0.1", smtp_port=smtp_port,
                             notify_timeout_seconds=2)
    try:
        plot_id = db.write(lambda s: catalog.add_plot_type(s, "tpc", "Good,Bad", "Bad", groups=["TPC"]).id)
        db.write(lambda s: add_target(s, kind="webhook", address=f"http://127.0.0.1:{http.server_address[1]}/h",
                                      group="TPC"))
        db.write(lambda s: add_target(s, kind="email", address="shift@dqm.example", group=None))
        db.write(lambda s: add_target(s, kind="webhook", address=f"http://127.0.0.1:{free_port()}/dead", group=None))

        def flood(s):  # type: ignore[no-untyped-def]
            for chunk in range(alarms):
                image = Image(plot_type_id=plot_id, run_number=1, chunk=chunk, digest=str(chunk), file_name="x.png")
                s.add(image)
                s.flush()
                inference = Inference(image_id=image.id, plot_type_id=plot_id, run_number=1, chunk=chunk,
                                      model_key="m/1")
                s.add(inference)
                s.flush()
                s.add(Alarm(inference_id=inference.id, image_id=image.id, plot_type_id=plot_id, message="Bad (0.9)"))

        db.write(flood)
        now = utcnow() + timedelta(seconds=10)
        passes, queued, sent, failed, started = 0, 0, 0, [], time.perf_counter()
        while True:  # the sensor's passes, back to back, until the flood is queued and told
            outcome = dispatch(db, settings, now + timedelta(seconds=passes))
            passes += 1
            queued, sent, failed = queued + outcome.queued, sent + outcome.sent, failed + outcome.failed
            if outcome.queued == 0:
                break
        flood_s = time.perf_counter() - started
        started = time.perf_counter()
        idle = dispatch(db, settings, now + timedelta(seconds=passes + 20))
        idle_s = time.perf_counter() - started
        print(f"[{backend}] notifier, flood of {alarms} alarms, 3 targets: {passes} passes, {flood_s * 1000:.0f} ms "
              f"in all ({queued} notifications queued, {sent} messages sent: webhook {Sink.received}, "
              f"e-mail {Box.count}; {len(failed)} failed: {failed[0].error if failed else '-'})")
        print(f"[{backend}] notifier, idle pass (nothing new, {queued} rows in notifications): "
              f"{idle_s * 1000:.0f} ms ({idle.queued} queued, {idle.sent} sent)")
        Sink.received = 0
    finally:
        smtp.stop()
        http.shutdown()
        db.dispose()
        if drop:
            drop()


def bench_conditions(backend: str, runs: int, folder: Path) -> None:
    db, drop = database(backend, folder)
    try:
        now = utcnow()
        db.write(lambda s: s.add_all([Run(number=n, first_seen=now, last_seen=now, image_count=1, conditions={})
                                      for n in range(0, runs, 2)]))
        source = folder / "conditions.csv"
        lines = ["run,beam_energy,target,trigger,run_type,start,end"]
        lines += [f"{n},{10 + n % 7 / 10},LH2,physics_v{n % 3},production,2026-11-30T08:00:00Z,2026-11-30T09:00:00Z"
                  for n in range(runs)]
        source.write_text("\n".join(lines) + "\n")
        for label in ("half the runs new", "every run known"):
            started = time.perf_counter()
            report = import_conditions(db, str(source))
            elapsed = time.perf_counter() - started
            print(f"[{backend}] run conditions, {runs} CSV rows ({label}): {elapsed:.2f} s "
                  f"({runs / elapsed:,.0f} rows/s; {len(report.updated)} updated, {len(report.created)} created)")
    finally:
        db.dispose()
        if drop:
            drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alarms", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--backends", default="sqlite,mysql")
    args = parser.parse_args()
    for backend in args.backends.split(","):
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            bench_notifier(backend, args.alarms, Path(a))
            bench_conditions(backend, args.runs, Path(b))


if __name__ == "__main__":
    main()
