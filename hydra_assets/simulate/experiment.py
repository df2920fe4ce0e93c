"""The synthetic experiment: demo plot types, reproducible images with their truth, live chunks, training sets.

Every image is a pure function of (plot type, failure, seed, run, chunk): the seed fixes the healthy content,
a second stream derived from it fixes the defect, so the record of an image is enough to draw it again.
With drift, the run's condition joins those arguments; the record holds it (`condition`, `drift`).
"""

from __future__ import annotations

import io
import json
import os
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from hydra_assets.naming import image_file_name
from hydra_assets.simulate.content import FAILURE_MODES, MODELS
from hydra_assets.simulate.drift import Condition, condition_of, run_condition
from hydra_assets.simulate.render import HEIGHT, WIDTH, render

GOOD, BAD, NO_DATA = "Good", "Bad", "NoData"
LABELS = (GOOD, BAD, NO_DATA)
BAD_LABELS = (BAD, NO_DATA)
CHUNK_MANIFEST = ".manifest.jsonl"  # hidden: the incoming folder's file sensor must not take it for an image
LABELED_MANIFEST = "manifest.jsonl"
LABELED_FIRST_RUN = 1000  # training images get run numbers far below the live demo's
LABELED_CHUNKS_PER_RUN = 10  # experts label a few images of many runs: the demo's 100 per label span 20-30 runs,
# enough for a validation split by run (training_set.MIN_RUNS_FOR_HOLDOUT) and one fit instead of one per fold
GENERATOR = "hydra simulate 1"


class SimulationError(ValueError):
    """A request the simulator refuses; the message says what to change."""


@dataclass(frozen=True)
class DemoPlotType:
    """A plot type of the demo experiment, as `hydra up` registers it in the catalogue."""

    name: str
    description: str
    labels: tuple[str, ...]
    bad: tuple[str, ...]
    group: str
    super_group: str
    failures: tuple[str, ...]


DEMO_PLOT_TYPES: list[DemoPlotType] = [
    DemoPlotType("FDC_occupancy", "FDC hits per wire and plane (2D); deadened beam-hole wires are normal.",
                 LABELS, BAD_LABELS, "FDC", "Tracking",
                 ("dead_channel", "dead_sector", "hot_channel", "noise_burst", "low_statistics", "empty")),
    DemoPlotType("BCAL_eta_phi", "BCAL shower occupancy in eta and phi (2D), one column per module.",
                 LABELS, BAD_LABELS, "BCAL", "Calorimetry",
                 ("dead_channel", "dead_sector", "hot_channel", "noise_burst", "low_statistics", "empty")),
    DemoPlotType("CDC_timing", "CDC drift-time spectrum: sharp rise at t0, end at the maximum drift time.",
                 LABELS, BAD_LABELS, "CDC", "Tracking",
                 ("shifted_peak", "widened_peak", "noise_burst", "low_statistics", "empty")),
    DemoPlotType("FCAL_energy", "FCAL energy per block hit (log scale) with the MIP peak near 170 MeV.",
                 LABELS, BAD_LABELS, "FCAL", "Calorimetry",
                 ("shifted_peak", "widened_peak", "hot_channel", "noise_burst", "low_statistics", "empty")),
    DemoPlotType("TOF_multiplicity", "TOF paddle hits per event.",
                 LABELS, BAD_LABELS, "TOF", "PID",
                 ("shifted_peak", "widened_peak", "noise_burst", "low_statistics", "empty")),
    DemoPlotType("ST_efficiency", "Start-counter efficiency per paddle with binomial errors.",
                 LABELS, BAD_LABELS, "ST", "PID",
                 ("dead_channel", "dead_sector", "low_statistics", "empty")),
]
PLOT_TYPE_NAMES: list[str] = [p.name for p in DEMO_PLOT_TYPES]
_BY_NAME = {p.name: p for p in DEMO_PLOT_TYPES}


