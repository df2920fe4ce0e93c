"""Run-to-run condition changes of the synthetic experiment, with their truth.

A real detector does not look the same in every run: gains and timing drift, the luminosity changes the
entries per plot, a new beam or trigger setting gives other (healthy) shapes, and a component can degrade
slowly until it is Bad. A model trained on the first runs meets all of that later. `run_condition` gives
each run of a plot type its `Condition` (constant over the run's chunks, seeded), which the content models
apply on top of the usual chunk-to-chunk jitter. `--drift none` (the default) keeps the old experiment.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass

import numpy as np

NOMINAL, GAIN_SHIFT, OCCUPANCY, NEW_SETTING, DEGRADING = "nominal", "gain_shift", "occupancy", "new_setting", "degrading"
CONDITIONS = (NOMINAL, GAIN_SHIFT, OCCUPANCY, NEW_SETTING, DEGRADING)
DRIFTS = ("none", "realistic")
DEGRADED_AT = 0.5  # severity from which a degrading detector is labelled Bad
NOMINAL_RUNS = 6  # `realistic`: the first runs are nominal (where one would train)
# `realistic` after the nominal runs: this cycle of conditions, one per run (severity for degrading).
CYCLE: tuple[tuple[str, float], ...] = (
    (GAIN_SHIFT, 0.0), (OCCUPANCY, 0.0), (NEW_SETTING, 0.0), (NOMINAL, 0.0), (DEGRADING, 0.1),
    (DEGRADING, 0.25), (DEGRADING, 0.5), (DEGRADING, 0.75), (DEGRADING, 1.0), (NEW_SETTING, 0.0),
)  # the Good degradation steps stay mild (a gain like a Good gain shift); Bad ones reach the failure modes


@dataclass(frozen=True)
class Condition:
    """How one run differs from nominal running; the neutral values change nothing.

    gain: a calibration factor on the main feature (a peak position, a profile slope), Good within ±12 %.
    statistics: entries relative to nominal (luminosity, prescales), Good from 0.25x to 3.5x.
    new_setting: another beam or trigger setting: a healthy plot of another shape.
    severity: how far a slow degradation went (0..1); Bad from `DEGRADED_AT` on.
    """

    name: str = NOMINAL
    gain: float = 1.0
    statistics: float = 1.0
    new_setting: bool = False
    severity: float = 0.0

    @property
    def damage(self) -> float:
        """What the degradation does, growing slowly then faster (severity squared): at `DEGRADED_AT` the
        content models reach their failure modes' range, below it they stay mild."""
        return self.severity ** 2

    @property
    def degraded(self) -> bool:
        """True when the degradation alone makes the plot Bad."""
        return self.severity >= DEGRADED_AT

    def as_record(self) -> dict:
        """The condition's parameters for an image record (its name goes to `condition`)."""
        fields = asdict(self)
        fields.pop("name")
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in fields.items()}


NOMINAL_CONDITION = Condition()


def condition_of(name: str, rng: np.random.Generator, severity: float = 0.0) -> Condition:
    """A condition called `name` with its parameters drawn from `rng` in the Good ranges."""
    if name == NOMINAL:
        return Condition()
    if name == GAIN_SHIFT:
        direction = 1.0 if rng.random() < 0.5 else -1.0
        return Condition(GAIN_SHIFT, gain=1.0 + direction * rng.uniform(0.07, 0.12))
    if name == OCCUPANCY:
        low = rng.random() < 0.5
        return Condition(OCCUPANCY, statistics=rng.uniform(0.25, 0.45) if low else rng.uniform(2.0, 3.5))
    if name == NEW_SETTING:
        return Condition(NEW_SETTING, new_setting=True)
    if name == DEGRADING:
        return Condition(DEGRADING, severity=float(np.clip(severity, 0.0, 1.0)))
    raise ValueError(f"unknown condition {name!r}; known: {', '.join(CONDITIONS)}")


def run_condition(drift: str, plot_type: str, run: int, *, first_run: int, seed: int) -> Condition | None:
    """The condition of `run` of `plot_type` in a drift scenario starting at `first_run`; None for `none`.

    `realistic`: `NOMINAL_RUNS` nominal runs, then `CYCLE` repeated (gain shift, occupancy change, new
    setting, nominal, a degradation growing over five runs, new setting). Parameters are seeded by
    (seed, plot type, run), so every chunk of a run shares them.
    """
    if drift == "none":
        return None
    if drift != "realistic":
        raise ValueError(f"unknown drift {drift!r}; known: {', '.join(DRIFTS)}")
    offset = run - first_run
    if offset < NOMINAL_RUNS:
        return Condition()
    name, severity = CYCLE[(offset - NOMINAL_RUNS) % len(CYCLE)]
    rng = np.random.default_rng([seed, zlib.crc32(plot_type.encode()), run, 17])
    return condition_of(name, rng, severity)
