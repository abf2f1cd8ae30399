"""Percentiles interpolate between closest ranks; a summary counts what was sent, what
failed (by kind) and the throughput of what succeeded."""

from __future__ import annotations

import math

import pytest

from mirror.bench.stats import Sample, percentile, quantiles, summarise


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [
        ([1.0, 2.0, 3.0, 4.0, 5.0], 50, 3.0),
        ([5.0, 1.0, 4.0, 2.0, 3.0], 50, 3.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
        ([1.0, 2.0, 3.0, 4.0], 90, 3.7),
        ([10.0, 20.0], 99, 19.9),
        ([1.0, 2.0, 3.0], 0, 1.0),
        ([1.0, 2.0, 3.0], 100, 3.0),
        ([7.0], 99, 7.0),
    ],
    ids=["odd-median", "unsorted", "even-median", "p90", "p99-of-two", "p0-min", "p100-max", "one"],
)
def test_percentile_interpolates_between_closest_ranks(
    values: list[float], p: float, expected: float
) -> None:
    assert percentile(values, p) == pytest.approx(expected)


def test_percentile_of_nothing_is_nan_and_outside_0_100_is_refused() -> None:
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_quantiles_run_from_min_to_max_in_101_points() -> None:
    q = quantiles([float(x) for x in range(1, 11)])
    assert len(q) == 101 and q[0] == 1.0 and q[-1] == 10.0 and q == sorted(q)
    assert quantiles([]) == []


def test_summary_counts_errors_by_kind_and_measures_only_successes() -> None:
    samples = [Sample(0.1, 1000), Sample(0.3, 1000), Sample(5.0, 0, "HTTP 401")]
    samples += [Sample(9.0, 0, "HTTP 401"), Sample(0.2, 0, "timeout")]
    summary = summarise(samples, requested=6, elapsed=2.0)
    assert (summary.requested, summary.sent, summary.errors) == (6, 5, 3)
    assert summary.error_kinds == {"HTTP 401": 2, "timeout": 1}
    assert summary.p50 == pytest.approx(0.2) and summary.max == pytest.approx(0.3)
    assert summary.per_second == pytest.approx(1.0)
    assert summary.bytes_per_second == pytest.approx(1000.0)


def test_a_summary_of_only_failures_has_no_latencies() -> None:
    summary = summarise([Sample(1.0, 0, "HTTP 500")], requested=1, elapsed=1.0)
    assert summary.errors == 1 and math.isnan(summary.p50) and summary.quantiles == []
