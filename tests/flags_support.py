"""A small run with verdicts for the flag tests (imported by them; holds no tests itself).

Plot types A and B sit in plot group Tracker, C in Calo; both groups in super group Detector.  Each image
gets an inference whose verdict the test chooses per (plot type, chunk): good, bad (confirmed Bad with an
alarm), unsure (not confirmed), nodata (confirmed NoData) or none (no image).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select

from hydra_assets import catalog
from hydra_assets.db.engine import HydraDB
from hydra_assets.db.models import Alarm, Image, Inference, Label, PlotType, Run

GROUPS = {"A": "Tracker", "B": "Tracker", "C": "Calo"}


def setup_groups(db: HydraDB, *, coordinator: str = "carol", viewer: str = "vic") -> None:
    def work(s) -> None:  # type: ignore[no-untyped-def]
        for name, group in GROUPS.items():
            catalog.add_plot_type(s, name, "Good,Bad,NoData", "Bad", groups=[group], super_group="Detector",
                                  input_size=(32, 32))
        catalog.ensure_roles(s)
        catalog.add_user(s, coordinator, role="coordinator")
        catalog.add_user(s, viewer, role="viewer")

    db.write(work)


def labels(db: HydraDB) -> dict[tuple[str, str], int]:
    """(plot type, label name) → label id."""
    with db.read() as s:
        rows = s.execute(select(PlotType.name, Label.name, Label.id).join(Label, Label.plot_type_id == PlotType.id))
        return {(pt, name): lid for pt, name, lid in rows}


def add_run(db: HydraDB, run: int, chunks: range, verdict: Callable[[str, int], str]) -> None:
    """Images of `run` in `chunks` for every plot type, each with the chosen verdict."""
    ids = labels(db)

    def work(s) -> None:  # type: ignore[no-untyped-def]
        plot_types = dict(s.execute(select(PlotType.name, PlotType.id)).tuples().all())
        if s.get(Run, run) is None:
            s.add(Run(number=run))
        for chunk in chunks:
            for name in sorted(GROUPS):
                kind = verdict(name, chunk)
                if kind == "none":
                    continue
                image = Image(plot_type_id=plot_types[name], run_number=run, chunk=chunk,
                              digest=f"{run}-{name}-{chunk}", file_name=f"{name}-{run}-{chunk:04d}.png")
                s.add(image)
                s.flush()
                top = {"good": "Good", "bad": "Bad", "unsure": "Good", "nodata": "NoData"}[kind]
                inference = Inference(image_id=image.id, plot_type_id=plot_types[name], run_number=run, chunk=chunk,
                                      model_key="m/1", status="classified", weights={},
                                      top_label_id=ids[(name, top)], confirmed=kind != "unsure",
                                      is_bad=kind == "bad", flagged=kind in ("bad", "unsure"))
                s.add(inference)
                s.flush()
                if kind == "bad":
                    s.add(Alarm(inference_id=inference.id, image_id=image.id, plot_type_id=plot_types[name],
                                label_id=ids[(name, "Bad")], kind="bad", message="confirmed Bad"))

    db.write(work)


def image_id(db: HydraDB, run: int, plot_type: str, chunk: int) -> int:
    with db.read() as s:
        return int(s.scalar(select(Image.id).join(PlotType, PlotType.id == Image.plot_type_id).where(
            Image.run_number == run, Image.chunk == chunk, PlotType.name == plot_type)))
