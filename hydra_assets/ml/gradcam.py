"""GradCAM: where in the image the model looked when it gave a label its weight.

A pure function of (model, image, class) so the Predict stage, the pages and the quality benchmark share
it.  Gradients are taken of the class *logit* when the model has a ``logits`` layer (all built-in
topologies do): a softmax that is already saturated at 1.0 has vanishing gradients and an empty map.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hydra_assets.masks import Region, mask_array

if TYPE_CHECKING:
    import keras

FINE_LAYER = "fine_conv"  # optional finer (earlier) block fused into the heatmap, see `gradcam_layers`

# model -> (layer names, gradient model); weak so a replaced active model is not kept alive by the cache.
_GRAD_MODELS: weakref.WeakKeyDictionary[keras.Model, tuple[tuple[str, ...], keras.Model]] = (
    weakref.WeakKeyDictionary()
)


def gradcam_layers(model: keras.Model) -> tuple[str, ...]:
    """The layers a heatmap is made from: the last convolution, plus ``fine_conv`` when the model has one.

    The last convolution of the compact model sees the plot at 1/8 of its size, too coarse for a dead
    channel a few pixels wide; fusing a block at 1/4 (named ``fine_conv``) put the heatmap peak inside the
    simulator's defect box for 0.77 of Bad images instead of 0.48 (bench/training.py).
    """
    from hydra_assets.ml.topologies import last_conv_layer_name

    last = last_conv_layer_name(model)
    names = {layer.name for layer in model.layers}
    return (last, FINE_LAYER) if FINE_LAYER in names and last != FINE_LAYER else (last,)


def _grad_model(model: keras.Model, layer_name: str | Sequence[str] | None) -> keras.Model:
    import keras

    if layer_name is None:
        names = gradcam_layers(model)
    else:
        names = (layer_name,) if isinstance(layer_name, str) else tuple(layer_name)
    cached = _GRAD_MODELS.get(model)
    if cached is not None and cached[0] == names:
        return cached[1]
    layers = {layer.name for layer in model.layers}
    target = model.get_layer("logits").output if "logits" in layers else model.output
    grad_model = keras.Model(model.inputs, [*(model.get_layer(n).output for n in names), target])
    _GRAD_MODELS[model] = (names, grad_model)
    return grad_model


def gradcam_batch(
    model: keras.Model, images: np.ndarray, class_index: int | np.ndarray, *,
    layer_name: str | Sequence[str] | None = None,
) -> np.ndarray:
    """Heatmaps (N, H, W) in [0, 1] for a batch (N, H, W, 3) — one gradient pass for the whole batch.

    With several layers (by default: `gradcam_layers`), each layer's map is normalised and the maps are
    averaged, so a coarse, class-specific map and a finer one agree on where to point.
    """
    import tensorflow as tf

    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise ValueError(f"expected a batch (N, H, W, C), got shape {images.shape}")
    n, height, width = images.shape[:3]
    classes = np.broadcast_to(np.asarray(class_index, dtype=np.int32), (n,))
    grad_model = _grad_model(model, layer_name)
    n_outputs = int(grad_model.outputs[-1].shape[-1])
    if np.any(classes < 0) or np.any(classes >= n_outputs):
        raise ValueError(f"class index {class_index} outside the model's {n_outputs} outputs")
    x = tf.convert_to_tensor(images)
    with tf.GradientTape() as tape:
        *features, scores = grad_model(x, training=False)
        chosen = tf.reduce_sum(scores * tf.one_hot(classes, n_outputs, dtype=scores.dtype), axis=-1)
    gradients = tape.gradient(chosen, features)
    out = np.zeros((n, height, width), dtype=np.float32)
    for feature, gradient in zip(features, gradients, strict=True):
        channel_weights = tf.reduce_mean(gradient, axis=(1, 2), keepdims=True)
        cams = tf.nn.relu(tf.reduce_sum(feature * channel_weights, axis=-1, keepdims=True))
        out += _normalise(tf.image.resize(cams, (height, width), method="bilinear")[..., 0].numpy())
    return _normalise(out)


def _normalise(cams: np.ndarray) -> np.ndarray:
    """Each map divided by its own maximum (all-zero maps stay zero)."""
    peaks = cams.reshape(len(cams), -1).max(axis=1)
    out = np.zeros_like(cams, dtype=np.float32)
    positive = peaks > 0
    out[positive] = cams[positive] / peaks[positive, None, None]
    return np.clip(out, 0.0, 1.0)


def gradcam(
    model: keras.Model, image: np.ndarray, class_index: int, *, layer_name: str | Sequence[str] | None = None
) -> np.ndarray:
    """Heatmap (H, W) in [0, 1] of `image` (H, W, 3 float32 in [0, 1]) for output `class_index`.

    All zeros when nothing in the last convolution speaks for the class.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3:
        raise ValueError(f"expected one image (H, W, C), got shape {image.shape}")
    return gradcam_batch(model, image[None], class_index, layer_name=layer_name)[0]


