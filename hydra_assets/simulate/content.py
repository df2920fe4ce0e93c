"""What each synthetic monitoring plot shows: healthy detector response and the failures that alter it.

Pure numpy, no drawing. Counts are sampled with *common random numbers*: every bin gets one uniform
number from the image's base generator and its count is the Poisson quantile of that number at the bin's
expected value. A localized defect changes the expected values of a few bins only, so the same seed with
and without the defect gives identical counts everywhere else — which is what lets us record where the
defect is and test that record against the pixels.

A run `Condition` (drift.py) changes the healthy content of every model the same way for the image with
and without its defect, and never draws from the base generator, so the rule above holds under drift too.

Long module: one section per plot type (healthy shape, its failures, its run conditions) reads best
together; splitting them would scatter each detector's picture.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import numpy as np
from scipy.special import erf, gammaln, pdtr, pdtrik

from hydra_assets.simulate.drift import NOMINAL_CONDITION, Condition

Generator = np.random.Generator
# (x0, x1, y0, y1) in data coordinates: the cells a 2D defect touches.
DataRegion = tuple[float, float, float, float]


@dataclass(frozen=True)
class FailureMode:
    """A way a detector or its monitoring goes wrong, and the label a shift crew would give it."""

    name: str
    label: str
    localized: bool
    description: str


FAILURE_MODES: dict[str, FailureMode] = {
    mode.name: mode
    for mode in (
        FailureMode("dead_channel", "Bad", True, "one readout channel records nothing (a white cell or a missing point)"),
        FailureMode("dead_sector", "Bad", True, "a group of channels sharing HV or electronics is off"),
        FailureMode("hot_channel", "Bad", True, "one channel fires far too often (saturated cell or a spike)"),
        FailureMode("noise_burst", "Bad", True, "pick-up noise adds hits in one region or time window"),
        FailureMode("shifted_peak", "Bad", True, "a calibration or timing offset moves the peak"),
        FailureMode("widened_peak", "Bad", True, "degraded resolution widens the peak"),
        FailureMode("low_statistics", "Bad", False, "1-3 % of the usual entries: too few to judge the detector"),
        FailureMode("empty", "NoData", False, "the histogram has no entries (detector or monitoring off)"),
    )
}


@dataclass
class Hist1D:
    """A 1D histogram; `reference` is the same histogram without the localized defect."""

    edges: np.ndarray
    counts: np.ndarray
    reference: np.ndarray
    log_y: bool = False
    detail: str | None = None


@dataclass
class Map2D:
    """A 2D histogram `counts[y, x]`; `region` holds the cells a localized defect touches."""

    xedges: np.ndarray
    yedges: np.ndarray
    counts: np.ndarray
    zmax: float
    region: DataRegion | None = None
    detail: str | None = None


@dataclass
class Efficiency:
    """Efficiency per channel with binomial errors; `reference_*` without the localized defect."""

    channels: np.ndarray
    efficiency: np.ndarray
    error: np.ndarray
    tracks: np.ndarray
    reference_efficiency: np.ndarray
    reference_error: np.ndarray
    detail: str | None = None
    changed: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))


Content = Hist1D | Map2D | Efficiency


def poisson_quantile(u: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Poisson counts at quantile `u` of `mean` (the inverse CDF, as scipy.stats.poisson.ppf does it)."""
    mean = np.maximum(np.asarray(mean, dtype=float), 0.0)
    positive = mean > 0
    counts = np.zeros(mean.shape)
    m, q = mean[positive], u[positive]
    upper = np.ceil(pdtrik(q, m))
    lower = np.maximum(upper - 1, 0)
    counts[positive] = np.where(pdtr(lower, m) >= q, lower, upper)
    return np.nan_to_num(counts)


def statistics_scale(base: Generator, defect: Generator, failure: str | None) -> float:
    """Entries relative to a nominal chunk: healthy chunks vary 0.6-1.5x, low statistics is 1-3 %.

    Always draws from `base` so the healthy content does not depend on the failure.
    """
    scale = float(np.exp(base.uniform(np.log(0.6), np.log(1.5))))
    if failure == "low_statistics":
        scale *= defect.uniform(0.01, 0.03)
    return scale


