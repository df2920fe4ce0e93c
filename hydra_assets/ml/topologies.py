"""Model topologies: the Keras builders a plot type can be trained with.

Built in: ``compact`` (a small CNN, the demo and test default), ``vgg16`` and ``inceptionv3`` (the
production default of the original Hydra).  Every builder returns a *flat* functional model — the
convolutional base's layers sit directly in the classifier's graph, not as a nested sub-model — because
GradCAM needs ``Model(inputs, [last_conv.output, model.output])`` and Keras refuses that through a
nested model.  The head ends in a ``logits`` Dense layer followed by a ``predictions`` softmax, so GradCAM
can take gradients of the logit (a saturated softmax has vanishing gradients).

No pretrained weights can be downloaded here: everything is built with ``weights=None``; a local weights
file may be given for transfer learning.

Your own topology
-----------------
Write ``def build(input_shape, n_labels, *, weights_path=None) -> keras.Model`` and either call
``register_topology("mine", build)`` in code that runs before training, or name it ``"package.module:build"``
as the plot type's topology (``hydra plot-type add T --topology package.module:build``).  Keep it flat,
end it in a softmax over ``n_labels`` outputs, avoid ``Lambda`` layers (models are loaded with
``safe_mode=True``), and register any custom layer with ``@keras.saving.register_keras_serializable()``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import keras

InputShape = tuple[int, int, int]


class TopologyError(ValueError):
    """An unknown topology, an input it cannot take, or a builder that breaks the contract."""


class Builder(Protocol):
    def __call__(self, input_shape: InputShape, n_labels: int, *, weights_path: str | None = None) -> keras.Model: ...


# Conventional last convolution block of the built-in topologies (auto-numbered names are not stable).
LAST_CONV_LAYERS = {"compact": "last_conv", "vgg16": "block5_conv3", "inceptionv3": "mixed10"}
MIN_INPUT = {"compact": 16, "vgg16": 32, "inceptionv3": 75}
# Sensible training defaults per topology: (epochs, batch size, learning rate).
TRAINING_DEFAULTS = {"compact": (12, 16, 2e-3), "vgg16": (20, 16, 1e-4), "inceptionv3": (20, 16, 1e-4)}

# Keras' default 0.99 leaves the moving statistics far from the data after the few hundred steps a
# small training set gives, and the model then predicts one class at inference; 0.9 settles in ~30 steps.
BN_MOMENTUM = 0.9

_REGISTRY: dict[str, Builder] = {}


def register_topology(name: str, builder: Builder) -> None:
    """Make `builder` available as topology `name` (replaces a previous registration of that name)."""
    if not name or not callable(builder):
        raise TopologyError("register_topology needs a name and a callable builder")
    _REGISTRY[name] = builder


def available_topologies() -> list[str]:
    return sorted(_REGISTRY)


def resolve_builder(topology: str) -> Builder:
    """The builder for a registered name or a ``module:function`` path."""
    if topology in _REGISTRY:
        return _REGISTRY[topology]
    if ":" in topology:
        module_name, _, attribute = topology.partition(":")
        try:
            builder = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as error:
            raise TopologyError(f"cannot import topology builder {topology!r}: {error}") from error
        if not callable(builder):
            raise TopologyError(f"topology builder {topology!r} is not callable")
        return builder
    raise TopologyError(
        f"unknown topology {topology!r}; available: {', '.join(available_topologies())} (or module:function)"
    )


def check_topology(topology: str, input_size: tuple[int, int]) -> None:
    """Refuse an unknown topology or an input it cannot take, before any data is loaded."""
    resolve_builder(topology)
    minimum = MIN_INPUT.get(topology, 1)
    if min(input_size) < minimum:
        raise TopologyError(f"topology {topology} needs inputs of at least {minimum}x{minimum} pixels, "
                            f"got {input_size[0]}x{input_size[1]}")


def build_model(
    topology: str, input_shape: tuple[int, int, int], n_labels: int, *, weights_path: str | None = None
) -> keras.Model:
    """Build (uncompiled) a flat classifier with a softmax over `n_labels`, refusing impossible inputs."""
    height, width, channels = (int(v) for v in input_shape)
    if n_labels < 2:
        raise TopologyError(f"a classifier needs at least two labels, got {n_labels}")
    check_topology(topology, (height, width))
    if weights_path is not None and not _exists(weights_path):
        raise TopologyError(f"weights file {weights_path} does not exist")
    model = resolve_builder(topology)((height, width, channels), n_labels, weights_path=weights_path)
    output_shape = tuple(model.output.shape)
    if len(model.inputs) != 1 or output_shape[-1] != n_labels:
        raise TopologyError(f"topology {topology!r} must map one image input to {n_labels} outputs, "
                            f"got output shape {output_shape}")
    return model


def last_conv_layer_name(model: keras.Model) -> str:
    """The layer GradCAM looks at: a known block name, else the last 4-D layer that is not pooling."""
    import keras

    names = {layer.name for layer in model.layers}
    for known in ("last_conv", "mixed10", "block5_conv3"):
        if known in names:
            return known
    skip = (keras.layers.InputLayer, keras.layers.Dropout, keras.layers.SpatialDropout2D)
    pooling = tuple(
        getattr(keras.layers, n) for n in ("MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D",
                                           "GlobalMaxPooling2D") if hasattr(keras.layers, n)
    )
    for layer in reversed(model.layers):
        if isinstance(layer, skip + pooling):
            continue
        try:
            rank = len(layer.output.shape)
        except (AttributeError, ValueError):
            continue
        if rank == 4:
            return layer.name
    raise TopologyError(f"model {model.name!r} has no convolutional (4-D) layer for GradCAM")


def _exists(path: str) -> bool:
    from pathlib import Path

    return Path(path).expanduser().is_file()


def _head(features: keras.KerasTensor, n_labels: int, *, dropout: float = 0.3, pooling: str = "avg",
          ) -> keras.KerasTensor:
    import keras

    if pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name="max_pool")(features)
    else:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(features)
    if dropout:
        x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    logits = keras.layers.Dense(n_labels, name="logits")(x)
    return keras.layers.Activation("softmax", name="predictions")(logits)


def _load_weights(model: keras.Model, weights_path: str | None) -> None:
    """Load a local weights file, skipping layers whose shapes differ (e.g. a head with other labels)."""
    if weights_path:
        import logging
        import warnings

        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                model.load_weights(weights_path, skip_mismatch=True)
        except Exception as error:  # h5py/keras raise many kinds
            raise TopologyError(f"cannot load weights {weights_path} into {model.name}: {error}") from error
        skipped = [str(w.message).rsplit("could not be loaded:", 1)[-1].strip() for w in caught
                   if "could not be loaded" in str(w.message)]
        if skipped:  # expected for a head trained on other labels
            logging.getLogger(__name__).info("weights %s: layers left at random: %s", weights_path, "; ".join(skipped))


def compact(input_shape: InputShape, n_labels: int, *, weights_path: str | None = None) -> keras.Model:
    """Four conv blocks with batch norm: learns the synthetic experiment's defects in seconds at 128 px.

    The head pools with a global *maximum*: a monitoring defect is local (a dead channel, a hot spot), and
    averaging over the whole plot dilutes it — on the synthetic 2D maps max pooling reached 0.99 training
    accuracy where average pooling stalled at 0.96 and missed dead sectors.
    """
    import keras

    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for i, filters in enumerate((16, 32, 48)):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i + 1}")(x)
        x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"bn{i + 1}")(x)
        # block 3 at 1/4 of the input is fused into GradCAM heatmaps (hydra_assets.ml.gradcam.gradcam_layers)
        x = keras.layers.Activation("relu", name="fine_conv" if i == 2 else f"relu{i + 1}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{i + 1}")(x)
    x = keras.layers.Conv2D(64, 3, padding="same", use_bias=False, name="conv4")(x)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name="bn4")(x)
    x = keras.layers.Activation("relu", name="last_conv")(x)
    model = keras.Model(inputs, _head(x, n_labels, dropout=0.2, pooling="max"), name="compact")
    _load_weights(model, weights_path)
    return model


def vgg16(input_shape: InputShape, n_labels: int, *, weights_path: str | None = None) -> keras.Model:
    """VGG16 convolutional base (no top) with Hydra's head; a local no-top weights file may seed the base."""
    import keras

    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=input_shape)
    _load_weights(base, weights_path)
    return keras.Model(base.input, _head(base.output, n_labels), name="vgg16")


def inceptionv3(input_shape: InputShape, n_labels: int, *, weights_path: str | None = None) -> keras.Model:
    """InceptionV3 base (no top) with Hydra's head; the original Hydra's production topology."""
    import keras

    base = keras.applications.InceptionV3(include_top=False, weights=None, input_shape=input_shape)
    _load_weights(base, weights_path)
    return keras.Model(base.input, _head(base.output, n_labels), name="inceptionv3")


for _name, _builder in (("compact", compact), ("vgg16", vgg16), ("inceptionv3", inceptionv3)):
    register_topology(_name, _builder)


def training_defaults(topology: str) -> tuple[int, int, float]:
    """(epochs, batch size, learning rate) for a topology; custom builders get the compact defaults."""
    return TRAINING_DEFAULTS.get(topology, TRAINING_DEFAULTS["compact"])


__all__: list[str] = [
    "LAST_CONV_LAYERS",
    "Builder",
    "TopologyError",
    "available_topologies",
    "build_model",
    "check_topology",
    "last_conv_layer_name",
    "register_topology",
    "resolve_builder",
    "training_defaults",
]
