"""Bench data for the pages: a Jefferson-Lab-sized Hydra database in MariaDB.

    .venv/bin/python bench/make_pages_data.py                      # 1 M images, 10 M run-history rows
    .venv/bin/python bench/make_pages_data.py --images 100000 --inferences-per-image 10 --database hydra_bench_small

Creates (dropping it first) the database `--database` on the server `--server`, migrates it with Hydra's
schema and fills it the way a year of running would:
- 86 plot types (Good / Bad / NoData) in 12 plot groups and 4 systems; roles, a labeler and a viewer;
- 10 model versions per plot type (the last one active) with thresholds;
- `--images` images over 365 days, one per plot type per chunk, 30 chunks a run; 10 % labeled by a human,
  5 % unlabeled in the Labeler queue (Bad/unconfirmed first), 3 % collected;
- `--inferences-per-image` run-history rows per image (one per model version, as backfills leave them),
  weights JSON, confirmed / Bad / flagged, GradCAM paths for confirmed Bad; a keep decision for each (bad /
  unconfirmed / collect, as the Keeper stores it); alarms for the active version's confirmed Bad; run-time rows; stage timings per chunk; a training report per plot type; label history.

Rows are written as tab-separated files and loaded with LOAD DATA LOCAL INFILE in primary-key order, so the
indexes of the real schema are all in place (nothing is dropped or rebuilt).  Files go to a temporary folder.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pymysql

from hydra_assets.db.models import utcnow
from hydra_assets.rules import BAD, COLLECT, UNCONFIRMED

N_PLOT_TYPES = 86
LABELS = ("Good", "Bad", "NoData")
GROUPS = 12
SYSTEMS = ("Tracking", "Calorimetry", "PID", "Beamline")
CHUNKS_PER_RUN = 30
FIRST_RUN = 100000
DAYS = 365


def nullable(values: np.ndarray, keep: np.ndarray) -> pd.Series:
    """Integers, NULL where `keep` is false."""
    return pd.Series(values, dtype="Int64").where(keep, pd.NA)


def log(message: str, started: float) -> None:
    print(f"[{time.perf_counter() - started:7.1f}s] {message}", flush=True)


def connect(server: str, database: str | None = None) -> pymysql.Connection:
    from sqlalchemy.engine import make_url

    url = make_url(server)
    return pymysql.connect(host=url.host or "127.0.0.1", port=url.port or 3306, user=url.username or "root",
                           password=url.password or "", database=database, local_infile=True, autocommit=True,
                           charset="utf8mb4")


def load(connection: pymysql.Connection, table: str, frame: pd.DataFrame, folder: Path) -> None:
    """LOAD DATA LOCAL INFILE of a frame (NaN/None -> NULL); columns named as in the table; refuses skipped rows."""
    path = folder / f"{table}.tsv"
    # no quoting: values hold no tabs, newlines or backslashes; \N is NULL
    frame.to_csv(path, sep="\t", header=False, index=False, na_rep="\\N", date_format="%Y-%m-%d %H:%M:%S",
                 quoting=csv.QUOTE_NONE, quotechar="\x07")
    columns = ", ".join(f"`{c}`" for c in frame.columns)
    with connection.cursor() as cursor:
        cursor.execute("SET foreign_key_checks = 0, unique_checks = 0")
        loaded = cursor.execute(f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE `{table}` CHARACTER SET utf8mb4 "
                                f"FIELDS TERMINATED BY '\\t' LINES TERMINATED BY '\\n' ({columns})")
        if loaded != len(frame):
            cursor.execute("SHOW WARNINGS LIMIT 5")
            raise RuntimeError(f"{table}: loaded {loaded} of {len(frame)} rows: {cursor.fetchall()}")
    path.unlink()


def catalogue(url: str) -> dict:
    """Plot types, labels, groups, users and models through Hydra's own functions (small)."""
    from hydra_assets import catalog
    from hydra_assets.db.engine import HydraDB
    from hydra_assets.db.models import Model, Threshold, utcnow

    db = HydraDB(url)

    def work(s) -> dict:  # type: ignore[no-untyped-def]
        catalog.ensure_roles(s)
        users = {name: catalog.add_user(s, name, role=role).id
                 for name, role in (("bench_labeler", "labeler"), ("bench_viewer", "viewer"), ("bench_expert", "expert"))}
        plot_types, labels, models = [], [], []
        for p in range(N_PLOT_TYPES):
            group = f"G{p % GROUPS:02d}"
            pt = catalog.add_plot_type(s, f"PT{p:03d}_monitor", list(LABELS), ["Bad", "NoData"], groups=[group],
                                       super_group=SYSTEMS[(p % GROUPS) % len(SYSTEMS)])
            plot_types.append(pt.id)
            labels.append([lab.id for lab in pt.labels])
            versions = []
            for v in range(1, 11):
                model = Model(plot_type_id=pt.id, mlflow_name=f"hydra-{pt.name}", mlflow_version=str(v),
                              mlflow_run_id=f"{p:03d}{v:03d}".ljust(32, "0"), topology="inceptionv3", input_height=128,
                              input_width=128, label_names=list(LABELS), training_set_size=3000, sampling="balanced",
                              metrics={"val_accuracy": 0.9}, created_at=utcnow() - timedelta(days=400 - 30 * v),
                              created_by="bench", active=v == 10)
                s.add(model)
                s.flush()
                versions.append(model.id)
                for label_id, value in zip(labels[-1], (0.7, 0.7, 0.7), strict=True):
                    s.add(Threshold(model_id=model.id, label_id=label_id, value=value, changed_by="training"))
            models.append(versions)
        return {"users": users, "plot_types": plot_types, "labels": labels, "models": models}

    try:
        return db.write(work, what="bench catalogue")
    finally:
        db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default="mysql+pymysql://root@127.0.0.1:3306")
    parser.add_argument("--database", default="hydra_bench_pages")
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--inferences-per-image", type=int, default=10)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    started = time.perf_counter()
    rng = np.random.default_rng(args.seed)

    admin = connect(args.server)
    with admin.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{args.database}`")
        cursor.execute(f"CREATE DATABASE `{args.database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    url = f"{args.server}/{args.database}?charset=utf8mb4"
    from hydra_assets.db.migrate import upgrade

    upgrade(url)
    cat = catalogue(url)
    log(f"schema and catalogue in {args.database}", started)
    connection = connect(args.server, args.database)
    now = utcnow().replace(microsecond=0)
    start = now - timedelta(days=DAYS)
    n = args.images
    pt_index = np.arange(n) % N_PLOT_TYPES
    chunk_index = np.arange(n) // N_PLOT_TYPES
    plot_type_ids = np.asarray(cat["plot_types"])[pt_index]
    label_ids = np.asarray(cat["labels"])  # [plot type, label]
    model_ids = np.asarray(cat["models"])  # [plot type, version]
    runs = FIRST_RUN + chunk_index // CHUNKS_PER_RUN
    chunks = chunk_index % CHUNKS_PER_RUN + 1
    seconds = np.sort(rng.uniform(0, DAYS * 86400 - 600, n))
    received = pd.to_datetime(start) + pd.to_timedelta(seconds.astype(np.int64), unit="s")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        # ---- images -----------------------------------------------------------------------------------
        truth = rng.choice(3, size=n, p=[0.9, 0.07, 0.03])
        labeled = rng.random(n) < 0.10
        label_col = np.where(labeled, label_ids[pt_index, truth], -1)
        labeled_at = received + pd.to_timedelta(rng.integers(600, 30 * 86400, n), unit="s")
        labeled_at = labeled_at.where(labeled_at < pd.Timestamp(now), pd.Timestamp(now))
        roll = rng.random(n)
        priority = np.where(labeled, -1, np.where(roll < 0.05, 0, np.where(roll < 0.08, 1, -1)))
        names = [f"PT{p:03d}_monitor-{r}-{c:04d}" for p, r, c in zip(pt_index, runs, chunks, strict=True)]
        images = pd.DataFrame({
            "id": np.arange(1, n + 1),
            "plot_type_id": plot_type_ids,
            "run_number": runs,
            "chunk": chunks,
            "digest": [f"{i:064x}" for i in range(1, n + 1)],
            "file_name": [f"{name}.png" for name in names],
            "stored_path": [f"/data/hydra/images/{name}.png" for name in names],
            "size_bytes": rng.integers(20_000, 90_000, n),
            "width": 480,
            "height": 360,
            "received_at": received,
            "status": "registered",
            "label_id": nullable(label_col, labeled),
            "labeled_at": labeled_at.where(labeled, pd.NaT),
            "labeled_by": nullable(np.full(n, cat["users"]["bench_labeler"]), labeled),
            "queue_priority": nullable(priority, priority >= 0),
        })
        for first in range(0, n, 250_000):
            load(connection, "images", images.iloc[first:first + 250_000], folder)
        log(f"{n:,} images", started)
        history = pd.DataFrame({"image_id": images["id"][labeled], "label_id": images["label_id"][labeled],
                                "user_id": cat["users"]["bench_labeler"], "labeled_at": images["labeled_at"][labeled],
                                "source": "labeler"})
        load(connection, "label_history", history, folder)
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO runs (number, first_seen, last_seen, conditions, image_count) "
                           "SELECT run_number, MIN(received_at), MAX(received_at), '{}', COUNT(*) FROM images "
                           "GROUP BY run_number")
        log(f"{int(labeled.sum()):,} label history rows, runs", started)

        # ---- inferences: one per image and model version ------------------------------------------------
        k = args.inferences_per_image
        alarms, next_id = [], 1
        image_rows = np.arange(n)
        for version in range(10 - k + 1, 11):
            top = np.where(rng.random(n) < 0.85, truth, rng.choice(3, size=n, p=[0.8, 0.13, 0.07]))
            confident = rng.random(n) < 0.9
            top_weight = np.where(confident, rng.uniform(0.7, 1.0, n), rng.uniform(0.4, 0.7, n)).round(4)
            rest = ((1 - top_weight) / 2).round(4)
            w = {name: np.where(top == i, top_weight, rest) for i, name in enumerate(LABELS)}
            weights = ('{"Good": ' + pd.Series(w["Good"]).astype(str) + ', "Bad": ' + pd.Series(w["Bad"]).astype(str)
                       + ', "NoData": ' + pd.Series(w["NoData"]).astype(str) + "}")
            is_bad = top != 0
            confirmed = top_weight >= 0.7
            flagged = (confirmed & is_bad) | ~confirmed
            classified = received + pd.to_timedelta(20 + 30 * (version - 1), unit="s")
            ids = np.arange(next_id, next_id + n)
            next_id += n
            frame = pd.DataFrame({
                "id": ids,
                "image_id": image_rows + 1,
                "plot_type_id": plot_type_ids,
                "run_number": runs,
                "chunk": chunks,
                "model_id": model_ids[pt_index, version - 1],
                "model_key": [f"hydra-PT{p:03d}_monitor/{version}" for p in pt_index],
                "status": "classified",
                "weights": weights.to_numpy(),
                "top_label_id": label_ids[pt_index, top],
                "top_weight": top_weight,
                "confirmed": confirmed.astype(int),
                "is_bad": is_bad.astype(int),
                "flagged": flagged.astype(int),
                "gradcam_path": pd.Series([f"/data/hydra/gradcam/{i}.png" for i in ids]).where(confirmed & is_bad),
                "classified_at": classified,
                "feed_ms": 300.0, "predict_ms": 900.0, "keep_ms": 150.0,
                "dagster_run_id": "",
            })
            for first in range(0, n, 250_000):
                load(connection, "inferences", frame.iloc[first:first + 250_000], folder)
            reason = pd.Series(np.where(confirmed & is_bad, BAD, np.where(~confirmed, UNCONFIRMED, COLLECT)))
            reason = reason.where(~(confirmed & ~is_bad) | (priority == 1))  # Good is kept only when collected
            keep = pd.DataFrame({
                "id": ids,
                "inference_id": ids,
                "image_id": image_rows + 1,
                "keep": reason.notna().astype(int),
                "reason": reason,
                "kept_path": images["stored_path"].str.replace("/images/", "/kept/").where(reason.notna()),
                "decided_at": classified + pd.to_timedelta(1, unit="s"),
            })
            for first in range(0, n, 250_000):
                load(connection, "keep_decisions", keep.iloc[first:first + 250_000], folder)
            if version == 10:
                bad = frame[(confirmed & is_bad)]
                alarms = pd.DataFrame({"inference_id": bad["id"], "image_id": bad["image_id"],
                                       "plot_type_id": bad["plot_type_id"], "label_id": bad["top_label_id"],
                                       "message": "Bad", "raised_at": bad["classified_at"]})
                latest = frame.groupby("plot_type_id").tail(1)
            log(f"inferences of model version {version}: {next_id - 1:,} rows so far", started)
        load(connection, "alarms", alarms, folder)
        run_time = pd.DataFrame({"plot_type_id": latest["plot_type_id"], "image_id": latest["image_id"],
                                 "inference_id": latest["id"], "run_number": latest["run_number"],
                                 "chunk": latest["chunk"], "updated_at": latest["classified_at"]})
        load(connection, "run_time", run_time, folder)
        log(f"{len(alarms):,} alarms, {len(run_time)} run-time rows", started)

        # ---- stage timings, heartbeats, news, training reports ------------------------------------------
        n_chunks = int(chunk_index.max()) + 1
        first_of_chunk = np.searchsorted(chunk_index, np.arange(n_chunks))
        timings = []
        for stage, base in (("feeder", 400.0), ("predict", 1500.0), ("keeper", 200.0)):
            finished = received[first_of_chunk] + pd.to_timedelta(rng.integers(1, 30, n_chunks), unit="s")
            timings.append(pd.DataFrame({"stage": stage, "plot_type_id": pd.NA,
                                         "run_number": FIRST_RUN + np.arange(n_chunks) // CHUNKS_PER_RUN,
                                         "chunk": np.arange(n_chunks) % CHUNKS_PER_RUN + 1,
                                         "image_count": N_PLOT_TYPES, "started_at": finished, "finished_at": finished,
                                         "duration_ms": (base * rng.lognormal(0, 0.3, n_chunks)).round(1),
                                         "status": "ok", "dagster_run_id": ""}))
        load(connection, "stage_timings", pd.concat(timings), folder)
        with connection.cursor() as cursor:
            for stage in ("sensor", "feeder", "predict", "keeper"):
                cursor.execute("INSERT INTO heartbeats (stage, beat_at, detail) VALUES (%s, %s, 'ok')", (stage, now))
            cursor.execute("INSERT INTO news (text, created_at, created_by, active) VALUES "
                           "('bench data', %s, 'bench', 1)", (now,))
        reports, items = [], []
        labeled_ids = np.flatnonzero(labeled)
        for p in range(N_PLOT_TYPES):
            reports.append({"id": p + 1, "model_id": int(model_ids[p, 9]), "created_at": now, "mlflow_run_id": "",
                            "n_images": 300, "n_disagreements": 90})
            mine = labeled_ids[pt_index[labeled_ids] == p][:300]
            for j, row in enumerate(mine):
                human = int(truth[row])
                model = human if j % 10 >= 3 else (human + 1) % 3
                items.append({"report_id": p + 1, "image_id": int(row) + 1, "split": "validation",
                              "human_label_id": int(label_ids[p, human]), "model_label_id": int(label_ids[p, model]),
                              "model_weight": 0.8, "weights": '{"Good": 0.8, "Bad": 0.1, "NoData": 0.1}'})
        load(connection, "training_reports", pd.DataFrame(reports), folder)
        load(connection, "training_report_items", pd.DataFrame(items), folder)
        log(f"{len(timings[0]) * 3:,} stage timings, {len(items):,} report items", started)
    with connection.cursor() as cursor:
        for table in ("images", "inferences", "keep_decisions", "alarms", "label_history", "stage_timings"):
            cursor.execute(f"ANALYZE TABLE `{table}`")
            cursor.fetchall()
    connection.close()
    admin.close()
    log(f"done: {url}", started)


if __name__ == "__main__":
    main()
