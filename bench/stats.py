"""Percentiles and small summaries, without numpy."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], p: float) -> float | None:
    """The p-th percentile (0..100) with linear interpolation between closest ranks
    (numpy's default); None for no values."""
    if not values:
        return None
    data = sorted(values)
    if len(data) == 1:
        return float(data[0])
    rank = (len(data) - 1) * p / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return float(data[low])
    return float(data[low] + (data[high] - data[low]) * (rank - low))


def summary_ms(seconds: Sequence[float]) -> dict[str, float | int | None]:
    """count, p50, p95, p99, max and mean of durations given in seconds, as milliseconds."""
    data = sorted(seconds)

    def ms(v: float | None) -> float | None:
        return None if v is None else round(v * 1000.0, 3)

    return {
        "count": len(data),
        "p50_ms": ms(percentile(data, 50)),
        "p95_ms": ms(percentile(data, 95)),
        "p99_ms": ms(percentile(data, 99)),
        "max_ms": ms(data[-1] if data else None),
        "mean_ms": ms(sum(data) / len(data) if data else None),
    }


def median(values: Sequence[float]) -> float | None:
    return percentile(values, 50)
