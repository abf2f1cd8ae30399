"""The circuit breaker: fail fast while an upstream is down, probe after the cooldown."""

from __future__ import annotations

import pytest

from mirror.clock import ManualClock
from mirror.errors import UpstreamUnavailable
from mirror.upstream.breaker import CircuitBreaker


def breaker(clock: ManualClock, threshold: int = 3) -> CircuitBreaker:
    return CircuitBreaker("up.test", threshold=threshold, cooldown=30.0, clock=clock)


def test_opens_after_threshold_consecutive_failures() -> None:
    clock = ManualClock()
    b = breaker(clock)
    for _ in range(2):
        b.check()
        b.failed()
    b.check()  # two failures: still closed
    b.failed()
    with pytest.raises(UpstreamUnavailable) as refused:
        b.check()
    assert refused.value.detail == {"upstream": "up.test", "circuit": "open"}


def test_an_answer_resets_the_count() -> None:
    clock = ManualClock()
    b = breaker(clock)
    b.failed()
    b.failed()
    b.answered()
    b.failed()
    b.failed()
    b.check()  # not three in a row


def test_one_probe_after_the_cooldown_closes_it_on_an_answer() -> None:
    clock = ManualClock()
    b = breaker(clock)
    for _ in range(3):
        b.failed()
    clock.advance(29.9)
    with pytest.raises(UpstreamUnavailable):
        b.check()
    clock.advance(0.2)
    b.check()  # the probe
    with pytest.raises(UpstreamUnavailable):
        b.check()  # others still fail fast while it is out
    b.answered()
    b.check()
    assert not b.is_open


def test_a_failed_probe_opens_it_for_another_cooldown() -> None:
    clock = ManualClock()
    b = breaker(clock)
    for _ in range(3):
        b.failed()
    clock.advance(31)
    b.check()
    b.failed()
    with pytest.raises(UpstreamUnavailable):
        b.check()
    clock.advance(31)
    b.check()


def test_threshold_zero_disables_it() -> None:
    clock = ManualClock()
    b = breaker(clock, threshold=0)
    for _ in range(10):
        b.failed()
        b.check()
    assert not b.is_open
