"""Flag computation for one run of 1,000 chunks × 80 plot types, on SQLite and on MariaDB.

    .venv/bin/python bench/flags.py                      # both backends, 1000 chunks x 80 plot types
    .venv/bin/python bench/flags.py --chunks 200 --backends sqlite

Builds the run in a scratch SQLite file and in a MariaDB database `--database` (created, then dropped):
80 plot types (Good / Bad / NoData) in 10 plot groups of 8 and 3 super groups; one image and one
classification per plot type and chunk (confirmed Good; a few unconfirmed; one plot type confirmed Bad
with alarms from chunk 600; a plot type with NoData ignored by its group's rule; 1 % labeled by a person),
rules worst_of / consecutive / bad_share.  Times `compute_run_flags` for the whole run (read, rules, write),
then one new chunk arriving (its 80 images added, the run recomputed, as the chunk job does).  Prints the
figures; with `--json FILE` also writes them.  At the end runs bench/runs_page.py when it exists.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from hydra_assets.db.engine import HydraDB
from hydra_assets.db.migrate import upgrade
from hydra_assets.db.models import (
    Alarm,
    FlagRule,
    Image,
    Inference,
    Label,
    PlotGroup,
    PlotType,
    PlotTypeGrouping,
    Run,
    SuperGroup,
    utcnow,
)
from hydra_assets.flags.compute import compute_run_flags

RUN = 500000
LABELS = ("Good", "Bad", "NoData")
BAD_PLOT_TYPE, NODATA_PLOT_TYPE, BAD_FROM = 3, 17, 600
BATCH = 5000


def build_catalog(db: HydraDB, plot_types: int, groups: int) -> dict[int, dict[str, int]]:
    """Plot types, labels, groups and rules; returns plot type id → label name → label id."""
    def work(s) -> dict[int, dict[str, int]]:  # type: ignore[no-untyped-def]
        supers = [SuperGroup(name=f"System{i}") for i in range(3)]
        s.add_all(supers)
        s.flush()
        group_rows = [PlotGroup(name=f"Group{g:02d}", super_group_id=supers[g % 3].id) for g in range(groups)]
        s.add_all(group_rows)
        s.flush()
        label_ids: dict[int, dict[str, int]] = {}
        for p in range(plot_types):
            plot_type = PlotType(name=f"plot{p:03d}", input_height=32, input_width=32)
            plot_type.labels = [Label(name=n, is_bad=n == "Bad", order=i) for i, n in enumerate(LABELS)]
            s.add(plot_type)
            s.flush()
            s.add(PlotTypeGrouping(plot_group_id=group_rows[p % groups].id, plot_type_id=plot_type.id))
            label_ids[plot_type.id] = {label.name: label.id for label in plot_type.labels}
        s.add(FlagRule(scope="group", group_name=f"Group{NODATA_PLOT_TYPE % groups:02d}", ignore_labels=["NoData"]))
        s.add(FlagRule(scope="group", group_name=f"Group{BAD_PLOT_TYPE % groups:02d}", rule="consecutive",
                       consecutive=3))
        s.add(FlagRule(scope="group", group_name="Group05", rule="bad_share", bad_share=0.05, medium_share=0.01))
        return label_ids

    return db.write(work)


def chunk_rows(label_ids: dict[int, dict[str, int]], chunks: range, first_id: int, rng: random.Random
               ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Images, inferences and alarms for `chunks` of the run, one image per plot type and chunk."""
    images, inferences, alarms = [], [], []
    now, next_id = utcnow(), first_id
    plot_type_ids = sorted(label_ids)
    for chunk in chunks:
        for index, plot_type_id in enumerate(plot_type_ids):
            labels = label_ids[plot_type_id]
            bad = index == BAD_PLOT_TYPE and chunk >= BAD_FROM
            top = "NoData" if index == NODATA_PLOT_TYPE else "Bad" if bad else "Good"
            confirmed = bad or rng.random() > 0.005
            human = labels["Good"] if rng.random() < 0.01 else None
            images.append({"id": next_id, "plot_type_id": plot_type_id, "run_number": RUN, "chunk": chunk,
                           "digest": f"{next_id:064x}", "file_name": f"f{next_id}.png", "received_at": now,
                           "status": "registered", "label_id": human})
            inferences.append({"id": next_id, "image_id": next_id, "plot_type_id": plot_type_id, "run_number": RUN,
                               "chunk": chunk, "model_key": "m/1", "status": "classified", "weights": {},
                               "top_label_id": labels[top], "top_weight": 0.9, "confirmed": confirmed,
                               "is_bad": bad, "flagged": bad or not confirmed, "classified_at": now})
            if bad:
                alarms.append({"inference_id": next_id, "image_id": next_id, "plot_type_id": plot_type_id,
                               "label_id": labels["Bad"], "kind": "bad", "message": "confirmed Bad",
                               "raised_at": now})
            next_id += 1
    return images, inferences, alarms


