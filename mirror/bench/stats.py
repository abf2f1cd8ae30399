"""Percentiles and the summary of one measured row: what the table, the JSON and the plots
show. Percentiles interpolate linearly between closest ranks (numpy's default, "type 7")."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0..100) of ``values``; NaN when there are none."""
    if not 0 <= p <= 100:
        raise ValueError(f"percentile {p} is outside 0..100")
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def quantiles(values: Sequence[float], points: int = 101) -> list[float]:
    """``points`` evenly spaced percentiles (0, 1, ..., 100 by default), for CDF plots."""
    if not values:
        return []
    return [percentile(values, 100 * i / (points - 1)) for i in range(points)]


@dataclass(frozen=True, slots=True)
class Sample:
    """One measured operation: its latency (s), the bytes it moved and its error ("" if ok)."""

    latency: float
    size: int = 0
    error: str = ""

    @property
    def ok(self) -> bool:
        """Whether the operation succeeded."""
        return not self.error


@dataclass(frozen=True, slots=True)
class Summary:
    """Counts, latency percentiles of the successful operations (s), throughput."""

    requested: int
    sent: int
    errors: int
    error_kinds: dict[str, int]
    p50: float
    p90: float
    p99: float
    max: float
    mean: float
    per_second: float
    bytes_per_second: float
    size: int
    quantiles: list[float]


def summarise(samples: Sequence[Sample], requested: int, elapsed: float) -> Summary:
    """The :class:`Summary` of ``samples`` that took ``elapsed`` seconds of wall time."""
    good = [s.latency for s in samples if s.ok]
    kinds = Counter(s.error for s in samples if not s.ok)
    size = sum(s.size for s in samples if s.ok)
    rate = len(good) / elapsed if elapsed > 0 else math.nan
    return Summary(
        requested=requested,
        sent=len(samples),
        errors=sum(kinds.values()),
        error_kinds=dict(kinds.most_common()),
        p50=percentile(good, 50),
        p90=percentile(good, 90),
        p99=percentile(good, 99),
        max=max(good) if good else math.nan,
        mean=sum(good) / len(good) if good else math.nan,
        per_second=rate,
        bytes_per_second=size / elapsed if elapsed > 0 else math.nan,
        size=size,
        quantiles=quantiles(good),
    )
