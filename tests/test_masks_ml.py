"""Masks in the ML path: the model version's own mask is applied to its input in Predict (the in-process
classifier), in `hydra classify` and in threshold checks; GradCAM shows the ignored rectangles shaded and
without heat; training applies the plot type's current mask to every input and records it on the version.

The model is a compact CNN with its random initial weights: every input pixel moves its output, so a
change inside the masked rectangle that moves nothing proves the pixels never reached it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from test_ingest_support import PLOT, SIZE, home  # noqa: F401 - fixtures

from hydra_assets import catalog
from hydra_assets.db.models import Model, PlotType
from hydra_assets.ingest.classifier import InProcessClassifier
from hydra_assets.ingest.offline import classify_files
from hydra_assets.mask_versions import set_mask
from hydra_assets.masks import mask_array
from hydra_assets.ml.active import clear_model_cache, load_active_model, register_local_model

MASK = [[0.0, 0.0, 0.25, 1.0]]  # the left quarter: columns 0..7 of 32


@pytest.fixture(scope="module")
def random_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import keras

    from hydra_assets.ml.topologies import build_model

    keras.utils.set_random_seed(7)
    model = build_model("compact", (*SIZE, 3), 2)
    path = tmp_path_factory.mktemp("mask-model") / "random.keras"
    model.save(path)
    return path


def _masked_model(db, path: Path, regions) -> int:  # type: ignore[no-untyped-def]
    """Set the plot type's mask, register the model as trained with it (active); returns the mask id."""
    mask_id = db.write(lambda s: set_mask(s, catalog.get_plot_type(s, PLOT), regions, "alice", "dead columns").id)
    register_local_model(db, PLOT, path, ["Good", "Bad"], input_size=SIZE, mask_id=mask_id)
    clear_model_cache()
    return mask_id


