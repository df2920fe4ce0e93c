"""Reference-score queries behind the pages (issue 14), on MariaDB: p50 / p95 of each store method.

    .venv/bin/python bench/reference_pages.py                      # 200,000 images, 86 plot types (a minute)
    .venv/bin/python bench/reference_pages.py --images 50000 --repeat 20
    .venv/bin/python bench/reference_pages.py --reuse            # time the database built before

Builds its own database (`--database`, dropped and made again): plot types, images spread over 30 days and
400 runs, a run-time row per plot type, two reference versions per plot type, a v1 score for every image and a
v2 score for the newer half (about 2 % flagged), as the pipeline's reference step leaves them.  Each timed call
is the store method a page calls, the cache sessions share emptied first.  Target: 100 ms p95, as bench/pages.py.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, insert, text

from hydra_assets import catalog
from hydra_assets.db.engine import HydraDB
from hydra_assets.db.migrate import upgrade
from hydra_assets.db.models import Image, ReferenceScore, ReferenceSet, RunTime, utcnow
from hydra_assets.settings import load_settings
from panel_app.config import PagesConfig
from panel_app.store import SHARED, HydraStore
from panel_app.views_data import REFERENCE_SORT, BrowseFilter

TARGET_MS = 100.0


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def build(server: str, database: str, n_images: int, n_types: int, seed: int = 3) -> HydraDB:
    """A fresh database with the rows the reference pages read."""
    admin = create_engine(f"{server}/?charset=utf8mb4")
    with admin.begin() as connection:
        connection.execute(text(f"DROP DATABASE IF EXISTS `{database}`"))
        connection.execute(text(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4"))
    admin.dispose()
    url = f"{server}/{database}?charset=utf8mb4"
    upgrade(url)
    db = HydraDB(url)
    rng = random.Random(seed)
    now = utcnow()
    start = now - timedelta(days=30)

    def catalogue(s) -> list[int]:  # type: ignore[no-untyped-def]
        catalog.ensure_roles(s)
        catalog.add_user(s, "bench_expert", role="expert")
        return [catalog.add_plot_type(s, f"PT{k:03d}", ["Good", "Bad"], ["Bad"], groups=[f"G{k % 12:02d}"]).id
                for k in range(n_types)]

    types = db.write(catalogue, what="bench catalogue")
    per_type = n_images // n_types
    step = timedelta(days=30) / per_type
    image_id = 0
    with db.engine.begin() as connection:
        for pt in types:
            sets = [{"plot_type_id": pt, "version": v, "runs": [100000 + v], "rule": "expert", "chosen_by": "bench",
                     "chosen_at": start + timedelta(days=15 * (v - 1)), "n_images": 40, "quantile": 0.99,
                     "score_limit": 3.0, "active": v == 2} for v in (1, 2)]
            connection.execute(insert(ReferenceSet), sets)
            images, scores = [], []
            for k in range(per_type):
                image_id += 1
                at = start + step * k
                run, chunk = 100000 + k * 400 // per_type, k % 50
                images.append({"id": image_id, "plot_type_id": pt, "run_number": run, "chunk": chunk,
                               "digest": f"{image_id:064d}", "file_name": f"{image_id}.png", "stored_path": "",
                               "received_at": at, "status": "registered"})
                versions = (1, 2) if k >= per_type // 2 else (1,)
                for v in versions:
                    score = rng.lognormvariate(0.3, 0.5)
                    scores.append({"image_id": image_id, "plot_type_id": pt, "run_number": run, "chunk": chunk,
                                   "reference_version": v, "status": "scored", "score": score, "score_limit": 3.0,
                                   "flagged": score > 3.0, "computed_at": at + timedelta(seconds=v)})
            connection.execute(insert(Image), images)
            for first in range(0, len(scores), 20000):
                connection.execute(insert(ReferenceScore), scores[first:first + 20000])
            connection.execute(insert(RunTime), [{"plot_type_id": pt, "image_id": image_id, "run_number": run,
                                                  "chunk": chunk, "updated_at": at}])
    return db


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default="mysql+pymysql://root@127.0.0.1:3306")
    parser.add_argument("--database", default="hydra_bench_reference")
    parser.add_argument("--images", type=int, default=200_000)
    parser.add_argument("--plot-types", type=int, default=86)
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--reuse", action="store_true", help="time the database a previous run built")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.reuse:
        db = HydraDB(f"{args.server}/{args.database}?charset=utf8mb4")
    else:
        db = build(args.server, args.database, args.images, args.plot_types)
    with db.read() as s:
        n_scores = s.scalar(text("SELECT COUNT(*) FROM reference_scores"))
    print(f"{args.database}: {args.images:,} images, {n_scores:,} reference scores, {args.plot_types} plot types "
          f"(built in {time.perf_counter() - started:.0f} s)")
    settings = load_settings(db_url=db.url)
    store = HydraStore(db, PagesConfig(settings=settings, sync_mlflow_alias=False), user="bench_expert")
    types = list(store.catalogue())
    rng = random.Random(1)
    now = utcnow()

    def pt() -> int:
        return rng.choice(types)

    def browse(f: BrowseFilter, sort: str) -> Any:
        return store.browse(f, sort=sort, limit=60), store.browse_count(f, cap=10_000)

    cases: dict[str, Callable[[], Any]] = {
        "Run: latest image of every plot type, with scores": lambda: store.run_grid(fresh=True),
        "Log: flagged by the reference, 24 h": lambda: store.flagged_by_reference(now - timedelta(hours=24)),
        "Log: flagged by the reference, 7 days": lambda: store.flagged_by_reference(now - timedelta(days=7)),
        "Trends: reference score, one plot type, 24 h": lambda: store.reference_trend(pt(), now - timedelta(hours=24)),
        "Trends: reference score, one plot type, 7 days": lambda: store.reference_trend(pt(), now - timedelta(days=7)),
        "Library: reference history": lambda: store.reference_sets(pt()),
        "Browser: one plot type by reference score + count": lambda: browse(BrowseFilter(plot_type_ids=[pt()]),
                                                                           REFERENCE_SORT),
        "Browser: one plot type above the limit + count": lambda: browse(
            BrowseFilter(plot_type_ids=[pt()], reference_above_limit=True), "newest first"),
        "Browser: one plot group (~7 types) by reference score + count": lambda: browse(
            BrowseFilter(plot_type_ids=store.plot_types_in(group=f"G{rng.randrange(12):02d}")), REFERENCE_SORT),
        "Browser: every image by reference score (the page refuses it)": lambda: browse(BrowseFilter(),
                                                                                       REFERENCE_SORT),
    }
    print(f"{'query behind the page':<55} {'p50 ms':>8} {'p95 ms':>8}")
    for name, call in cases.items():
        call()
        times = []
        for _ in range(args.repeat):
            SHARED.clear()
            begun = time.perf_counter()
            call()
            times.append((time.perf_counter() - begun) * 1000)
        p95 = percentile(times, 95)
        flag = "" if p95 <= TARGET_MS else f"  (over the {TARGET_MS:.0f} ms target)"
        print(f"{name:<55} {statistics.median(times):8.1f} {p95:8.1f}{flag}")
    db.dispose()


if __name__ == "__main__":
    main()
