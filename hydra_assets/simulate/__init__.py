"""The synthetic experiment behind `hydra simulate` and the demo: detector monitoring plots with known truth."""

from hydra_assets.simulate.content import FAILURE_MODES, FailureMode
from hydra_assets.simulate.experiment import (
    BAD_LABELS,
    DEMO_PLOT_TYPES,
    LABELS,
    PLOT_TYPE_NAMES,
    DemoPlotType,
    SimulationError,
    generate_image,
    label_of,
    write_chunk,
    write_labeled,
)

__all__ = [
    "BAD_LABELS",
    "DEMO_PLOT_TYPES",
    "FAILURE_MODES",
    "LABELS",
    "PLOT_TYPE_NAMES",
    "DemoPlotType",
    "FailureMode",
    "SimulationError",
    "generate_image",
    "label_of",
    "write_chunk",
    "write_labeled",
]
