"""The clock: wall time for what is stored and compared, monotonic time for intervals."""

from __future__ import annotations

import time

import pytest

from mirror.clock import Clock, ManualClock, SystemClock


def test_system_clock_tells_the_wall_and_the_monotonic_time() -> None:
    clock: Clock = SystemClock()
    before_wall, before_mono = time.time(), time.monotonic()
    wall, mono = clock.now(), clock.monotonic()
    assert before_wall <= wall <= time.time()
    assert before_mono <= mono <= time.monotonic()


def test_manual_clock_stands_still_until_advanced() -> None:
    clock = ManualClock(start=1_000.0, monotonic_start=5.0)
    assert (clock.now(), clock.monotonic()) == (1_000.0, 5.0)
    assert (clock.now(), clock.monotonic()) == (1_000.0, 5.0)


def test_advancing_a_manual_clock_moves_both_times() -> None:
    clock: Clock = ManualClock(start=1_000.0, monotonic_start=5.0)
    assert isinstance(clock, ManualClock)
    clock.advance(30.5)
    assert (clock.now(), clock.monotonic()) == (1_030.5, 35.5)


def test_a_manual_clock_never_goes_back() -> None:
    clock = ManualClock()
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1.0)
    assert clock.now() == 1_700_000_000.0
