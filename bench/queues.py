"""Ranked Labeler queues benchmark: the time to open each queue (its order over the newest 5,000 unlabeled
queued images) and the audit queue, on SQLite and on MariaDB.

    .venv/bin/python bench/queues.py                          # 20,000 queued images per backend, 5 repeats
    .venv/bin/python bench/queues.py --images 50000 --backends mysql

The database: one plot type (3 labels), `--images` unlabeled queued images, each with one classification
(weights, novelty score and limit) and a reference score, the oldest 2,000 labeled with label checks (100
issues).  Timed: `HydraStore.ranked_queue` for each ranked queue plus the first page's tiles (what the
Labeler reads when a queue opens), and `audit_queue`, a fresh session per call.  Prints p50 / max in ms.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert  # noqa: E402

from hydra_assets import catalog  # noqa: E402
from hydra_assets.db.engine import HydraDB  # noqa: E402
from hydra_assets.db.migrate import upgrade  # noqa: E402
from hydra_assets.db.models import Image, Inference, LabelCheck, Model, ReferenceScore, utcnow  # noqa: E402
from hydra_assets.settings import load_settings  # noqa: E402
from panel_app.config import PagesConfig  # noqa: E402
from panel_app.store import SHARED, HydraStore  # noqa: E402

LABELED = 2000


def build(db: HydraDB, images: int) -> int:
    rng = random.Random(1)

    def base(s):  # type: ignore[no-untyped-def]
        plot = catalog.add_plot_type(s, "Q", "Good,Bad,NoData", "Bad", input_size=(32, 32))
        s.flush()
        model = Model(plot_type_id=plot.id, mlflow_name="hydra-Q", mlflow_version="1", topology="compact",
                      input_height=32, input_width=32, label_names=["Good", "Bad", "NoData"], active=True)
        s.add(model)
        s.flush()
        return plot.id, model.id, [lab.id for lab in catalog.labels_of(s, plot)]

    plot_id, model_id, labels = db.write(base)
    now = utcnow()
    total = images + LABELED
    with db.engine.begin() as c:
        for start in range(0, total, 5000):
            rows = range(start, min(total, start + 5000))
            c.execute(insert(Image), [dict(id=k + 1, plot_type_id=plot_id, run_number=1000 + k // 100, chunk=k % 100,
                                           digest=f"{k:064d}", file_name=f"Q-{k}.png", received_at=now,
                                           label_id=labels[k % 3] if k < LABELED else None,
                                           queue_priority=None if k < LABELED else k % 2) for k in rows])
            inferences, scores = [], []
            for k in rows:
                w = [rng.random() for _ in labels]
                total_w = sum(w)
                weights = {name: round(v / total_w, 6) for name, v in zip(("Good", "Bad", "NoData"), w, strict=True)}
                inferences.append(dict(image_id=k + 1, plot_type_id=plot_id, run_number=1000 + k // 100, chunk=k % 100,
                                       model_id=model_id, model_key="hydra-Q/1", weights=weights,
                                       top_label_id=labels[0], top_weight=max(weights.values()),
                                       novelty=rng.random() * 3, novelty_limit=1.5, classified_at=now))
                scores.append(dict(image_id=k + 1, plot_type_id=plot_id, run_number=1000 + k // 100, chunk=k % 100,
                                   reference_version=1, score=rng.random() * 2, score_limit=1.0, computed_at=now))
            c.execute(insert(Inference), inferences)
            c.execute(insert(ReferenceScore), scores)
        c.execute(insert(LabelCheck), [dict(model_id=model_id, plot_type_id=plot_id, image_id=k + 1,
                                            given_label_id=labels[k % 3], suggested_label_id=labels[(k + 1) % 3],
                                            self_confidence=0.1, is_issue=k < 100, rank=k, created_at=now)
                                       for k in range(LABELED)])
    return plot_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--backends", default="sqlite,mysql")
    parser.add_argument("--server", default="mysql+pymysql://root@127.0.0.1:3306")
    args = parser.parse_args()
    for backend in args.backends.split(","):
        folder = Path(tempfile.mkdtemp(prefix="bench-queues-"))
        if backend == "sqlite":
            url = f"sqlite:///{folder / 'hydra.db'}"
        else:
            import pymysql

            connection = pymysql.connect(host="127.0.0.1", port=3306, user="root", autocommit=True)
            with connection.cursor() as cursor:
                cursor.execute("DROP DATABASE IF EXISTS `hydra_bench_queues`")
                cursor.execute("CREATE DATABASE `hydra_bench_queues` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
            connection.close()
            url = f"{args.server}/hydra_bench_queues?charset=utf8mb4"
        upgrade(url)
        db = HydraDB(url)
        started = time.perf_counter()
        plot_id = build(db, args.images)
        print(f"{backend}: {args.images:,} queued + {LABELED:,} labeled images built in "
              f"{time.perf_counter() - started:.0f} s")
        store = HydraStore(db, PagesConfig(settings=load_settings(home=folder, db_url=url), sync_mlflow_alias=False),
                           user="bench")
        for queue in ("uncertain", "novel", "reference", "disagreement", "audit"):
            times = []
            for _ in range(args.repeat):
                SHARED.clear()
                t0 = time.perf_counter()
                if queue == "audit":
                    found = len(store.audit_queue(plot_id, limit=500))
                else:
                    ids = store.ranked_queue(plot_id, queue)
                    store.ranked_tiles(ids[:50])
                    found = len(ids)
                times.append((time.perf_counter() - t0) * 1000)
            print(f"  {queue:<13} {found:>6,} images  p50 {statistics.median(times):7.1f} ms  max {max(times):7.1f} ms")
        db.dispose()


if __name__ == "__main__":
    main()
