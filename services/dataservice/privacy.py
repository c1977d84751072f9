"""Differentially private statistics for L3 answers, with OpenDP (no hand-rolled samplers).

An L3 answer is a few *vector statistics* over its groups: the count of rows per group,
the sum of one clamped column per group, the number of distinct values per group. The
privacy unit is one person, who contributes at most ``m`` rows (``max_rows_per_person``,
enforced by the contribution-bounded copy in :mod:`services.dataservice.releases`), so
adding or removing one person changes a whole vector by at most (L1, over every group):

* count of rows, count of non-null values, count of distinct values: ``m``;
* sum of a column clamped to ``[lo, hi]``: ``m · max(|lo|, |hi|)``.

Each vector gets one OpenDP measurement on ``vector_domain`` with ``l1_distance``, so one
privacy map covers all of a statistic's groups: the discrete Laplace mechanism for integer
statistics and OpenDP's float Laplace (exact sampling, safe against the floating-point
attack on textbook samplers) for float sums. When the groups are not public (no declared
key lists), the count vector is released by ``make_laplace_threshold`` instead: only groups
whose noisy count clears a threshold exist in the answer, at a stated δ.

The query's ε is split evenly over its statistics; each scale is the smallest at which
OpenDP's privacy map stays within the share, and the charge is the sum of the maps
(sequential composition), rounded *up* to a millionth of ε (and δ to 1e-12).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Any, Literal

import opendp.prelude as dp

dp.enable_features("contrib")

MICRO = 10**6  # ε is accounted in millionths
PICO = 10**12  # δ in units of 1e-12
#: 95 % intervals; the mean's interval combines two 97.5 % ones (union bound).
ALPHA = 0.05

StatKind = Literal["count", "sum", "count_distinct"]


@dataclass(frozen=True)
class Stat:
    """One statistic computed for every group (a vector)."""

    kind: StatKind
    column: str | None  # None: count of rows
    integer: bool
    sensitivity: int | float  # per person, L1 over the whole vector of groups

    @property
    def label(self) -> str:
        return self.kind if self.column is None else f"{self.kind}({self.column})"


@dataclass(frozen=True)
class Mechanism:
    """An OpenDP measurement calibrated for one statistic, and what it costs."""

    stat: Stat
    scale: float
    epsilon: Fraction  # OpenDP's privacy map at the statistic's sensitivity
    delta: Fraction
    threshold: int | None = None  # partition selection: groups below it are not released

    @property
    def name(self) -> str:
        if self.threshold is not None:
            return "laplace-threshold (opendp make_laplace_threshold)"
        if self.stat.integer:
            return "discrete-laplace (opendp make_laplace, integers)"
        return "laplace (opendp make_laplace, floats)"

    def half_width(self, alpha: float = ALPHA) -> float:
        """Half-width of the (1 − alpha) interval of one noisy value (OpenDP accuracy helper)."""
        return _accuracy(self.stat.integer, self.scale, alpha)

    def release(self, values: Sequence[int | float]) -> list[Any]:
        """Noise for every value of the vector, in one measurement."""
        if not values:
            return []
        if self.stat.integer:
            return list(_laplace(True, self.scale)([int(v) for v in values]))
        return list(_laplace(False, self.scale)([float(v) for v in values]))

    def select(self, counts: dict[str, int]) -> dict[str, int]:
        """Partition selection: the noisy counts of the groups that clear the threshold."""
        assert self.threshold is not None
        if not counts:
            return {}
        out = _threshold(self.scale, self.threshold)({k: int(v) for k, v in counts.items()})
        return {str(k): int(v) for k, v in out.items()}


@dataclass(frozen=True)
class DPPlan:
    """The mechanisms of one answer and its charge; fixed before any data is read."""

    mechanisms: list[Mechanism]
    requested_micro: int
    epsilon_micro: int  # the charge: OpenDP's maps, summed, rounded up
    delta_pico: int

    @property
    def selection(self) -> Mechanism | None:
        return next((m for m in self.mechanisms if m.threshold is not None), None)

    def mechanism(self, stat: Stat) -> Mechanism:
        return next(m for m in self.mechanisms if m.stat == stat)


class CalibrationError(ValueError):
    """No scale fits the share (an epsilon far too small for the statistics asked)."""


# --- OpenDP measurements, built once per scale ----------------------------------------

def _vector_space(integer: bool) -> tuple[Any, Any]:
    if integer:
        return dp.vector_domain(dp.atom_domain(T=dp.i64)), dp.l1_distance(T=dp.i64)
    return dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.l1_distance(T=float)


@lru_cache(maxsize=2048)
def _laplace(integer: bool, scale: float) -> Any:
    return dp.m.make_laplace(*_vector_space(integer), scale=scale)


_SELECTION_SPACE = (dp.map_domain(dp.atom_domain(T=str), dp.atom_domain(T=dp.i64)),
                    dp.l01inf_distance(dp.absolute_distance(T=dp.i64)))


@lru_cache(maxsize=512)
def _threshold(scale: float, threshold: int) -> Any:
    return dp.m.make_laplace_threshold(*_SELECTION_SPACE, scale=scale, threshold=threshold)


@lru_cache(maxsize=4096)
def _accuracy(integer: bool, scale: float, alpha: float) -> float:
    if integer:
        return float(dp.discrete_laplacian_scale_to_accuracy(scale, alpha))
    return float(dp.laplacian_scale_to_accuracy(scale, alpha))


def _d_in(stat: Stat) -> int | float:
    return int(stat.sensitivity) if stat.integer else float(stat.sensitivity)


@lru_cache(maxsize=4096)
def calibrate(integer: bool, sensitivity: int | float, share_micro: int) -> tuple[float, Fraction]:
    """The smallest scale (from sensitivity/share upwards) whose privacy map is within the share."""
    share = Fraction(share_micro, MICRO)
    scale = float(sensitivity) * MICRO / share_micro
    d_in = int(sensitivity) if integer else float(sensitivity)
    for step in range(400):
        eps = Fraction(_laplace(integer, scale).map(d_in))
        if eps <= share:
            return scale, eps
        scale = math.nextafter(scale, math.inf) if step < 64 else scale * (1 + 1e-9)
    raise CalibrationError(f"no Laplace scale fits epsilon {share} at sensitivity {sensitivity}")


@lru_cache(maxsize=1024)
def calibrate_selection(rows_per_person: int, share_micro: int,
                        delta_pico: int) -> tuple[float, int, Fraction, Fraction]:
    """Scale and smallest threshold of the partition-selection count: ε within the share,
    δ within ``delta_pico``. One person touches at most ``m`` groups, adding at most ``m``
    to one group and ``m`` in all: d_in = (l0, l1, l∞) = (m, m, m)."""
    m = rows_per_person
    d_in = (m, m, m)
    share, delta = Fraction(share_micro, MICRO), Fraction(delta_pico, PICO)
    scale = float(m) * MICRO / share_micro
    probe = 1 << 40  # the ε part does not depend on the threshold
    for step in range(400):
        if Fraction(_threshold(scale, probe).map(d_in)[0]) <= share:
            break
        scale = math.nextafter(scale, math.inf) if step < 64 else scale * (1 + 1e-9)
    else:
        raise CalibrationError(f"no threshold scale fits epsilon {share}")
    lo, hi = m, m
    while Fraction(_threshold(scale, hi).map(d_in)[1]) > delta:
        lo, hi = hi, hi * 2
        if hi > 1 << 40:
            raise CalibrationError(f"no threshold reaches delta {delta}")
    while lo < hi:
        mid = (lo + hi) // 2
        if Fraction(_threshold(scale, mid).map(d_in)[1]) <= delta:
            hi = mid
        else:
            lo = mid + 1
    eps, dlt = _threshold(scale, hi).map(d_in)
    return scale, hi, Fraction(eps), Fraction(dlt)


def split(total_micro: int, parts: int) -> list[int]:
    """Equal integer shares of ``total_micro`` (the first ones take the remainder)."""
    base, rest = divmod(total_micro, parts)
    return [base + (1 if i < rest else 0) for i in range(parts)]


def plan(stats: Sequence[Stat], epsilon_micro: int, *, rows_per_person: int,
         selection_delta_pico: int | None) -> DPPlan:
    """Calibrate one mechanism per statistic. With ``selection_delta_pico`` the groups are
    chosen by a noisy threshold on the first statistic, which must be the row count."""
    if not stats:
        raise ValueError("an answer needs at least one statistic")
    if epsilon_micro < len(stats):
        raise CalibrationError("epsilon is too small to split over the statistics asked")
    mechanisms: list[Mechanism] = []
    for i, (stat, share) in enumerate(zip(stats, split(epsilon_micro, len(stats)), strict=True)):
        if i == 0 and selection_delta_pico is not None:
            assert stat.kind == "count" and stat.column is None and stat.integer
            scale, tau, eps, dlt = calibrate_selection(rows_per_person, share, selection_delta_pico)
            mechanisms.append(Mechanism(stat, scale, eps, dlt, threshold=tau))
        else:
            scale, eps = calibrate(stat.integer, stat.sensitivity, share)
            mechanisms.append(Mechanism(stat, scale, eps, Fraction(0)))
    eps_total = sum((m.epsilon for m in mechanisms), Fraction(0))
    delta_total = sum((m.delta for m in mechanisms), Fraction(0))
    charge = math.ceil(eps_total * MICRO)
    assert charge <= epsilon_micro, "calibration exceeded the requested epsilon"
    return DPPlan(mechanisms, epsilon_micro, charge, math.ceil(delta_total * PICO))


def mean_interval(noisy_sum: float, noisy_count: float, sum_half: float, count_half: float,
                  lo: float, hi: float) -> tuple[float, float]:
    """Where the true mean lies when the true sum and count are within the half-widths
    (each at 97.5 %, so both at 95 %): the extremes of sum/count over that box, within the
    clamping bounds. With too little count left above zero, the bounds are all we know."""
    c_lo, c_hi = noisy_count - count_half, noisy_count + count_half
    if c_lo <= 0:
        return lo, hi
    s_lo, s_hi = noisy_sum - sum_half, noisy_sum + sum_half
    corners = [s_lo / c_lo, s_lo / c_hi, s_hi / c_lo, s_hi / c_hi]
    return max(lo, min(corners)), min(hi, max(corners))
