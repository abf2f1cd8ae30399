"""Times in reports and the audit log are ISO 8601 UTC to the second, as ``datetime`` writes
them, whichever way ``iso`` computes them (a report has millions)."""

from __future__ import annotations

import random

import pytest

from mirror.retention.audit import iso, iso_of

EDGES = [
    0,
    0.5,
    -0.5,
    -1,
    1.999999,
    1.9999994,
    1.9999996,
    1.9999999,
    -0.0000001,
    1e9 + 0.9999995,
    86399.99999,
    3599.9999999,
    2**31,
    1_779_913_600.0,
    253402300799,  # the last second datetime can write
    -62135596800,  # the first
]


def written(when: float) -> str | type[Exception]:
    try:
        return iso_of(when)
    except (OverflowError, ValueError, OSError) as exc:
        return type(exc)


def computed(when: float) -> str | type[Exception] | None:
    try:
        return iso(when)
    except (OverflowError, ValueError, OSError) as exc:
        return type(exc)


@pytest.mark.parametrize("when", [*EDGES, 253402300800, float("nan"), float("inf")], ids=str)
def test_an_edge_time_is_written_as_datetime_writes_it(when: float) -> None:
    assert computed(when) == written(when)


def test_times_anywhere_in_datetimes_range_are_written_as_datetime_writes_them(
    rng: random.Random,
) -> None:
    times = [rng.uniform(-6e10, 2.5e11) for _ in range(20_000)]
    times += [
        rng.randrange(0, 2 * 10**9) + rng.choice((0.0, 0.9999999, rng.random()))
        for _ in range(20_000)
    ]
    assert [computed(t) for t in times] == [written(t) for t in times]


def test_no_time_is_none() -> None:
    assert iso(None) is None
