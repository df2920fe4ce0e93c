"""The synthetic experiment behind `hydra simulate` and the demo: detector monitoring plots with known truth."""

from hydra_assets.simulate.content import FAILURE_MODES, FailureMode
from hydra_assets.simulate.drift import CONDITIONS, DEGRADED_AT, DRIFTS, Condition, run_condition
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
    "CONDITIONS",
    "DEGRADED_AT",
    "DRIFTS",
    "DEMO_PLOT_TYPES",
    "FAILURE_MODES",
    "LABELS",
    "Condition",
    "PLOT_TYPE_NAMES",
    "DemoPlotType",
    "FailureMode",
    "SimulationError",
    "generate_image",
    "label_of",
    "run_condition",
    "write_chunk",
    "write_labeled",
]