def _span(lo: int, hi: int, what: str) -> str:
    return f"{what} {lo}" if lo == hi else f"{what} {lo}-{hi}"


@cache
def _fingerprint(name: str, shape: tuple[int, ...], spread: float) -> np.ndarray:
    """Fixed channel-to-channel gain differences of one detector: the same in every image."""
    rng = np.random.default_rng(sum(name.encode()) * 7919)
    gains = rng.normal(1.0, spread, shape)
    gains.setflags(write=False)
    return gains


# ---- FDC: drift-chamber wires x planes occupancy --------------------------------------------------

FDC_WIRES, FDC_PLANES = 96, 24


FDC_DEGRADING = (slice(6, 12), slice(16, 32))  # planes 7-12, wires 17-32: one HV board losing gain


def fdc_occupancy(failure: str | None, base: Generator, defect: Generator,
                  condition: Condition = NOMINAL_CONDITION) -> Map2D:
    """Hits per wire and plane: rates rise towards the beam, the beam-hole wires are deadened on purpose.

    Conditions: a gain change steepens or flattens the radial profile and scales the hits; a new beam
    setting (smaller, off-centre beam spot) gives a steeper, left-right asymmetric profile; degradation
    lowers one HV board's hits.
    """
    wires = np.arange(1, FDC_WIRES + 1)
    radius = np.abs(wires - 48.5) * 1.0 + 8.0
    profile = radius ** (-0.7 * (1.3 if condition.new_setting else condition.gain))
    if condition.new_setting:
        profile = profile * (1.0 + 0.35 * np.tanh((wires - 48.5) / 15.0))
    profile[46:50] *= 0.12  # deadened beam-hole wires are normal, not a failure
    package = np.arange(FDC_PLANES) // 6
    plane_factor = np.array([1.0, 0.88, 0.78, 0.7])[package] * base.normal(1.0, 0.03, FDC_PLANES)
    scale = statistics_scale(base, defect, failure) * condition.statistics * condition.gain ** 3
    mean = plane_factor[:, None] * profile[None, :] * _fingerprint("FDC", (FDC_PLANES, FDC_WIRES), 0.05)
    mean *= 150.0 * scale / mean.mean()
    degraded = None
    if condition.severity:
        left = max(1.0 - 2.0 * condition.damage, 0.0)
        mean[FDC_DEGRADING] *= left
        degraded = f"wires 17-32, planes 7-12 at {100 * left:.0f} % (HV board degrading)"
    u = base.random(mean.shape)
    if failure == "empty":
        return Map2D(_edges(FDC_WIRES), _edges(FDC_PLANES), np.zeros_like(mean), 1.0)
    reference = poisson_quantile(u, mean)
    zmax = 1.05 * max(float(reference.max()), 1.0)
    region, detail = None, None
    if failure == "dead_channel":
        wire = int(defect.choice(_away_from_beam(wires, 3)))
        first = int(defect.integers(0, 3)) * 6  # whole packages: one dead cable serves several planes
        planes = slice(first, first + int(defect.choice([6, 12])))
        mean[planes, wire - 1] = 0.0
        region = (wire - 0.5, wire + 0.5, planes.start + 0.5, planes.stop + 0.5)
        detail = f"wire {wire}, {_span(planes.start + 1, planes.stop, 'planes')} dead"
    elif failure == "dead_sector":
        if defect.random() < 0.5:  # one HV board: 16 wires of a package
            first_wire = int(defect.integers(0, 6)) * 16
            first_plane = int(defect.integers(0, 4)) * 6
            wires_cut, planes = slice(first_wire, first_wire + 16), slice(first_plane, first_plane + 6)
        else:  # HV trip of whole planes
            first_plane = int(defect.integers(0, FDC_PLANES - 2))
            wires_cut, planes = slice(0, FDC_WIRES), slice(first_plane, first_plane + int(defect.integers(1, 3)))
        mean[planes, wires_cut] *= defect.uniform(0.0, 0.05)
        region = (wires_cut.start + 0.5, wires_cut.stop + 0.5, planes.start + 0.5, planes.stop + 0.5)
        detail = (f"{_span(wires_cut.start + 1, wires_cut.stop, 'wires')}, "
                  f"{_span(planes.start + 1, planes.stop, 'planes')} off")
    elif failure == "hot_channel":
        wire = int(defect.choice(_away_from_beam(wires, 12)))
        height = int(defect.integers(4, 9))
        first = int(defect.integers(0, FDC_PLANES - height + 1))
        planes = slice(first, first + height)
        mean[planes, wire - 1] = zmax * defect.uniform(3.0, 8.0)
        region = (wire - 0.5, wire + 0.5, planes.start + 0.5, planes.stop + 0.5)
        detail = f"wire {wire}, {_span(planes.start + 1, planes.stop, 'planes')} hot"
    elif failure == "noise_burst":
        width, height = int(defect.integers(10, 25)), int(defect.integers(3, 7))
        x0, y0 = int(defect.integers(0, FDC_WIRES - width)), int(defect.integers(0, FDC_PLANES - height))
        block = (slice(y0, y0 + height), slice(x0, x0 + width))
        mean[block] += zmax * defect.uniform(0.4, 1.0) * defect.gamma(2.0, 0.5, (height, width))
        region = (x0 + 0.5, x0 + width + 0.5, y0 + 0.5, y0 + height + 0.5)
        detail = f"noise in {_span(x0 + 1, x0 + width, 'wires')}, {_span(y0 + 1, y0 + height, 'planes')}"
    counts = poisson_quantile(u, mean)
    return Map2D(_edges(FDC_WIRES), _edges(FDC_PLANES), counts, zmax, region, detail or degraded)