def demo_plot_type(name: str) -> DemoPlotType:
    """The demo plot type called `name`, or a refusal listing the known ones."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise SimulationError(f"unknown plot type {name!r}; known: {', '.join(PLOT_TYPE_NAMES)}") from None


def label_of(failure: str | None, condition: Condition | None = None) -> str:
    """The truth label of a failure mode: none is Good, an empty plot NoData, anything else Bad.

    Without a failure, a condition degraded past `DEGRADED_AT` is Bad: the slow degradation got there.
    """
    if failure is None:
        return BAD if condition is not None and condition.degraded else GOOD
    return FAILURE_MODES[failure].label


def image_seed(seed: int, plot_type: str, run: int, chunk: int, *, purpose: int = 0) -> int:
    """One image's seed from the experiment seed; `purpose` keeps training images apart from live ones."""
    key = zlib.crc32(plot_type.encode())
    return int(np.random.SeedSequence([seed, key, run, chunk, purpose]).generate_state(1)[0])


def _choose_failure(spec: DemoPlotType, label: str | None, failure: str | None, seed: int) -> str | None:
    if failure is not None:
        if failure not in spec.failures:
            raise SimulationError(f"{spec.name} has no failure {failure!r}; it has: {', '.join(spec.failures)}")
        if label is not None and label != label_of(failure):
            raise SimulationError(f"failure {failure!r} makes a {label_of(failure)} plot, not {label!r}")
        return failure
    if label is None or label == GOOD:
        return None
    choices = [f for f in spec.failures if label_of(f) == label]
    if not choices:
        raise SimulationError(f"{spec.name} has no failure giving label {label!r}; labels: {', '.join(spec.labels)}")
    return choices[int(np.random.default_rng([seed, 2]).integers(len(choices)))]


def encode_png(pixels: np.ndarray) -> bytes:
    """PNG bytes of RGB pixels, without metadata, so equal pixels give equal bytes."""
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def render_image(plot_type: str, *, run: int, chunk: int, failure: str | None, seed: int,  # type: ignore[no-untyped-def]
                 condition: Condition | None = None):
    """Pixels, pixel box and the content of one plot; `generate_image` without the PNG encoding."""
    base = np.random.default_rng([seed, 0])
    defect = np.random.default_rng([seed, 1])
    if condition is None:
        content = MODELS[plot_type](failure, base, defect)
    else:
        content = MODELS[plot_type](failure, base, defect, condition)
    pixels, box = render(plot_type, content, run=run, chunk=chunk)
    if failure is None or not FAILURE_MODES[failure].localized:
        box = None  # low statistics and empty plots change everything: no region to point at
    return pixels, box, content


def generate_image(
    plot_type: str,
    *,
    run: int,
    chunk: int,
    label: str | None = None,
    failure: str | None = None,
    seed: int,
    condition: Condition | str | None = None,
) -> tuple[bytes, dict]:
    """One monitoring plot as PNG bytes and its record (the truth a test or a demo compares against).

    `failure` picks the failure mode; `label` alone picks one of the plot type's failure modes with that
    label (seeded); neither gives a Good plot (or Bad, when `condition` degraded that far).
    `condition` (a `Condition`, or a condition name whose parameters are then seeded) is the run's
    condition; the record then gains `condition` (its name) and `drift` (its parameters). Without it the
    image and record are the experiment without drift.
    """
    spec = demo_plot_type(plot_type)
    if isinstance(condition, str):
        try:
            condition = condition_of(condition, np.random.default_rng([seed, 4]),
                                     severity=np.random.default_rng([seed, 5]).uniform(0.0, 1.0))
        except ValueError as error:
            raise SimulationError(str(error)) from None
    if label == GOOD and failure is None and condition is not None and condition.degraded:
        raise SimulationError(f"a {condition.name} condition of severity {condition.severity} makes a Bad plot, "
                              "not 'Good'")
    failure = _choose_failure(spec, label, failure, seed)
    pixels, box, content = render_image(plot_type, run=run, chunk=chunk, failure=failure, seed=seed,
                                        condition=condition)
    truth = label_of(failure, condition)
    record = {
        "file": image_file_name(plot_type, run, chunk),
        "plot_type": plot_type,
        "run": run,
        "chunk": chunk,
        "label": truth,
        "failure": failure,
        "defect_box": list(box) if box is not None else None,
        "defect": content.detail if failure or truth != GOOD else None,
        "seed": seed,
        "width": WIDTH,
        "height": HEIGHT,
        "generator": GENERATOR,
    }
    if condition is not None:
        record["condition"] = condition.name
        record["drift"] = condition.as_record()
    return encode_png(pixels), record


