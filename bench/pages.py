"""Page query benchmark: p95 of the query behind each page, and Labeler Apply of 200 labels, on MariaDB.

    .venv/bin/python bench/make_pages_data.py          # once: 1 M images, 10 M run-history rows (minutes)
    .venv/bin/python bench/pages.py                    # the figures (targets: queries <= 100 ms p95, Apply <= 300 ms)
    .venv/bin/python bench/pages.py --database hydra_bench_small --repeat 10 --json out.json

Every timed call is the store method the page calls (`HydraStore`, over `panel_app.queries`), with the
page's own parameters: a fresh session per call, the connection pool warm, the cache sessions share emptied
(so each call reaches the database), plot types and windows varied between repetitions.  Apply stores 200 painted labels of one plot type in one transaction as the Labeler
does (permission check, label history, audit row), on images taken from the Labeler queue.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import func, select

from hydra_assets.db.engine import HydraDB
from hydra_assets.db.models import Image, Inference, utcnow
from hydra_assets.settings import load_settings
from panel_app.config import PagesConfig
from panel_app.store import SHARED, HydraStore
from panel_app.views_data import BrowseFilter

QUERY_TARGET_MS, APPLY_TARGET_MS = 100.0, 300.0


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def uncached(call: Callable[[], Any]) -> Callable[[], Any]:
    """A read the store shares between sessions for a moment, timed as the first session pays it."""
    return lambda: (SHARED.clear(), call())[1]


def timed(call: Callable[[], Any], repeat: int) -> tuple[list[float], Any]:
    call()  # warm: pool connection, statement caches
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = call()
        times.append((time.perf_counter() - started) * 1000)
    return times, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default="mysql+pymysql://root@127.0.0.1:3306")
    parser.add_argument("--database", default="hydra_bench_pages")
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--apply-repeat", type=int, default=10)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    url = f"{args.server}/{args.database}?charset=utf8mb4"
    db = HydraDB(url)
    settings = load_settings(db_url=url)
    store = HydraStore(db, PagesConfig(settings=settings, sync_mlflow_alias=False), user="bench_labeler")
    rng = random.Random(1)
    with db.read() as s:
        n_images = s.scalar(select(func.count()).select_from(Image))
        n_inferences = s.scalar(select(func.count()).select_from(Inference))
    catalogue = store.catalogue()
    last_alarm = store.last_alarm_id()
    reports = store.reports()
    plot_types = list(catalogue)
    print(f"{args.database}: {n_images:,} images, {n_inferences:,} run-history rows, {len(plot_types)} plot types")

    def pt() -> int:
        return rng.choice(plot_types)

    def labels_of(plot_type_id: int) -> list[int]:
        return [lab.id for lab in catalogue[plot_type_id].labels]

    now = utcnow()
    day = (now - timedelta(hours=24), now)

    def deep_queue_cursor(plot_type_id: int) -> tuple[int, int] | None:
        page = store.labeler_queue(plot_type_id, limit=200)
        return page[-1].queue_key if page else None

    def deep_editor_cursor(plot_type_id: int) -> tuple[Any, int] | None:
        page = store.editor_page(plot_type_id, labels_of(plot_type_id), limit=500)
        return page[-1].editor_key if page else None

    def thresholds() -> Any:
        p = pt()
        return store.thresholds_of(store.active_model(p).id, p)

    def confusion() -> Any:
        return store.confusion(store.active_model(pt()))

    # where a user paging on would stand: after 200 queued images, after 500 labeled ones (found untimed)
    queue_cursors = {p: deep_queue_cursor(p) for p in plot_types}
    editor_cursors = {p: deep_editor_cursor(p) for p in plot_types}

    def queue_after_200() -> Any:
        p = pt()
        return store.labeler_queue(p, limit=100, after=queue_cursors[p])

    def editor_any() -> Any:
        p = pt()
        return store.editor_page(p, labels_of(p), limit=100)

    def editor_one_label_30_days() -> Any:
        p = pt()
        return store.editor_page(p, labels_of(p)[:1], start=now - timedelta(days=30), limit=100)

    def editor_after_500() -> Any:
        p = pt()
        return store.editor_page(p, labels_of(p), before=editor_cursors[p], limit=100)

    def browser(f: BrowseFilter, **kwargs: Any) -> Any:
        """What the Plot Browser runs for one page: the page, then the capped count."""
        return store.browse(f, limit=60, **kwargs), store.browse_count(f, cap=10_000)

    def browse_runs() -> Any:
        first = rng.randrange(100000, 100350)
        return browser(BrowseFilter(run_min=first, run_max=first + 50, plot_type_ids=[pt()], label_name="Good"),
                       sort="run, chunk (descending)")

    def browse_group_page_10() -> Any:
        group = store.plot_types_in(group=f"G{rng.randrange(12):02d}")
        return browser(BrowseFilter(plot_type_ids=group, since=now - timedelta(days=7)), offset=540)

    cases: dict[str, Callable[[], Any]] = {
        "Run: latest image of every plot type": lambda: store.run_grid(fresh=True),
        "Run: alarms since the last poll": lambda: store.alarms_after(last_alarm - 3),
        "Run: news line": uncached(lambda: store.news(limit=1)),
        "catalogue (every page, cached 5 s)": uncached(store.catalogue),
        "Log: flagged in the last 24 h (<= 2000)": lambda: store.log_entries(*day),
        "Library: model versions of a plot type": lambda: store.models_of(pt()),
        "Library: thresholds of the active version": thresholds,
        "Library: confusion matrix (report / inferences)": confusion,
        "Labeler: images to label, all 86 plot types": lambda: store.queue_counts(plot_types),
        "Labeler: queue page (100 images)": lambda: store.labeler_queue(pt(), limit=100),
        "Labeler: queue page after 200 images": queue_after_200,
        "Labeler editor: any label, newest 100": editor_any,
        "Labeler editor: one label, last 30 days": editor_one_label_30_days,
        "Labeler editor: page after 500 images": editor_after_500,
        "Status: stage timings, 24 h": lambda: store.stage_timings(day[0]),
        "Status: images per hour, 24 h": lambda: store.images_per_hour(day[0]),
        "Status: heartbeats": store.heartbeats,
        "Browser: newest 60 + count (capped at 10k)": lambda: browser(BrowseFilter()),
        "Browser: run range + plot type + human label + count": browse_runs,
        "Browser: model label Bad, newest 60": lambda: browser(BrowseFilter(label_source="model", label_name="Bad")),
        "Browser: human label Bad, newest 60 + count": lambda: browser(BrowseFilter(label_name="Bad")),
        "Browser: plot group, last 7 days, page 10 + count": browse_group_page_10,
        "Trends: one plot type, 24 h": lambda: store.trend(pt(), *day),
        "Trends: one plot type, 7 days": lambda: store.trend(pt(), now - timedelta(days=7), now),
        "Training report: disagreements page": lambda: store.disagreements(
            rng.choice(reports).id, limit=24) if reports else None,
    }
    results: dict[str, dict[str, float]] = {}
    width = max(len(name) for name in cases)
    print(f"\n{'query':<{width}}  {'p50 ms':>8}  {'p95 ms':>8}  {'max ms':>8}")
    for name, call in cases.items():
        SHARED.clear()
        times, _ = timed(call, args.repeat)
        results[name] = {"p50_ms": round(statistics.median(times), 2), "p95_ms": round(percentile(times, 95), 2),
                         "max_ms": round(max(times), 2)}
        flag = "" if results[name]["p95_ms"] <= QUERY_TARGET_MS else "  <-- over target"
        print(f"{name:<{width}}  {results[name]['p50_ms']:8.1f}  {results[name]['p95_ms']:8.1f}  "
              f"{results[name]['max_ms']:8.1f}{flag}")

    # ---- Labeler Apply of 200 labels ----------------------------------------------------------------
    apply_times = []
    for _ in range(args.apply_repeat):
        plot_type_id = pt()
        tiles = store.labeler_queue(plot_type_id, limit=200)
        if len(tiles) < 200:
            continue
        label_ids = labels_of(plot_type_id)
        painted = {str(t.image_id): rng.choice(label_ids) for t in tiles}
        started = time.perf_counter()
        changed = store.apply_labels(plot_type_id, painted, shown=[t.image_id for t in tiles])
        apply_times.append((time.perf_counter() - started) * 1000)
        assert changed == 200, changed
    if not apply_times:
        raise SystemExit("no plot type has 200 images in the Labeler queue: generate more images")
    apply = {"p50_ms": round(statistics.median(apply_times), 2), "p95_ms": round(percentile(apply_times, 95), 2),
             "max_ms": round(max(apply_times), 2), "runs": len(apply_times)}
    print(f"\nLabeler Apply of 200 labels ({apply['runs']} runs): p50 {apply['p50_ms']:.1f} ms, "
          f"p95 {apply['p95_ms']:.1f} ms, max {apply['max_ms']:.1f} ms (target {APPLY_TARGET_MS:.0f} ms)")
    worst = max(results.values(), key=lambda r: r["p95_ms"])
    print(f"worst query p95 {worst['p95_ms']:.1f} ms (target {QUERY_TARGET_MS:.0f} ms)")
    if args.json:
        args.json.write_text(json.dumps({"database": args.database, "images": n_images, "inferences": n_inferences,
                                         "repeat": args.repeat, "queries": results, "apply_200": apply}, indent=2))
    db.dispose()


if __name__ == "__main__":
    main()