def _edges(n: int) -> np.ndarray:
    """Bin edges of channels numbered 1..n."""
    return np.arange(n + 1) + 0.5


def _away_from_beam(wires: np.ndarray, distance: float) -> np.ndarray:
    return wires[np.abs(wires - 48.5) > distance]


# ---- BCAL: calorimeter eta x phi occupancy ----------------------------------------------------------

BCAL_PHI_BINS, BCAL_ETA_BINS = 48, 26
BCAL_ETA_RANGE = (-0.6, 2.0)


BCAL_DEGRADING = slice(19, 22)  # modules 20-22: their gain falls


def bcal_eta_phi(failure: str | None, base: Generator, defect: Generator,
                 condition: Condition = NOMINAL_CONDITION) -> Map2D:
    """Shower occupancy per module (phi) and eta: forward eta sees more, a mild phi modulation.

    Conditions: a gain change alters the eta slope; a new (polarised) beam flattens eta and adds a
    cos 2phi modulation; degradation lowers three modules.
    """
    phi_edges = np.linspace(0.0, 360.0, BCAL_PHI_BINS + 1)
    eta_edges = np.linspace(*BCAL_ETA_RANGE, BCAL_ETA_BINS + 1)
    phi = 0.5 * (phi_edges[1:] + phi_edges[:-1])
    eta = 0.5 * (eta_edges[1:] + eta_edges[:-1])
    slope = 0.45 if condition.new_setting else 0.9 * condition.gain ** 2
    eta_shape = np.exp(slope * eta) * (1.0 - 0.25 * np.exp(-((eta - 1.7) / 0.25) ** 2))
    phi_shape = 1.0 + base.uniform(0.02, 0.08) * np.cos(np.radians(phi - base.uniform(0, 360)))
    if condition.new_setting:
        phi_shape = phi_shape * (1.0 + 0.25 * np.cos(2.0 * np.radians(phi)))
    scale = statistics_scale(base, defect, failure) * condition.statistics
    mean = eta_shape[:, None] * phi_shape[None, :]
    mean *= _fingerprint("BCAL", (1, BCAL_PHI_BINS), 0.06) * _fingerprint("BCALeta", (BCAL_ETA_BINS, 1), 0.02)
    mean *= 120.0 * scale / mean.mean()
    degraded = None
    if condition.severity:
        left = max(1.0 - 2.0 * condition.damage, 0.0)
        mean[:, BCAL_DEGRADING] *= left
        degraded = f"modules 20-22 at {100 * left:.0f} % (gain degrading)"
    u = base.random(mean.shape)
    if failure == "empty":
        return Map2D(phi_edges, eta_edges, np.zeros_like(mean), 1.0)
    reference = poisson_quantile(u, mean)
    zmax = 1.05 * max(float(reference.max()), 1.0)
    region, detail = None, None

    def cells(x0: int, x1: int, y0: int, y1: int) -> DataRegion:
        return float(phi_edges[x0]), float(phi_edges[x1]), float(eta_edges[y0]), float(eta_edges[y1])

    if failure == "dead_channel":
        module = int(defect.integers(0, BCAL_PHI_BINS))
        height = int(defect.integers(7, 14))
        y0 = int(defect.integers(0, BCAL_ETA_BINS - height + 1))
        y1 = y0 + height
        mean[y0:y1, module] *= defect.uniform(0.0, 0.05)
        region, detail = cells(module, module + 1, y0, y1), f"module {module + 1} dead"
    elif failure == "dead_sector":
        width = int(defect.integers(2, 5))
        module = int(defect.integers(0, BCAL_PHI_BINS - width + 1))
        mean[:, module:module + width] *= defect.uniform(0.0, 0.08)
        region = cells(module, module + width, 0, BCAL_ETA_BINS)
        detail = f"{_span(module + 1, module + width, 'modules')} off"
    elif failure == "hot_channel":
        module = int(defect.integers(0, BCAL_PHI_BINS))
        height = int(defect.integers(5, 11))
        y0 = int(defect.integers(0, BCAL_ETA_BINS // 2))  # low eta, where the hot cell stands out
        mean[y0:y0 + height, module] = zmax * defect.uniform(3.0, 8.0)
        region, detail = cells(module, module + 1, y0, y0 + height), f"module {module + 1} hot"
    elif failure == "noise_burst":
        width, height = int(defect.integers(3, 9)), int(defect.integers(4, 11))
        x0 = int(defect.integers(0, BCAL_PHI_BINS - width + 1))
        y0 = int(defect.integers(0, BCAL_ETA_BINS - height + 1))
        mean[y0:y0 + height, x0:x0 + width] += zmax * defect.uniform(0.5, 1.0) * defect.gamma(2.0, 0.5, (height, width))
        region = cells(x0, x0 + width, y0, y0 + height)
        detail = f"noise in {_span(x0 + 1, x0 + width, 'modules')}"
    counts = poisson_quantile(u, mean)
    return Map2D(phi_edges, eta_edges, counts, zmax, region, detail or degraded)


# ---- CDC: drift-time spectrum ----------------------------------------------------------------------

CDC_EDGES = np.linspace(-200.0, 1400.0, 161)


def _cdc_shape(t: np.ndarray, t0: float, sigma: float, t_max: float) -> np.ndarray:
    rise = 0.5 * (1.0 + erf((t - t0) / (np.sqrt(2.0) * sigma)))
    body = 0.35 + 0.65 * np.exp(-np.clip(t - t0, 0.0, None) / 180.0)
    fall = 1.0 / (1.0 + np.exp(np.clip((t - t0 - t_max) / 25.0, -50, 50)))
    return rise * body * fall


def cdc_timing(failure: str | None, base: Generator, defect: Generator,
               condition: Condition = NOMINAL_CONDITION) -> Hist1D:
    """Drift times of CDC hits: a sharp rise at t0, a falling body, the end at the maximum drift time.

    Conditions: a gain (timing) change moves t0 by 28-48 ns (a Bad shift is 80-250 ns); a new gas mix
    or HV setting shortens the maximum drift time and slows the rise; degradation widens the rise.
    """
    t = 0.5 * (CDC_EDGES[1:] + CDC_EDGES[:-1])
    t0, sigma, t_max = base.normal(0.0, 4.0), 8.0 * base.uniform(0.9, 1.1), 850.0 + base.normal(0.0, 10.0)
    background = base.uniform(0.02, 0.04)
    scale = statistics_scale(base, defect, failure) * condition.statistics
    t0 += (condition.gain - 1.0) * 400.0
    if condition.new_setting:
        sigma, t_max = 1.6 * sigma, t_max - 150.0
    degraded = None
    if condition.severity:
        sigma += 150.0 * condition.damage
        degraded = f"rise time {sigma:.0f} ns (resolution degrading)"
    u = base.random(t.shape)
    peak = 2500.0 * scale

    def spectrum(t0: float, sigma: float) -> np.ndarray:
        return peak * (_cdc_shape(t, t0, sigma, t_max) + background)

    mean = spectrum(t0, sigma)
    if failure == "empty":
        return Hist1D(CDC_EDGES, np.zeros_like(t), np.zeros_like(t))
    reference = poisson_quantile(u, mean)
    detail = None
    if failure == "shifted_peak":
        shift = defect.choice([-1.0, 1.0]) * defect.uniform(80.0, 250.0)
        mean, detail = spectrum(t0 + shift, sigma), f"t0 shifted by {shift:+.0f} ns"
    elif failure == "widened_peak":
        width = defect.uniform(45.0, 90.0)
        mean, detail = spectrum(t0, width), f"rise time {width:.0f} ns instead of {sigma:.0f} ns"
    elif failure == "noise_burst":
        centre, length, period = defect.uniform(250.0, 1150.0), defect.uniform(100.0, 250.0), defect.uniform(30.0, 60.0)
        window = np.abs(t - centre) < length / 2
        ringing = 0.5 * (1.0 + np.cos(2.0 * np.pi * (t - centre) / period))
        mean = mean + window * ringing * peak * defect.uniform(0.4, 0.9)
        detail = f"ringing around {centre:.0f} ns"
    counts = poisson_quantile(u, mean)
    return Hist1D(CDC_EDGES, counts, reference, detail=detail or degraded)


# ---- FCAL: energy per block hit -----------------------------------------------------------------------

FCAL_EDGES = np.linspace(0.0, 600.0, 121)


def _moyal(x: np.ndarray, mpv: float, width: float) -> np.ndarray:
    z = (x - mpv) / width
    return np.exp(-0.5 * (z + np.exp(-z)))


def fcal_energy(failure: str | None, base: Generator, defect: Generator,
                condition: Condition = NOMINAL_CONDITION) -> Hist1D:
    """Energy per FCAL block hit (log scale): a steep low-energy spectrum and a MIP peak near 170 MeV.

    Conditions: a gain of 0.88-0.93 or 1.07-1.12 (a Bad gain is 0.55-0.75 or 1.35-1.6); a new beam
    energy gives a harder low-energy spectrum and a wider MIP peak; degradation lowers the gain
    (ageing PMTs).
    """
    e = 0.5 * (FCAL_EDGES[1:] + FCAL_EDGES[:-1])
    mpv, width = 170.0 * base.normal(1.0, 0.015), 14.0 * base.uniform(0.9, 1.1)
    scale = statistics_scale(base, defect, failure) * condition.statistics
    u = base.random(e.shape)
    run_gain = condition.gain * max(1.0 - condition.damage, 0.35)
    slope = 60.0 if condition.new_setting else 45.0
    if condition.new_setting:
        width *= 1.3
    degraded = f"gain {run_gain:.2f} (PMT gain degrading)" if condition.severity else None

    def spectrum(gain: float, width: float) -> np.ndarray:
        energy = e / (gain * run_gain)
        threshold = 1.0 / (1.0 + np.exp(-(energy - 12.0) / 2.0))
        steep = 2.0e4 * np.exp(-energy / slope) * threshold
        return scale * (steep + 2000.0 * _moyal(energy, mpv, width) + 4.0)

    mean = spectrum(1.0, width)
    if failure == "empty":
        return Hist1D(FCAL_EDGES, np.zeros_like(e), np.zeros_like(e), log_y=True)
    reference = poisson_quantile(u, mean)
    detail = None
    if failure == "shifted_peak":
        gain = defect.choice([defect.uniform(0.55, 0.75), defect.uniform(1.35, 1.6)])
        mean, detail = spectrum(gain, width), f"gain {gain:.2f}: MIP peak at {gain * mpv:.0f} MeV"
    elif failure == "widened_peak":
        wide = width * defect.uniform(2.5, 4.0)
        mean, detail = spectrum(1.0, wide), f"MIP width {wide:.0f} MeV instead of {width:.0f} MeV"
    elif failure == "hot_channel":
        first = int(defect.integers(24, len(e) - 2))  # above 120 MeV, where a spike stands out
        bins = slice(first, first + int(defect.integers(1, 3)))
        mean = mean.copy()
        mean[bins] += np.maximum(mean[bins], 20.0 * scale) * defect.uniform(15.0, 40.0)
        detail = f"hot block at {e[first]:.0f} MeV"
    elif failure == "noise_burst":
        centre, width = defect.uniform(260.0, 520.0), defect.uniform(15.0, 40.0)
        height = defect.uniform(100.0, 600.0) * scale
        mean = mean + height * np.exp(-0.5 * ((e - centre) / width) ** 2)
        detail = f"noise hits around {centre:.0f} MeV"
    counts = poisson_quantile(u, mean)
    return Hist1D(FCAL_EDGES, counts, reference, log_y=True, detail=detail or degraded)


# ---- TOF: hits per event -----------------------------------------------------------------------------

TOF_EDGES = np.arange(0, 42) - 0.5


def _negative_binomial(k: np.ndarray, mean: float, shape: float) -> np.ndarray:
    p = shape / (shape + mean)
    log_pmf = gammaln(k + shape) - gammaln(k + 1) - gammaln(shape) + shape * np.log(p) + k * np.log1p(-p)
    return np.exp(log_pmf)


def tof_multiplicity(failure: str | None, base: Generator, defect: Generator,
                     condition: Condition = NOMINAL_CONDITION) -> Hist1D:
    """TOF paddle hits per event: a broad peak near 9 hits.

    Conditions: a gain (threshold) change scales the mean by 0.88-0.93 or 1.07-1.12 (Bad: 0.45-0.65 or
    1.5-1.9); a new trigger takes busier events and adds a class of 2-3 hit events; degradation (paddles
    dying) lowers the mean.
    """
    k = np.arange(0, 41)
    mean_hits, shape = 9.0 * base.normal(1.0, 0.03), 12.0 * base.uniform(0.9, 1.1)
    scale = statistics_scale(base, defect, failure) * condition.statistics
    u = base.random(k.shape)
    events = 30000.0 * scale
    mean_hits *= condition.gain * max(1.0 - 1.4 * condition.damage, 0.3) * (1.25 if condition.new_setting else 1.0)
    degraded = f"mean multiplicity {mean_hits:.1f} (paddles dying)" if condition.severity else None
    extra = events * 0.15 * _negative_binomial(k, 2.5, 20.0) if condition.new_setting else 0.0
    mean = events * _negative_binomial(k, mean_hits, shape) + extra
    if failure == "empty":
        return Hist1D(TOF_EDGES, np.zeros(k.shape), np.zeros(k.shape))
    reference = poisson_quantile(u, mean)
    detail = None
    if failure == "shifted_peak":
        factor = defect.choice([defect.uniform(0.45, 0.65), defect.uniform(1.5, 1.9)])
        mean = events * _negative_binomial(k, mean_hits * factor, shape) + extra
        detail = f"mean multiplicity {mean_hits * factor:.1f} instead of {mean_hits:.1f}"
    elif failure == "widened_peak":
        wide = defect.uniform(1.5, 3.0)
        mean, detail = events * _negative_binomial(k, mean_hits, wide) + extra, "multiplicity spread far too wide"
    elif failure == "noise_burst":
        centre, width = defect.uniform(24.0, 34.0), defect.uniform(1.5, 3.0)
        height = defect.uniform(0.25, 0.5) * float(mean.max())
        mean = mean + height * np.exp(-0.5 * ((k - centre) / width) ** 2)
        detail = f"noise events near {centre:.0f} hits"
    counts = poisson_quantile(u, mean)
    return Hist1D(TOF_EDGES, counts, reference, detail=detail or degraded)


# ---- Start counter: efficiency per paddle ----------------------------------------------------------

ST_PADDLES = 30


def _binomial_quantile(z: np.ndarray, tracks: np.ndarray, efficiency: np.ndarray) -> np.ndarray:
    """Hits among `tracks` at normal quantile `z` (normal approximation, kept within 0..tracks)."""
    spread = np.sqrt(tracks * efficiency * (1.0 - efficiency))
    return np.clip(np.round(tracks * efficiency + z * spread), 0, tracks)


def _efficiency_points(hits: np.ndarray, tracks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(invalid="ignore", divide="ignore"):
        efficiency = np.where(tracks > 0, hits / np.maximum(tracks, 1), np.nan)
    p = (hits + 1.0) / (tracks + 2.0)
    error = np.where(tracks > 0, np.sqrt(p * (1.0 - p) / (tracks + 3.0)), np.nan)
    return efficiency, error


ST_DEGRADING = slice(9, 13)  # paddles 10-13: their SiPM bias drifts away


def st_efficiency(failure: str | None, base: Generator, defect: Generator,
                  condition: Condition = NOMINAL_CONDITION) -> Efficiency:
    """Start-counter efficiency per paddle from matched tracks: ~97-99 % everywhere when healthy.

    Conditions: a gain change moves every efficiency by 0.7-1.2 points; a new beam spot makes the tracks
    per paddle (so the error bars) vary strongly around the ring; degradation lowers four paddles.
    """
    paddles = np.arange(1, ST_PADDLES + 1)
    nominal = np.clip(0.982 + 0.006 * _fingerprint("ST", (ST_PADDLES,), 1.0), 0.95, 0.995)
    nominal = np.clip(nominal + 0.1 * (condition.gain - 1.0), 0.9, 0.999)
    degraded = None
    if condition.severity:
        left = max(1.0 - 1.2 * condition.damage, 0.0)
        nominal[ST_DEGRADING] *= left
        degraded = f"paddles 10-13 at {100 * left:.0f} % of nominal (bias drifting)"
    scale = statistics_scale(base, defect, failure) * condition.statistics
    share = base.uniform(0.8, 1.2, ST_PADDLES)
    if condition.new_setting:
        share = share * (1.0 + 0.7 * np.sin(2.0 * np.pi * paddles / ST_PADDLES))
    z_tracks, z_hits = base.standard_normal(ST_PADDLES), base.standard_normal(ST_PADDLES)
    tracks = np.maximum(np.round(3000.0 * scale * share + z_tracks * np.sqrt(3000.0 * scale * share)), 0)
    if failure == "empty":
        tracks = np.zeros(ST_PADDLES)
    reference = _efficiency_points(_binomial_quantile(z_hits, tracks, nominal), tracks)
    efficiency = nominal.copy()
    detail = None
    if failure == "dead_channel":
        paddle = int(defect.integers(0, ST_PADDLES))
        efficiency[paddle] = defect.uniform(0.0, 0.3)
        detail = f"paddle {paddle + 1} dead"
    elif failure == "dead_sector":
        width = int(defect.integers(3, 7))
        first = int(defect.integers(0, ST_PADDLES - width + 1))
        efficiency[first:first + width] = defect.uniform(0.35, 0.75) + defect.normal(0.0, 0.02, width)
        detail = f"{_span(first + 1, first + width, 'paddles')} at reduced bias"
    shown = _efficiency_points(_binomial_quantile(z_hits, tracks, efficiency), tracks)
    return Efficiency(paddles, shown[0], shown[1], tracks, reference[0], reference[1], detail or degraded,
                      changed=efficiency != nominal)


MODELS = {
    "FDC_occupancy": fdc_occupancy,
    "BCAL_eta_phi": bcal_eta_phi,
    "CDC_timing": cdc_timing,
    "FCAL_energy": fcal_energy,
    "TOF_multiplicity": tof_multiplicity,
    "ST_efficiency": st_efficiency,
}
