"""GradCAM on every built-in topology, and its quality on toy images with a known defect box."""

from __future__ import annotations

import numpy as np
import pytest

from hydra_assets.ml.gradcam import gradcam, gradcam_batch, gradcam_layers, peak_in_box
from hydra_assets.ml.topologies import build_model, last_conv_layer_name
from hydra_assets.ml.toy import toy_image


@pytest.mark.slow
@pytest.mark.parametrize(("topology", "size", "layer"),
                         [("compact", 32, "last_conv"), ("vgg16", 32, "block5_conv3"), ("inceptionv3", 75, "mixed10")])
def test_gradcam_on_every_topology(topology: str, size: int, layer: str):
    model = build_model(topology, (size, size, 3), 2)
    assert last_conv_layer_name(model) == layer
    # compact also fuses its finer block 3; the big topologies use their last convolution block alone
    assert gradcam_layers(model) == ((layer, "fine_conv") if topology == "compact" else (layer,))
    image = np.random.default_rng(0).random((size, size, 3), dtype=np.float32)
    heat = gradcam(model, image, 1)
    assert heat.shape == (size, size)
    assert np.isfinite(heat).all() and heat.min() >= 0.0 and heat.max() <= 1.0


def test_peak_in_box_scales_png_coordinates():
    heat = np.zeros((32, 32), np.float32)
    heat[8, 20] = 1.0  # row 8, column 20
    assert peak_in_box(heat, (19, 7, 22, 10))
    assert not peak_in_box(heat, (0, 0, 10, 10))
    # a box given in a 64 px original maps onto the 32 px heatmap with scale 0.5
    assert peak_in_box(heat, (38, 14, 44, 20), scale=(0.5, 0.5))


@pytest.mark.slow
def test_gradcam_points_at_the_defect_after_training():
    """A compact model trained a few epochs on toy images looks at the bright square for most Bad images."""
    import keras

    from hydra_assets.ml.fit import fit

    rng = np.random.default_rng(3)
    size = 64

    def batch(n_per_label: int) -> tuple[np.ndarray, np.ndarray, list]:
        images, labels, boxes = [], [], []
        for label_index, label in enumerate(("Good", "Bad")):
            for _ in range(n_per_label):
                pixels, box = toy_image(label, size, rng)
                images.append(pixels.astype(np.float32) / 255)
                labels.append(label_index)
                boxes.append(box)
        return np.stack(images), np.array(labels), boxes

    x_train, y_train, _ = batch(40)
    x_val, y_val, _ = batch(8)
    keras.utils.set_random_seed(0)
    model, history = fit((x_train, y_train), (x_val, y_val), ["Good", "Bad"], topology="compact",
                         input_size=(size, size), epochs=6, batch_size=8, learning_rate=3e-3)
    x_test, y_test, boxes = batch(20)
    bad = np.flatnonzero(y_test == 1)
    heat = gradcam_batch(model, x_test[bad], 1)
    inside = np.mean([peak_in_box(heat[j], boxes[k]) for j, k in enumerate(bad)])
    accuracy = np.mean(model.predict(x_test, verbose=0).argmax(axis=1) == y_test)
    assert accuracy >= 0.9, history
    assert inside >= 0.6, f"GradCAM peak inside the defect box for only {inside:.2f} of Bad images"