def overlay(image: np.ndarray, heatmap: np.ndarray, *, alpha: float = 0.45, cmap: str = "jet") -> np.ndarray:
    """The image with the heatmap blended over it in the colour map `cmap`, as uint8 RGB."""
    from matplotlib import colormaps

    rgb = np.asarray(image, dtype=np.float32)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=-1)
    rgb = rgb[..., :3]
    if rgb.max(initial=0) > 1.0:
        rgb = rgb / 255.0
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.shape != rgb.shape[:2]:
        import tensorflow as tf

        heat = tf.image.resize(heat[..., None], rgb.shape[:2]).numpy()[..., 0]
    coloured = colormaps[cmap](np.clip(heat, 0, 1))[..., :3]
    # Stronger blend where the heatmap is hot, so cold regions leave the plot readable.
    weight = alpha * np.clip(heat, 0, 1)[..., None] ** 0.5
    blended = (1 - weight) * rgb + weight * coloured
    return (np.clip(blended, 0, 1) * 255).round().astype(np.uint8)


# Chosen by looking at light (white histogram) and dark (black-background occupancy map) plots under the Run
# page's default opacity (docs/pages.md): 'jet' at 0.45 under the page's 0.5 was a pastel smudge on white
# and near-invisible dark red on black.  'turbo' (jet's hues, no dark band) at 0.6 shows the hot region on
# both, and a two-tone outline at half the peak (white inside, black outside) marks its edge on any
# background while the plot inside stays readable.
OVERLAY_CMAP = "turbo"
OVERLAY_ALPHA = 0.6
OUTLINE_LEVEL = 0.5


def _grow(mask: np.ndarray, steps: int) -> np.ndarray:
    """`mask` dilated by `steps` pixels (a square neighbourhood), with numpy only."""
    out = mask.copy()
    for _ in range(steps):
        padded = np.pad(out, 1)
        out = (padded[1:-1, 1:-1] | padded[:-2, 1:-1] | padded[2:, 1:-1] | padded[1:-1, :-2] | padded[1:-1, 2:])
    return out


def outlined(rgb: np.ndarray, heat: np.ndarray, *, level: float = OUTLINE_LEVEL) -> np.ndarray:
    """`rgb` (uint8) with the edge of heat >= level drawn white inside and black outside (legible on light
    and dark plots); unchanged when the heatmap is empty."""
    hot = heat >= level
    if not hot.any() or hot.all():
        return rgb
    width = max(1, round(min(hot.shape) / 120))
    out = rgb.copy()
    out[hot & _grow(~hot, width)] = 255
    out[_grow(hot, width) & ~hot] = 0
    return out


MASK_GREY = 150  # ignored rectangles are drawn washed out towards this grey, with a dashed two-tone edge
MASK_WASH = 0.7


def shade_mask(rgb: np.ndarray, ignored: np.ndarray) -> np.ndarray:
    """`rgb` (uint8) with the ignored pixels washed out to grey and their edge dashed black and white, so a
    crew sees which rectangles the model was not shown (docs/masks.md); unchanged when nothing is ignored."""
    if not ignored.any():
        return rgb
    out = rgb.copy()
    out[ignored] = ((1 - MASK_WASH) * out[ignored] + MASK_WASH * MASK_GREY).round().astype(np.uint8)
    edge = ignored & _grow(~ignored, 1)
    rows, cols = np.indices(ignored.shape)
    dash = ((rows + cols) // 3) % 2 == 0
    out[edge & dash] = 0
    out[edge & ~dash] = 255
    return out


def save_overlay(image: np.ndarray, heatmap: np.ndarray, path: Path, *, mask: Sequence[Region] = ()) -> Path:
    """Write the heatmap over the image as a PNG at `path` (atomically: complete or absent): the 'turbo'
    colour map, stronger where hotter, and an outline of the hot region (see OVERLAY_CMAP).  The rectangles
    of `mask` (what the model ignored) carry no heat and are shaded (`shade_mask`)."""
    from PIL import Image as PILImage

    image = np.asarray(image)
    heat = np.clip(np.asarray(heatmap, dtype=np.float32), 0, 1)
    if heat.shape != image.shape[:2]:  # the last convolution's grid, stretched over the plot
        stretched = PILImage.fromarray(heat).resize((image.shape[1], image.shape[0]), PILImage.BILINEAR)
        heat = np.asarray(stretched, dtype=np.float32)
    ignored = mask_array(image.shape[0], image.shape[1], mask) if mask else np.zeros(image.shape[:2], bool)
    heat = np.where(ignored, 0.0, heat).astype(np.float32)  # a convolution spreads heat into what it never saw
    picture = shade_mask(outlined(overlay(image, heat, alpha=OVERLAY_ALPHA, cmap=OVERLAY_CMAP), heat), ignored)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    try:
        PILImage.fromarray(picture).save(partial, format="PNG")
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path


def peak_in_box(heatmap: np.ndarray, box: tuple[float, float, float, float], *, scale: tuple[float, float] = (1, 1),
                ) -> bool:
    """True when the heatmap's maximum falls inside `box` = (x0, y0, x1, y1), given in image pixels.

    `scale` = (sx, sy) maps the box from the original PNG's pixels to the heatmap's (e.g. 128/400).
    """
    y, x = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    x0, y0, x1, y1 = box
    sx, sy = scale
    return x0 * sx <= x + 0.5 <= x1 * sx and y0 * sy <= y + 0.5 <= y1 * sy


__all__ = ["gradcam", "gradcam_batch", "gradcam_layers", "outlined", "overlay", "peak_in_box", "save_overlay",
           "shade_mask"]