def _images() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(plot, the same changed only inside the mask, the same changed only outside it), uint8 (32, 32, 3)."""
    rng = np.random.default_rng(3)
    plot = rng.integers(20, 200, (*SIZE, 3)).astype(np.uint8)
    inside, outside = plot.copy(), plot.copy()
    inside[:, :8] = 255 - inside[:, :8]
    outside[:, 20:28] = 255 - outside[:, 20:28]
    return plot, inside, outside


def test_predict_applies_the_versions_mask(home, sqlite_db, random_model, tmp_path):
    mask_id = _masked_model(sqlite_db, random_model, MASK)
    with sqlite_db.read() as s:
        assert s.scalar(Model.__table__.select().with_only_columns(Model.mask_id)) == mask_id
    active = load_active_model(sqlite_db, home, PLOT)
    assert active.mask == [(0.0, 0.0, 0.25, 1.0)]

    plot, inside, outside = _images()
    prediction = InProcessClassifier(sqlite_db, home).classify(PLOT, np.stack([plot, inside, outside]),
                                                               [None, None, None])
    weights = prediction.weights
    np.testing.assert_array_equal(weights[0], weights[1])  # inside the mask: not seen at all
    assert np.abs(weights[0] - weights[2]).max() > 1e-4  # outside: seen
    # the eager call of the ML contract masks too
    np.testing.assert_array_equal(active.predict(np.stack([plot, inside]) / 255.0)[0],
                                  active.predict(np.stack([plot, inside]) / 255.0)[1])

    # hydra classify (offline): the same model, the same mask
    files = []
    for name, pixels in (("a", plot), ("b", inside), ("c", outside)):
        files.append(tmp_path / f"{PLOT}-1-{name}.png")
        PILImage.fromarray(pixels).save(files[-1])
    records = classify_files(sqlite_db, home, PLOT, files)
    assert records[0]["weights"] == records[1]["weights"] and records[0]["weights"] != records[2]["weights"]


def test_without_a_mask_the_same_change_is_seen(home, sqlite_db, random_model):
    register_local_model(sqlite_db, PLOT, random_model, ["Good", "Bad"], input_size=SIZE)
    clear_model_cache()
    plot, inside, _ = _images()
    weights = InProcessClassifier(sqlite_db, home).classify(PLOT, np.stack([plot, inside]), [None, None]).weights
    assert np.abs(weights[0] - weights[1]).max() > 1e-4


def test_a_mask_change_waits_for_the_next_trained_version(home, sqlite_db, random_model):
    _masked_model(sqlite_db, random_model, MASK)
    sqlite_db.write(lambda s: set_mask(s, catalog.get_plot_type(s, PLOT), [[0.5, 0.5, 1, 1]], "bob", "new"))
    clear_model_cache()
    assert load_active_model(sqlite_db, home, PLOT).mask == [(0.0, 0.0, 0.25, 1.0)]  # its own, not the newest


def test_gradcam_overlay_shades_the_mask_and_gives_it_no_heat(home, sqlite_db, random_model, tmp_path):
    from hydra_assets.ml.gradcam import MASK_GREY, save_overlay

    plot = np.zeros((*SIZE, 3), np.float32)  # black plot: the shading is what makes the mask visible
    heat = np.ones(SIZE, np.float32)  # everything hot, the mask included
    plain = np.asarray(PILImage.open(save_overlay(plot, heat, tmp_path / "plain.png")))
    shaded = np.asarray(PILImage.open(save_overlay(plot, heat, tmp_path / "masked.png", mask=MASK)))
    ignored = mask_array(*SIZE, MASK)
    interior = ignored.copy()
    interior[:, 6:] = False
    interior[[0, -1], :] = False
    # inside: washed to grey, no heat colour (its channels equal); outside: as without a mask
    assert np.all(np.abs(shaded[interior].astype(int) - int(0.7 * MASK_GREY)) <= 1)
    assert not np.array_equal(plain[interior], shaded[interior])
    np.testing.assert_array_equal(plain[:, 10:], shaded[:, 10:])
    # the edge of the rectangle is drawn in black and white dashes
    edge = shaded[:, 7]
    assert (edge == 0).all(axis=1).any() and (edge == 255).all(axis=1).any()

    # Predict's overlays go through it with the version's mask
    _masked_model(sqlite_db, random_model, MASK)
    active = load_active_model(sqlite_db, home, PLOT)
    active.bad_labels = ["Good", "Bad"]  # every image explained
    classifier = InProcessClassifier(sqlite_db, home)
    classifier._active[PLOT] = active
    target = tmp_path / "explained.png"
    _, inside, _ = _images()
    classifier.classify(PLOT, inside[None], [str(target)], expected_key=active.key)
    overlay = np.asarray(PILImage.open(target)).astype(int)
    # inside the mask: the plot as it came (not blanked), washed towards grey, and no heat colour on it
    expected = 0.3 * inside[interior].astype(float) + 0.7 * MASK_GREY
    assert np.abs(overlay[interior] - expected).max() <= 1.0


def test_streamed_and_augmented_training_batches_are_masked(tmp_path):
    from hydra_assets.ml.fit import _batches, augmenter, load_images

    paths = []
    for k in range(4):
        paths.append(tmp_path / f"{k}.png")
        PILImage.fromarray(np.full((*SIZE, 3), 200, np.uint8)).save(paths[-1])
    ignored = mask_array(*SIZE, MASK)
    loaded = load_images([str(p) for p in paths], SIZE, MASK)
    assert (loaded[:, ignored] == 0).all() and (loaded[:, ~ignored] > 0.7).all()
    targets = np.zeros(4, np.int64)
    for data in ([str(p) for p in paths], loaded):
        batches = _batches(data, targets, SIZE, 2, shuffle=True, seed=1, augment=augmenter(1), mask=MASK)
        batch, _ = batches[0]
        assert (batch[:, ignored] == 0).all() and (batch[:, ~ignored] > 0).mean() > 0.9


@pytest.mark.slow
def test_training_applies_and_records_the_current_mask(sqlite_db, hydra_home, tmp_path, monkeypatch):
    from test_ml_split import spread_over_runs

    from hydra_assets.label_import import import_labeled_folder
    from hydra_assets.ml import model_step
    from hydra_assets.ml.model_step import TrainOptions, train_model_step
    from hydra_assets.ml.toy import write_toy_labeled
    from hydra_assets.ml.training_set import TrainingSetOptions, create_training_set
    from hydra_assets.tracking import TrackingService

    hydra_home.ensure_folders()
    sqlite_db.write(lambda s: catalog.add_plot_type(s, "T1", "Good,Bad", "Bad", input_size=SIZE))
    folder = spread_over_runs(write_toy_labeled(tmp_path / "toy", per_label={"Good": 10, "Bad": 10}, size=32),
                              "T1", list(range(11, 31)))
    import_labeled_folder(sqlite_db, hydra_home, folder, "T1")
    sqlite_db.write(lambda s: set_mask(s, catalog.get_plot_type(s, "T1"), [[0, 0, 1, 0.5]], "alice", "v1"))
    mask = sqlite_db.write(lambda s: set_mask(s, catalog.get_plot_type(s, "T1"), MASK, "alice", "v2"))
    seen: list[np.ndarray] = []
    real_fit = model_step.fit

    def spy(train, validation, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.extend(x for x in (train[0], validation and validation[0]) if isinstance(x, np.ndarray))
        return real_fit(train, validation, *args, **kwargs)

    monkeypatch.setattr(model_step, "fit", spy)
    tracking = TrackingService.from_settings(hydra_home)
    create_training_set(sqlite_db, hydra_home, tracking, "T1", TrainingSetOptions(min_per_label=5))
    result = train_model_step(sqlite_db, hydra_home, tracking, "T1", TrainOptions(epochs=1, batch_size=8))
    with sqlite_db.read() as s:
        row = s.get(Model, result.model_id)
        assert row.mask_id == mask.id
        assert s.get(PlotType, row.plot_type_id).name == "T1"
    ignored = mask_array(*SIZE, MASK)
    assert seen and all((x[:, ignored] == 0).all() and (x[:, ~ignored] > 0).any() for x in seen)
