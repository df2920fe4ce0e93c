"""The demo experiment behind `hydra up`: plot types, users, a labeled history and a live feeder.

Every step is cached in the Hydra home, so a second start skips what is done: plot types and users
that exist stay, labeled images are imported once, and the feeder resumes at the run and chunk where it
stopped.  Training the demo models drives the Dagster training job, so it lives with the command line
(`hydra_assets.cli.demo`); this module only says what the demo is made of.

`hydra up` starts the services first and prepares the demo's history and models in the background
(`hydra demo-setup`), so a newcomer sees the pages within a minute: each step is written to
`HYDRA_HOME/demo/progress.json` (`record_progress`), which `hydra up` prints and the Status page shows.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import func, select

from hydra_assets import catalog, logins
from hydra_assets.db.engine import HydraDB
from hydra_assets.db.models import Image, Model, PlotType, User
from hydra_assets.settings import HydraSettings

Echo = Callable[[str], None]
DEMO_USERS = {"admin": "admin", "labeler": "labeler", "shift": "viewer"}
DEMO_INPUT_SIZE = (96, 96)  # compact CNN: trains in seconds per epoch on 2 cores, still resolves the defects
FIRST_LIVE_RUN = 130000
CHUNKS_PER_RUN = 30


def seed_catalog(db: HydraDB) -> list[str]:
    """Create the demo plot types (with groups) that are missing; returns the names created."""
    from hydra_assets.simulate import DEMO_PLOT_TYPES

    def create(session) -> list[str]:  # type: ignore[no-untyped-def]
        existing = set(session.scalars(select(PlotType.name)))
        made = []
        for spec in DEMO_PLOT_TYPES:
            if spec.name in existing:
                continue
            catalog.add_plot_type(session, spec.name, list(spec.labels), list(spec.bad), groups=[spec.group],
                                  super_group=spec.super_group, description=spec.description,
                                  collect_percent=5.0, topology="compact", input_size=DEMO_INPUT_SIZE)
            made.append(spec.name)
        return made

    return db.write(create, what="create demo plot types")


def seed_users(db: HydraDB, credentials: Path) -> dict[str, str]:
    """Demo users with random passwords in `credentials` (JSON user → password, read by the pages' login).

    Returns the passwords of users created now, so they are printed once.
    """
    known = logins.read_logins(credentials)

    def create(session) -> dict[str, str]:  # type: ignore[no-untyped-def]
        made = {}
        for name, role in DEMO_USERS.items():
            if session.scalar(select(User.id).where(User.name == name)) is None:
                catalog.add_user(session, name, role=role, full_name=f"demo {role}")
            if name not in known:
                made[name] = logins.new_password()
        return made

    made = db.write(create, what="create demo users")
    if made:
        logins.set_logins(credentials, made)
    return made


def labeled_count(db: HydraDB, plot_type: str) -> int:
    with db.read() as s:
        return s.scalar(select(func.count(Image.id)).join(PlotType, PlotType.id == Image.plot_type_id)
                        .where(PlotType.name == plot_type, Image.label_id.is_not(None))) or 0


def _write_one(folder: Path, plot_type: str, per_label: int, seed: int) -> str:
    from hydra_assets.simulate import write_labeled

    write_labeled(folder, plot_types=[plot_type], per_label=per_label, seed=seed)
    return plot_type


def seed_history(db: HydraDB, config: HydraSettings, *, per_label: int, echo: Echo, progress: bool = False) -> None:
    """Generate (on every core) and import a labeled history for every demo plot type that has none yet
    (each step recorded for the pages when `progress`)."""
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from hydra_assets.label_import import import_labeled_folder
    from hydra_assets.simulate import DEMO_PLOT_TYPES

    missing = [p.name for p in DEMO_PLOT_TYPES if labeled_count(db, p.name) == 0]
    if not missing:
        return
    folder = config.home / "demo" / "labeled"
    started = time.perf_counter()
    echo(f"  generating a labeled history: {per_label} images per label for {len(missing)} plot types…")
    for name in missing if progress else []:
        record_progress(config.home, name, GENERATING, f"{per_label} labeled images per label")
    with ProcessPoolExecutor(max_workers=max(1, min(len(missing), os.cpu_count() or 1))) as pool:
        futures = [pool.submit(_write_one, folder, name, per_label, config.seed) for name in missing]
        for future in as_completed(futures):
            name = future.result()
            result = import_labeled_folder(db, config, folder / name, name, user_name="labeler")
            echo(f"  {name}: {result.new_images} labeled images imported")
            if progress:
                record_progress(config.home, name, WAITING, f"{result.new_images} labeled images; training next")
    echo(f"  labeled history ready in {time.perf_counter() - started:.0f} s")


def plot_types_without_model(db: HydraDB) -> list[str]:
    with db.read() as s:
        active = set(s.scalars(select(Model.plot_type_id).where(Model.active.is_(True))))
        return [p.name for p in s.scalars(select(PlotType).order_by(PlotType.id)) if p.id not in active]


def seed_data(db: HydraDB, config: HydraSettings, *, per_label: int, echo: Echo, history: bool = True) -> None:
    """Plot types, users and (unless not `history`) a labeled history: what the demo needs before training."""
    created = seed_catalog(db)
    if created:
        echo(f"created demo plot types: {', '.join(created)}")
    passwords = seed_users(db, logins.credentials_path(config))
    for name, password in passwords.items():
        echo(f"demo login (shown once, kept in {logins.credentials_path(config)}): "
             f"{name} / {password}  [{DEMO_USERS[name]}]")
    if history:
        seed_history(db, config, per_label=per_label, echo=echo)


# ---- progress of the demo set-up, for `hydra up` and the Status page ------------------------------

PROGRESS_FILE = Path("demo") / "progress.json"
WAITING, GENERATING, TRAINING, ACTIVE, FAILED = "waiting", "generating history", "training", "active", "failed"
STEPS = (WAITING, GENERATING, TRAINING, ACTIVE, FAILED)


def read_progress(home: Path) -> dict[str, dict[str, str]]:
    """Plot type → {"step", "detail", "at"} of the demo set-up; {} when there is none (or it is unreadable)."""
    try:
        return json.loads((home / PROGRESS_FILE).read_text())
    except (OSError, ValueError):
        return {}


def record_progress(home: Path, plot_type: str, step: str, detail: str = "") -> None:
    """Write one plot type's step (one of STEPS) atomically, so a reader never sees half a file."""
    path = home / PROGRESS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    progress = read_progress(home)
    progress[plot_type] = {"step": step, "detail": detail, "at": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(progress, indent=1))
    partial.replace(path)


def progress_done(progress: dict[str, dict[str, str]]) -> bool:
    """Whether every plot type of the set-up reached its end (active or failed)."""
    return bool(progress) and all(p.get("step") in (ACTIVE, FAILED) for p in progress.values())


# ---- the live feeder --------------------------------------------------------------------------------


def next_position(state_file: Path) -> tuple[int, int]:
    """The run and chunk the feeder writes next (continuing after a restart)."""
    if state_file.exists():
        state = json.loads(state_file.read_text())
        return int(state["run"]), int(state["chunk"])
    return FIRST_LIVE_RUN, 0


def advance(run: int, chunk: int) -> tuple[int, int]:
    """Like an experiment: chunks count up within a run, then a new run starts."""
    return (run + 1, 0) if chunk + 1 >= CHUNKS_PER_RUN else (run, chunk + 1)


def feed(config: HydraSettings, *, interval: float, bad_fraction: float, chunks: int | None, echo: Echo) -> None:
    """Write one chunk (an image per demo plot type) into the incoming folder every `interval` seconds."""
    from hydra_assets.simulate import write_chunk

    state_file = config.home / "demo" / "feeder.json"
    state_file.parent.mkdir(parents=True, exist_ok=True)
    run, chunk = next_position(state_file)
    written = 0
    while chunks is None or written < chunks:
        started = time.monotonic()
        records = write_chunk(config.input_dir, run=run, chunk=chunk, bad_fraction=bad_fraction,
                              seed=config.seed + 7)
        bad = [r["plot_type"] for r in records if r.get("label") != "Good"]
        echo(f"run {run} chunk {chunk}: {len(records)} images" + (f", failing: {', '.join(bad)}" if bad else ""))
        run, chunk = advance(run, chunk)
        state_file.write_text(json.dumps({"run": run, "chunk": chunk}))
        written += 1
        if chunks is None or written < chunks:
            time.sleep(max(0.0, interval - (time.monotonic() - started)))

