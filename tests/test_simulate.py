"""The synthetic experiment: reproducible plots, failure modes, defect boxes that match the pixels, files, CLI."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from hydra_assets import catalog
from hydra_assets.cli import cli
from hydra_assets.naming import parse_image_name
from hydra_assets.simulate import (
    DEMO_PLOT_TYPES,
    FAILURE_MODES,
    PLOT_TYPE_NAMES,
    SimulationError,
    generate_image,
    label_of,
    write_chunk,
    write_labeled,
)
from hydra_assets.simulate.content import (
    FDC_DEGRADING,
    MODELS,
    cdc_timing,
    fcal_energy,
    fdc_occupancy,
    poisson_quantile,
    tof_multiplicity,
)
from hydra_assets.simulate.drift import CONDITIONS, CYCLE, NOMINAL_RUNS, Condition, run_condition
from hydra_assets.simulate.experiment import CHUNK_MANIFEST, write_atomically
from hydra_assets.simulate.render import HEIGHT, STATS_BOX_PIXELS, WIDTH

RECORD_KEYS = {"file", "plot_type", "run", "chunk", "label", "failure", "defect_box", "defect", "seed", "width",
               "height", "generator"}


def pixels_of(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


# ---- pure content -----------------------------------------------------------------------------------


def test_poisson_quantile_has_poisson_mean_and_variance() -> None:
    u = np.random.default_rng(1).random(20000)
    for mean in (0.0, 0.7, 12.0, 400.0):
        counts = poisson_quantile(u, np.full(u.shape, mean))
        assert np.all(counts == np.round(counts)) and counts.min() >= 0
        assert counts.mean() == pytest.approx(mean, abs=0.05 + 0.03 * mean)
        assert counts.var() == pytest.approx(mean, abs=0.1 + 0.06 * mean)


def test_a_localized_defect_changes_only_its_cells() -> None:
    """Common random numbers: same seed with and without the defect differ inside the region only."""
    def content(failure: str | None):  # type: ignore[no-untyped-def]
        return fdc_occupancy(failure, np.random.default_rng([5, 0]), np.random.default_rng([5, 1]))

    good, bad = content(None), content("dead_sector")
    x0, x1, y0, y1 = bad.region
    wires, planes = np.arange(1, 97), np.arange(1, 25)
    inside = ((planes[:, None] > y0) & (planes[:, None] < y1)) & ((wires[None, :] > x0) & (wires[None, :] < x1))
    changed = good.counts != bad.counts
    assert changed.any() and not changed[~inside].any()
    assert bad.zmax == good.zmax  # the palette does not move with the defect


# ---- the catalogue of demo plot types ------------------------------------------------------------


def test_demo_plot_types_are_consistent() -> None:
    assert len(DEMO_PLOT_TYPES) >= 6 and [p.name for p in DEMO_PLOT_TYPES] == PLOT_TYPE_NAMES
    assert set(PLOT_TYPE_NAMES) == set(MODELS)
    for spec in DEMO_PLOT_TYPES:
        assert re.fullmatch(r"[A-Za-z0-9_]+", spec.name)
        assert spec.labels == ("Good", "Bad", "NoData") and spec.bad == ("Bad", "NoData")
        assert spec.group and spec.super_group in {"Tracking", "Calorimetry", "PID"}
        assert set(spec.failures) <= set(FAILURE_MODES) and "empty" in spec.failures
        assert {label_of(f) for f in spec.failures} == {"Bad", "NoData"}
        assert any(FAILURE_MODES[f].localized for f in spec.failures)


def test_demo_plot_types_register_in_the_catalogue(sqlite_db) -> None:  # type: ignore[no-untyped-def]
    def add_all(session):  # type: ignore[no-untyped-def]
        for spec in DEMO_PLOT_TYPES:
            catalog.add_plot_type(session, spec.name, spec.labels, spec.bad, groups=[spec.group],
                                  super_group=spec.super_group, description=spec.description)

    sqlite_db.write(add_all, what="add demo plot types")
    with sqlite_db.read() as s:
        assert [lab.name for lab in catalog.labels_of(s, catalog.get_plot_type(s, "FDC_occupancy"))] == [
            "Good", "Bad", "NoData"]


# ---- images ---------------------------------------------------------------------------------------


def test_same_seed_gives_the_same_bytes_and_another_seed_other_pixels() -> None:
    first, record = generate_image("CDC_timing", run=7, chunk=3, failure="noise_burst", seed=11)
    generate_image("CDC_timing", run=8, chunk=1, failure="shifted_peak", seed=99)  # the figure is reused
    again, record_again = generate_image("CDC_timing", run=7, chunk=3, failure="noise_burst", seed=11)
    assert first == again and record == record_again
    other, _ = generate_image("CDC_timing", run=7, chunk=3, failure="noise_burst", seed=12)
    assert not np.array_equal(pixels_of(first), pixels_of(other))


@pytest.mark.parametrize("plot_type", PLOT_TYPE_NAMES)
def test_every_plot_type_renders_good_and_each_failure_changes_it(plot_type: str) -> None:
    spec = next(p for p in DEMO_PLOT_TYPES if p.name == plot_type)
    png, record = generate_image(plot_type, run=121264, chunk=11, seed=4)
    good = pixels_of(png)
    assert good.shape == (HEIGHT, WIDTH, 3)
    assert set(record) == RECORD_KEYS
    assert record["file"] == f"{plot_type}-121264-0011.png" and record["label"] == "Good"
    assert record["failure"] is None and record["defect_box"] is None and record["seed"] == 4
    assert len(np.unique(good.reshape(-1, 3), axis=0)) > 20  # drawn, not blank
    for failure in spec.failures:
        png, record = generate_image(plot_type, run=121264, chunk=11, failure=failure, seed=4)
        bad = pixels_of(png)
        assert record["label"] == label_of(failure) and record["failure"] == failure
        assert not np.array_equal(good, bad), failure
        if FAILURE_MODES[failure].localized:
            assert record["defect"], failure
        else:
            assert record["defect_box"] is None


def _outside_stats_box(changed: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = STATS_BOX_PIXELS
    changed = changed.copy()
    changed[y0:y1, x0:x1] = False  # the stats box sums the whole plot: it changes wherever the defect is
    return changed


@pytest.mark.parametrize("plot_type", PLOT_TYPE_NAMES)
def test_defect_box_holds_the_changed_pixels(plot_type: str) -> None:
    """Same seed with and without the defect: the pixels that differ lie in the recorded box."""
    spec = next(p for p in DEMO_PLOT_TYPES if p.name == plot_type)
    localized = [f for f in spec.failures if FAILURE_MODES[f].localized]
    for seed in (1, 2):
        good = pixels_of(generate_image(plot_type, run=1, chunk=1, seed=seed)[0])
        for failure in localized:
            png, record = generate_image(plot_type, run=1, chunk=1, failure=failure, seed=seed)
            changed = _outside_stats_box(np.any(pixels_of(png) != good, axis=2))
            x0, y0, x1, y1 = record["defect_box"]
            assert 0 <= x0 < x1 <= WIDTH and 0 <= y0 < y1 <= HEIGHT
            assert (x1 - x0) * (y1 - y0) < 0.6 * WIDTH * HEIGHT, f"{failure}: box is most of the image"
            inside = changed[y0:y1, x0:x1].sum()
            assert changed.sum() > 30, f"{failure} (seed {seed}) is barely visible"
            assert inside >= 0.9 * changed.sum(), f"{failure} (seed {seed}): {inside}/{changed.sum()} inside"


def test_label_picks_a_failure_and_contradictions_are_refused() -> None:
    assert generate_image("FDC_occupancy", run=1, chunk=1, label="NoData", seed=1)[1]["failure"] == "empty"
    record = generate_image("FDC_occupancy", run=1, chunk=1, label="Bad", seed=1)[1]
    assert record["label"] == "Bad" and record["failure"] not in (None, "empty")
    with pytest.raises(SimulationError, match="NoData plot, not 'Bad'"):
        generate_image("FDC_occupancy", run=1, chunk=1, label="Bad", failure="empty", seed=1)
    with pytest.raises(SimulationError, match="no failure 'hot_channel'"):
        generate_image("ST_efficiency", run=1, chunk=1, failure="hot_channel", seed=1)
    with pytest.raises(SimulationError, match="known: FDC_occupancy"):
        generate_image("NOPE", run=1, chunk=1, seed=1)


# ---- files --------------------------------------------------------------------------------------------


def test_write_chunk_names_files_by_convention_and_records_the_truth(tmp_path: Path) -> None:
    records = write_chunk(tmp_path, run=121264, chunk=11, bad_fraction=0.5, seed=3)
    assert [r["plot_type"] for r in records] == PLOT_TYPE_NAMES
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == sorted([CHUNK_MANIFEST] + [r["file"] for r in records])  # no temporary files left
    for record in records:
        name = parse_image_name(record["file"])
        assert (name.plot_type, name.run, name.chunk) == (record["plot_type"], 121264, 11)
        assert record["file"].endswith("-121264-0011.png")
        # the record is enough to draw the same image again
        png, _ = generate_image(record["plot_type"], run=121264, chunk=11, failure=record["failure"],
                                seed=record["seed"])
        assert (tmp_path / record["file"]).read_bytes() == png
    manifest = [json.loads(line) for line in (tmp_path / CHUNK_MANIFEST).read_text().splitlines()]
    assert manifest == records


def test_write_chunk_bad_fraction_and_images_per_chunk(tmp_path: Path) -> None:
    two = ["TOF_multiplicity", "ST_efficiency"]
    assert all(r["label"] == "Good" for r in write_chunk(tmp_path, run=1, chunk=1, plot_types=two,
                                                          bad_fraction=0.0, seed=1))
    assert all(r["failure"] for r in write_chunk(tmp_path, run=1, chunk=2, plot_types=two, bad_fraction=1.0,
                                                 seed=1))
    one = write_chunk(tmp_path, run=1, chunk=3, plot_types=two, seed=1, images_per_chunk=1)
    assert len(one) == 1 and one[0]["plot_type"] in two
    with pytest.raises(SimulationError, match="between 0 and 1"):
        write_chunk(tmp_path, run=1, chunk=4, bad_fraction=1.5, seed=1)
    with pytest.raises(SimulationError, match="no plot types selected"):
        write_chunk(tmp_path, run=1, chunk=4, plot_types=[], seed=1)
    with pytest.raises(SimulationError, match="between 1 and 2"):
        write_chunk(tmp_path, run=1, chunk=4, plot_types=two, seed=1, images_per_chunk=3)


def test_write_then_rename_leaves_nothing_behind_on_failure(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    write_atomically(tmp_path / "a.png", b"complete")
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]

    def broken_replace(source, target):  # type: ignore[no-untyped-def]
        raise OSError("disk full")

    monkeypatch.setattr("hydra_assets.simulate.experiment.os.replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_atomically(tmp_path / "b.png", b"never seen")
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]


def test_write_labeled_makes_an_importable_training_set(tmp_path: Path, hydra_home, sqlite_db) -> None:  # type: ignore[no-untyped-def]
    from hydra_assets.label_import import import_labeled_folder

    folder = tmp_path / "train"
    counts = write_labeled(folder, plot_types=["FCAL_energy", "BCAL_eta_phi"], per_label=2, seed=5)
    assert counts == {"FCAL_energy": {"Good": 2, "Bad": 2, "NoData": 2},
                      "BCAL_eta_phi": {"Good": 2, "Bad": 2, "NoData": 2}}
    for label in ("Good", "Bad", "NoData"):
        images = sorted((folder / "FCAL_energy" / label).glob("*.png"))
        assert len(images) == 2
        for image in images:
            record = json.loads(image.with_suffix(".json").read_text())
            assert record["label"] == label and record["file"] == image.name
    manifest = (folder / "FCAL_energy" / "manifest.jsonl").read_text().splitlines()
    assert len(manifest) == 6 and len({json.loads(line)["file"] for line in manifest}) == 6
    bad_failures = {json.loads(line)["failure"] for line in manifest if json.loads(line)["label"] == "Bad"}
    assert len(bad_failures) == 2  # Bad cycles through the failure modes

    spec = next(p for p in DEMO_PLOT_TYPES if p.name == "FCAL_energy")
    sqlite_db.write(lambda s: catalog.add_plot_type(s, spec.name, spec.labels, spec.bad), what="add")
    result = import_labeled_folder(sqlite_db, hydra_home, folder / "FCAL_energy", "FCAL_energy")
    assert result.new_images == 6 and dict(result.per_label) == {"Good": 2, "Bad": 2, "NoData": 2}

    # the same set again overwrites; a folder holding other images is refused
    assert write_labeled(folder, plot_types=["FCAL_energy"], per_label=2, seed=5)["FCAL_energy"]["Good"] == 2
    with pytest.raises(SimulationError, match="would not replace"):
        write_labeled(folder, plot_types=["FCAL_energy"], per_label=1, seed=5)


# ---- command line ---------------------------------------------------------------------------------


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for key in ("HYDRA_INPUT_DIR", "HYDRA_SEED"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HYDRA_HOME", str(tmp_path / "home"))
    return CliRunner()


def test_cli_writes_live_chunks_into_the_incoming_folder(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["simulate", "--run", "500", "--runs", "2", "--chunks", "2",
                                 "--plot-types", "CDC_timing,ST_efficiency", "--bad-fraction", "0.5"])
    assert result.exit_code == 0, result.output
    incoming = tmp_path / "home" / "incoming"
    images = sorted(p.name for p in incoming.glob("*.png"))
    assert images == sorted(f"{t}-{r}-{c:04d}.png" for t in ("CDC_timing", "ST_efficiency")
                            for r in (500, 501) for c in (0, 1))
    assert "[4/4] run 501 chunk 0001" in result.output and "ms/image" in result.output
    assert len((incoming / CHUNK_MANIFEST).read_text().splitlines()) == 8
    assert not [p for p in incoming.iterdir() if p.name.startswith(".") and p.name != CHUNK_MANIFEST]


def test_cli_writes_a_labeled_set_per_plot_type(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["simulate", "--labeled", str(tmp_path / "train"), "--per-label", "1",
                                 "--plot-types", "TOF_multiplicity,CDC_timing", "--seed", "9"])
    assert result.exit_code == 0, result.output
    for name in ("TOF_multiplicity", "CDC_timing"):
        assert sorted(p.parent.name for p in (tmp_path / "train" / name).glob("*/*.png")) == ["Bad", "Good", "NoData"]
        assert f"hydra label import {tmp_path / 'train' / name} --plot-type {name}" in result.output


@pytest.mark.parametrize(("arguments", "message"), [
    (["--plot-types", "CDC_timing,FOO"], "unknown plot type(s) FOO; known: FDC_occupancy"),
    (["--bad-fraction", "1.5"], "1.5 is not in the range"),
    (["--per-label", "5"], "--per-label only applies to --labeled"),
    (["--labeled", "x", "--chunks", "3"], "--chunks apply to live chunks"),
    (["--plot-types", "CDC_timing", "--images-per-chunk", "2"], "at most one image per plot type"),
    (["--runs", "0"], "0 is not in the range"),
    (["--labeled", "x", "--drift", "realistic"], "--drift apply to live chunks"),
    (["--drift", "sometimes"], "'sometimes' is not one of"),
])
def test_cli_refuses_bad_arguments(runner: CliRunner, tmp_path: Path, arguments: list[str], message: str) -> None:
    result = runner.invoke(cli, ["simulate", *arguments])
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "home" / "incoming").exists()


def test_cli_help_and_list(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["simulate", "--help"])
    assert result.exit_code == 0 and "--labeled" in result.output and "hydra label import" in result.output
    listing = runner.invoke(cli, ["simulate", "--list"])
    assert listing.exit_code == 0
    assert all(name in listing.output for name in PLOT_TYPE_NAMES) and "NoData" in listing.output


# ---- drift: run-to-run condition changes --------------------------------------------------------------


def _content(model, condition: Condition | None = None, failure: str | None = None, seed: int = 5):  # type: ignore[no-untyped-def]
    base, defect = np.random.default_rng([seed, 0]), np.random.default_rng([seed, 1])
    return model(failure, base, defect) if condition is None else model(failure, base, defect, condition)


def _mean_of(hist) -> float:  # type: ignore[no-untyped-def]
    centres = 0.5 * (hist.edges[1:] + hist.edges[:-1])
    return float((hist.counts * centres).sum() / hist.counts.sum())


def test_no_drift_is_the_old_experiment() -> None:
    """Nominal condition = no condition: the same pixels; only the record says which condition it was."""
    for plot_type in PLOT_TYPE_NAMES:
        png, record = generate_image(plot_type, run=3, chunk=4, failure="empty", seed=8)
        nominal, nominal_record = generate_image(plot_type, run=3, chunk=4, failure="empty", seed=8,
                                                 condition=Condition())
        assert png == nominal and set(record) == RECORD_KEYS
        assert nominal_record["condition"] == "nominal" and set(nominal_record) == RECORD_KEYS | {"condition", "drift"}
        assert generate_image(plot_type, run=3, chunk=4, seed=8)[0] == generate_image(
            plot_type, run=3, chunk=4, seed=8, condition=Condition())[0]


def test_write_chunk_without_drift_records_no_condition(tmp_path: Path) -> None:
    records = write_chunk(tmp_path, run=7, chunk=0, plot_types=["TOF_multiplicity"], seed=1)
    assert "condition" not in records[0]
    with pytest.raises(SimulationError, match="first run"):
        write_chunk(tmp_path, run=7, chunk=0, plot_types=["TOF_multiplicity"], seed=1, drift="realistic")
    with pytest.raises(SimulationError, match="unknown drift"):
        write_chunk(tmp_path, run=7, chunk=0, plot_types=["TOF_multiplicity"], seed=1, drift="odd", first_run=7)


def test_gain_shift_moves_the_peak_within_the_good_range() -> None:
    up, down = Condition("gain_shift", gain=1.1), Condition("gain_shift", gain=0.9)
    tof = [_mean_of(_content(tof_multiplicity, c)) for c in (down, None, up)]
    assert tof[0] < tof[1] < tof[2] and tof[2] / tof[1] < 1.2  # a Bad shift is x1.5 or more
    cdc = [_mean_of(_content(cdc_timing, c)) for c in (down, None, up)]
    assert cdc[0] < cdc[1] < cdc[2]

    def mip_peak(condition: Condition | None) -> float:
        hist = _content(fcal_energy, condition)
        centres = 0.5 * (hist.edges[1:] + hist.edges[:-1])
        above = (centres > 140) & (centres < 240)
        return float(centres[above][np.argmax(hist.counts[above])])

    assert mip_peak(down) < mip_peak(None) < mip_peak(up)


def test_occupancy_changes_the_entries_and_stays_good() -> None:
    nominal = _content(fdc_occupancy).counts.sum()
    assert _content(fdc_occupancy, Condition("occupancy", statistics=0.3)).counts.sum() == pytest.approx(
        0.3 * nominal, rel=0.05)
    assert generate_image("FDC_occupancy", run=1, chunk=1, seed=2,
                          condition=Condition("occupancy", statistics=3.0))[1]["label"] == "Good"


@pytest.mark.parametrize("plot_type", PLOT_TYPE_NAMES)
def test_a_new_setting_is_good_but_looks_different(plot_type: str) -> None:
    nominal, _ = generate_image(plot_type, run=1, chunk=1, seed=6)
    changed, record = generate_image(plot_type, run=1, chunk=1, seed=6, condition="new_setting")
    assert record["label"] == "Good" and record["condition"] == "new_setting" and record["failure"] is None
    assert record["drift"]["new_setting"] is True and record["defect"] is None
    difference = np.any(pixels_of(changed) != pixels_of(nominal), axis=2)
    assert _outside_stats_box(difference).sum() > 100


@pytest.mark.parametrize("plot_type", PLOT_TYPE_NAMES)
def test_degradation_grows_and_turns_bad(plot_type: str) -> None:
    images = [generate_image(plot_type, run=1, chunk=1, seed=6, condition=Condition("degrading", severity=s))
              for s in (0.0, 0.2, 0.4, 0.6, 0.8)]
    assert [r["label"] for _, r in images] == ["Good", "Good", "Good", "Bad", "Bad"]
    assert images[3][1]["defect"] and images[3][1]["failure"] is None
    nominal = pixels_of(images[0][0])
    changed = [_outside_stats_box(np.any(pixels_of(png) != nominal, axis=2)).sum() for png, _ in images[1:]]
    assert changed[0] > 0 and changed[-1] >= changed[0]
    with pytest.raises(SimulationError, match="makes a Bad plot"):
        generate_image(plot_type, run=1, chunk=1, seed=6, label="Good", condition=Condition("degrading", severity=0.9))


def test_fdc_degradation_lowers_its_board_more_every_run() -> None:
    hits = [_content(fdc_occupancy, Condition("degrading", severity=s)).counts[FDC_DEGRADING].sum()
            for s in (0.0, 0.2, 0.4, 0.6, 1.0)]
    assert all(a > b for a, b in zip(hits, hits[1:], strict=False)) and hits[-1] == 0
    assert hits[2] > 0.6 * hits[0]  # slowly at first: a Good step stays mild


def test_realistic_drift_schedule() -> None:
    runs = range(100, 100 + NOMINAL_RUNS + 2 * len(CYCLE))
    conditions = [run_condition("realistic", "CDC_timing", r, first_run=100, seed=1) for r in runs]
    assert all(c.name == "nominal" and c == Condition() for c in conditions[:NOMINAL_RUNS])
    assert {c.name for c in conditions} == set(CONDITIONS)
    severities = [c.severity for c in conditions[NOMINAL_RUNS:NOMINAL_RUNS + len(CYCLE)] if c.name == "degrading"]
    assert severities == sorted(severities) and severities[0] < 0.5 <= severities[-1]  # Bad creeps in
    gains = [c.gain for c in conditions if c.name == "gain_shift"]
    assert all(0.87 < g < 0.94 or 1.06 < g < 1.13 for g in gains)
    assert run_condition("none", "CDC_timing", 120, first_run=100, seed=1) is None
    # seeded: same seed, same parameters; another seed, others
    again = [run_condition("realistic", "CDC_timing", r, first_run=100, seed=1) for r in runs]
    other = [run_condition("realistic", "CDC_timing", r, first_run=100, seed=2) for r in runs]
    assert again == conditions and other != conditions


def test_write_chunk_with_drift_records_each_runs_condition(tmp_path: Path) -> None:
    first = 200
    run = first + NOMINAL_RUNS + 4  # the first degrading run of the cycle
    chunks = [write_chunk(tmp_path / str(c), run=run, chunk=c, plot_types=["ST_efficiency", "TOF_multiplicity"],
                          bad_fraction=0.0, seed=3, drift="realistic", first_run=first) for c in (0, 1)]
    for records in chunks:
        assert [r["condition"] for r in records] == ["degrading", "degrading"]
        assert all(r["drift"] == chunks[0][0]["drift"] for r in records)  # one condition per run
    again = write_chunk(tmp_path / "again", run=run, chunk=0, plot_types=["ST_efficiency", "TOF_multiplicity"],
                        bad_fraction=0.0, seed=3, drift="realistic", first_run=first)
    assert [(tmp_path / "again" / r["file"]).read_bytes() for r in again] == [
        (tmp_path / "0" / r["file"]).read_bytes() for r in chunks[0]]


def test_cli_drift_realistic(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["simulate", "--run", "300", "--runs", str(NOMINAL_RUNS + 3), "--chunks", "1",
                                 "--plot-types", "TOF_multiplicity", "--bad-fraction", "0", "--drift", "realistic",
                                 "--seed", "4"])
    assert result.exit_code == 0, result.output
    manifest = [json.loads(line) for line in (tmp_path / "home" / "incoming" / CHUNK_MANIFEST).read_text().splitlines()]
    assert [r["condition"] for r in manifest] == ["nominal"] * NOMINAL_RUNS + ["gain_shift", "occupancy", "new_setting"]
    assert all(r["label"] == "Good" for r in manifest)
    assert f"run {300 + NOMINAL_RUNS}: TOF_multiplicity gain_shift" in result.output


# ---- bench/drift.py: its pure pieces on tiny arrays -----------------------------------------------------


@pytest.fixture(scope="module")
def drift_bench():  # type: ignore[no-untyped-def]
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[1] / "bench" / "drift.py"
    spec = importlib.util.spec_from_file_location("bench_drift", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["bench_drift"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    yield module
    sys.modules.pop("bench_drift", None)


def test_bench_baselines_on_tiny_arrays(drift_bench) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    images = rng.uniform(0.4, 0.6, (40, 6, 8, 3)).astype(np.float32)
    images[30:, :, :4] = 0.0  # the "bad" images carry ink on their left half
    bad = np.arange(40) >= 30
    runs = np.arange(40) % 4
    profile = drift_bench.profiles(images)
    assert profile.shape == (40, 3 * (8 + 6)) and np.allclose(profile.sum(axis=1), 6.0)
    scores, cut = drift_bench.profile_baseline(profile, bad, profile)
    assert scores[bad].min() > cut and drift_bench.chi2_distance(profile[:1], profile[0]) == 0
    scores, cut = drift_bench.logistic_baseline(drift_bench.downsampled(images), bad, runs, drift_bench.downsampled(images))
    assert drift_bench.auc(bad, scores) == 1.0 and (scores >= cut)[bad].all()
    assert drift_bench.threshold_for(np.arange(101.0), 0.01) == pytest.approx(99.0)


def test_bench_figures_read_novelty_when_present(drift_bench) -> None:  # type: ignore[no-untyped-def]
    records = [
        {"weights": {"Good": 0.9, "Bad": 0.1}, "label": "Good", "confirmed": True, "keep_reason": None},
        {"weights": {"Good": 0.2, "Bad": 0.8}, "label": "Bad", "confirmed": True, "keep_reason": "bad"},
        {"weights": {"Good": 0.6, "Bad": 0.4}, "label": "Good", "confirmed": False, "keep_reason": "novel",
         "novelty": 3.0, "novelty_limit": 1.0},
        {"weights": {"Good": 0.7, "Bad": 0.3}, "label": "Good", "confirmed": False, "keep_reason": "novel",
         "novelty": 2.0, "novelty_limit": 1.0},
    ]
    truth_bad = np.array([False, True, True, False])
    changed = np.array([False, False, False, True])
    arrays = drift_bench.hydra_arrays(records, ["Bad"])
    got = drift_bench.figures(truth_bad, changed, arrays["score"], arrays["alarm"], arrays["confirmed"],
                              arrays["novel"])
    assert got["bad_recall"] == 0.5 and got["recall_with_novel"] == 1.0 and got["false_alarms"] == 0.0
    assert got["novel_changed_good"] == 1.0 and got["confirmed"] == 0.5 and got["auc"] == 1.0
    without = drift_bench.hydra_arrays([{k: v for k, v in r.items() if not k.startswith("novelty")}
                                        for r in records], ["Bad"])
    assert without["novel"] is None
    assert drift_bench.figures(truth_bad, changed, without["score"], without["alarm"])["recall_with_novel"] is None