def write_atomically(path: Path, data: bytes) -> None:
    """Write to a hidden temporary name in the same folder, then rename: readers never see half a file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with temporary.open("wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _json_line(record: dict) -> str:
    return json.dumps(record, sort_keys=True) + "\n"


def select_plot_types(plot_types: Sequence[str] | None) -> list[str]:
    """Validate plot type names; None means every demo plot type."""
    if plot_types is None:
        return list(PLOT_TYPE_NAMES)
    names = list(dict.fromkeys(plot_types))
    if not names:
        raise SimulationError("no plot types selected")
    unknown = [n for n in names if n not in _BY_NAME]
    if unknown:
        raise SimulationError(f"unknown plot type(s) {', '.join(unknown)}; known: {', '.join(PLOT_TYPE_NAMES)}")
    return names


def plan_chunk(
    *, run: int, chunk: int, plot_types: Sequence[str], bad_fraction: float, seed: int,
    images_per_chunk: int | None = None,
) -> list[tuple[str, str | None, int]]:
    """(plot type, failure, image seed) of each image of one chunk: which plots exist and which fail."""
    if not 0.0 <= bad_fraction <= 1.0:
        raise SimulationError(f"bad fraction must be between 0 and 1, not {bad_fraction}")
    names = select_plot_types(plot_types)
    if images_per_chunk is not None:
        if not 1 <= images_per_chunk <= len(names):
            raise SimulationError(
                f"images per chunk must be between 1 and {len(names)} (one file per plot type, run and chunk), "
                f"not {images_per_chunk}")
        picked = np.random.default_rng([seed, run, chunk, 11]).choice(len(names), images_per_chunk, replace=False)
        names = [names[i] for i in sorted(picked)]
    plan = []
    for name in names:
        seed_of_image = image_seed(seed, name, run, chunk)
        decide = np.random.default_rng([seed_of_image, 3])
        failure = None
        if decide.random() < bad_fraction:
            failures = _BY_NAME[name].failures
            failure = failures[int(decide.integers(len(failures)))]
        plan.append((name, failure, seed_of_image))
    return plan


def write_chunk(
    folder: Path,
    *,
    run: int,
    chunk: int,
    plot_types: list[str] | None = None,
    bad_fraction: float = 0.1,
    seed: int,
    images_per_chunk: int | None = None,
    drift: str = "none",
    first_run: int | None = None,
) -> list[dict]:
    """One image per plot type of `run`/`chunk` into `folder` (write-then-rename); returns their records.

    Each image fails with probability `bad_fraction` (failure mode drawn among its plot type's). With
    `drift` other than "none", each plot type's run has a condition (drift.run_condition) counted from
    `first_run`. The records are appended to the hidden `folder/.manifest.jsonl`; no side-cars, since
    `folder` is usually the incoming folder where only images belong.
    """
    plan = plan_chunk(run=run, chunk=chunk, plot_types=PLOT_TYPE_NAMES if plot_types is None else plot_types,
                      bad_fraction=bad_fraction, seed=seed, images_per_chunk=images_per_chunk)
    if drift != "none" and first_run is None:
        raise SimulationError("drift needs the scenario's first run (first_run) to count runs from")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for name, failure, seed_of_image in plan:
        try:
            condition = run_condition(drift, name, run, first_run=first_run if first_run is not None else run,
                                      seed=seed)
        except ValueError as error:
            raise SimulationError(str(error)) from None
        png, record = generate_image(name, run=run, chunk=chunk, failure=failure, seed=seed_of_image,
                                     condition=condition)
        write_atomically(folder / record["file"], png)
        records.append(record)
    with (folder / CHUNK_MANIFEST).open("a", encoding="utf-8") as manifest:
        manifest.writelines(_json_line(r) for r in records)
    return records


def labeled_plan(plot_type: str, *, per_label: int, seed: int, first_run: int = LABELED_FIRST_RUN
                 ) -> list[tuple[str, str | None, int, int, int]]:
    """(label, failure, run, chunk, image seed) of a balanced training set of one plot type.

    Labels take turns so every image has its own (run, chunk); Bad cycles through the failure modes so each
    appears equally often.
    """
    spec = demo_plot_type(plot_type)
    if per_label < 1:
        raise SimulationError(f"images per label must be at least 1, not {per_label}")
    failures_of = {label: [f for f in spec.failures if label_of(f) == label] for label in spec.labels}
    plan = []
    for index in range(per_label * len(spec.labels)):
        turn, label = divmod(index, len(spec.labels))
        label_name = spec.labels[label]
        failures = failures_of[label_name]
        failure = failures[turn % len(failures)] if failures else None
        run, chunk = first_run + index // LABELED_CHUNKS_PER_RUN, index % LABELED_CHUNKS_PER_RUN
        plan.append((label_name, failure, run, chunk, image_seed(seed, plot_type, run, chunk, purpose=1)))
    return plan


def write_labeled(
    folder: Path,
    *,
    plot_types: list[str] | None,
    per_label: int,
    seed: int,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, dict[str, int]]:
    """A training set `folder/<plot_type>/<label>/*.png` with a `.json` side-car per image.

    `hydra label import folder/<plot_type> --plot-type <plot_type>` imports one plot type (side-cars are
    skipped); `folder/<plot_type>/manifest.jsonl` holds every record. Refuses folders holding other images,
    which the import would mix in. Returns image counts per plot type and label.
    """
    names = select_plot_types(plot_types)
    plans = {name: labeled_plan(name, per_label=per_label, seed=seed) for name in names}
    folder = Path(folder)
    for name, plan in plans.items():
        _refuse_foreign_images(folder / name, {(label, image_file_name(name, run, chunk))
                                               for label, _, run, chunk, _ in plan})
    counts: dict[str, dict[str, int]] = {}
    for name, plan in plans.items():
        counts[name] = dict.fromkeys(_BY_NAME[name].labels, 0)
        lines = []
        for done, (label, failure, run, chunk, seed_of_image) in enumerate(plan, start=1):
            png, record = generate_image(name, run=run, chunk=chunk, failure=failure, seed=seed_of_image)
            target = folder / name / label
            target.mkdir(parents=True, exist_ok=True)
            write_atomically(target / record["file"], png)
            write_atomically((target / record["file"]).with_suffix(".json"),
                             json.dumps(record, indent=1, sort_keys=True).encode())
            lines.append(_json_line({**record, "path": f"{label}/{record['file']}"}))
            counts[name][label] += 1
            if progress is not None:
                progress(name, done, len(plan))
        write_atomically(folder / name / LABELED_MANIFEST, "".join(lines).encode())
    return counts


def _refuse_foreign_images(plot_folder: Path, expected: set[tuple[str, str]]) -> None:
    """Stop before writing when a label folder holds images this set would not overwrite."""
    if not plot_folder.is_dir():
        return
    foreign = [
        path for path in sorted(plot_folder.glob("*/*"))
        if path.suffix.lower() in {".png", ".jpg", ".jpeg"} and (path.parent.name, path.name) not in expected
    ]
    if foreign:
        raise SimulationError(
            f"{plot_folder} already holds {len(foreign)} image(s) this training set would not replace "
            f"(e.g. {foreign[0].relative_to(plot_folder)}); choose an empty folder or delete them")
