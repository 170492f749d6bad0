"""Mean, sample std and the paired-by-seed t interval of a difference: the error bars of a report."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Hashable, Optional, Sequence

# Two-sided 95% quantiles of Student's t, t(0.975; df), to three decimals (any statistics table).
# A df between two rows takes the smaller df's value: the interval is then a little wider, never narrower.
T95 = {
    1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
    11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
    20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048,
    29: 2.045, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980,
}
Z95 = 1.960  # the normal quantile, t's limit


def t_quantile_95(df: int) -> float:
    if df < 1:
        raise ValueError(f"a t interval needs at least 1 degree of freedom, not {df}")
    if df > max(T95):
        return Z95
    return T95[max(d for d in T95 if d <= df)]


@dataclass
class Stat:
    mean: float
    std: Optional[float]  # sample std (n - 1); None for a single value
    n: int


def describe(values: Sequence[float]) -> Optional[Stat]:
    values = [float(v) for v in values if v is not None]
    if not values:
        return None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return Stat(mean, None, 1)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return Stat(mean, math.sqrt(var), len(values))


@dataclass
class Delta:
    """The mean over seeds of (group - baseline), with a 95% t interval when there are 2+ seeds."""

    mean: float
    low: Optional[float]
    high: Optional[float]
    n: int  # seeds both groups have


def paired_delta(values: Dict[Hashable, float], baseline: Dict[Hashable, float]) -> Optional[Delta]:
    """Pairs by seed: the same seed means the same initial weights and data order, so the
    seed-to-seed noise both groups share cancels and the interval is narrower than unpaired."""
    seeds = [s for s in values if s in baseline]
    if not seeds:
        return None
    diffs = describe([values[s] - baseline[s] for s in seeds])
    if diffs.std is None:
        return Delta(diffs.mean, None, None, 1)
    half = t_quantile_95(diffs.n - 1) * diffs.std / math.sqrt(diffs.n)
    return Delta(diffs.mean, diffs.mean - half, diffs.mean + half, diffs.n)