def insert_rows(db: HydraDB, images, inferences, alarms) -> None:  # type: ignore[no-untyped-def]
    for model, rows in ((Image, images), (Inference, inferences), (Alarm, alarms)):
        for start in range(0, len(rows), BATCH):
            db.write(lambda s, part=rows[start:start + BATCH], table=model.__table__: s.execute(insert(table), part))


def timed(db: HydraDB, repeat: int) -> dict[str, float]:
    totals, reads, rules, writes = [], [], [], []
    result = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = compute_run_flags(db, RUN)
        totals.append((time.perf_counter() - started) * 1000)
        reads.append(result.read_ms)
        rules.append(result.rules_ms)
        writes.append(result.write_ms)
    assert result is not None
    return {"median_ms": statistics.median(totals), "max_ms": max(totals), "read_ms": statistics.median(reads),
            "rules_ms": statistics.median(rules), "write_ms": statistics.median(writes), "ranges": result.rows,
            "images": result.images, "chunks": result.chunks, "alarms": result.alarms}


def bench(url: str, chunks: int, plot_types: int, groups: int, repeat: int) -> dict[str, Any]:
    upgrade(url)
    db = HydraDB(url)
    try:
        rng = random.Random(1)
        started = time.perf_counter()
        label_ids = build_catalog(db, plot_types, groups)
        db.write(lambda s: s.add(Run(number=RUN)))
        images, inferences, alarms = chunk_rows(label_ids, range(chunks), 1, rng)
        insert_rows(db, images, inferences, alarms)
        build_s = time.perf_counter() - started
        whole = timed(db, repeat)
        more_images, more_inferences, more_alarms = chunk_rows(label_ids, range(chunks, chunks + 1),
                                                               len(images) + 1, rng)
        started = time.perf_counter()
        insert_rows(db, more_images, more_inferences, more_alarms)
        first = compute_run_flags(db, RUN)
        incremental_ms = (time.perf_counter() - started) * 1000
        return {"backend": db.backend, "build_s": round(build_s, 1), "whole_run": whole,
                "new_chunk_ms": round(incremental_ms, 1),
                "new_chunk_compute_ms": round(first.read_ms + first.rules_ms + first.write_ms, 1)}
    finally:
        db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=1000)
    parser.add_argument("--plot-types", type=int, default=80)
    parser.add_argument("--groups", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--backends", default="sqlite,mysql")
    parser.add_argument("--server", default="mysql+pymysql://root@127.0.0.1:3306")
    parser.add_argument("--database", default="hydra_bench_flags")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    print(f"flag computation: run of {args.chunks} chunks x {args.plot_types} plot types "
          f"({args.chunks * args.plot_types} images), {args.groups} plot groups, 3 super groups", flush=True)
    figures = []
    for backend in args.backends.split(","):
        if backend == "sqlite":
            with tempfile.TemporaryDirectory() as folder:
                figures.append(bench(f"sqlite:///{folder}/bench.db", args.chunks, args.plot_types, args.groups,
                                     args.repeat))
        else:
            import pymysql

            connection = pymysql.connect(host="127.0.0.1", port=3306, user="root", autocommit=True)
            with connection.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS `{args.database}`")
                cursor.execute(f"CREATE DATABASE `{args.database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
            try:
                figures.append(bench(f"{args.server}/{args.database}?charset=utf8mb4", args.chunks, args.plot_types,
                                     args.groups, args.repeat))
            finally:
                with connection.cursor() as cursor:
                    cursor.execute(f"DROP DATABASE IF EXISTS `{args.database}`")
                connection.close()
        f = figures[-1]
        w = f["whole_run"]
        print(f"{f['backend']:>8}: data built in {f['build_s']} s; whole run ({w['images']} images, "
              f"{w['chunks']} chunks, {w['alarms']} alarms -> {w['ranges']} ranges): median {w['median_ms']:.0f} ms "
              f"(read {w['read_ms']:.0f}, rules {w['rules_ms']:.0f}, write {w['write_ms']:.0f}), max "
              f"{w['max_ms']:.0f} ms over {args.repeat}; one new chunk (80 images stored + run recomputed): "
              f"{f['new_chunk_ms']:.0f} ms (compute {f['new_chunk_compute_ms']:.0f} ms)", flush=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    runs_page = Path(__file__).with_name("runs_page.py")
    if runs_page.exists():
        print("\nRuns page query (bench/runs_page.py):", flush=True)
        subprocess.run([sys.executable, str(runs_page)], check=False)


if __name__ == "__main__":
    main()
