"""The closed loop sends exactly the requested count (or stops at the duration); the open loop
starts requests on schedule whether or not earlier ones answered, and measures each latency
from its intended send time, so a late scheduler or a stalled server is not hidden."""

from __future__ import annotations

import asyncio

import pytest

from mirror.bench.loops import OpenLoop, Outcome, closed_loop, guarded
from mirror.clock import ManualClock


def _sleeper(clock: ManualClock, oversleep: float = 0.0) -> object:
    """A sleep on the manual clock: what is runnable runs first (as in real time), then the
    clock moves by ``seconds`` (plus ``oversleep``, a late wake-up)."""

    async def sleep(seconds: float) -> None:
        for _ in range(5):
            await asyncio.sleep(0)
        clock.advance(seconds + oversleep)

    return sleep


def test_send_times_are_spaced_by_the_rate_and_bounded_by_count_and_duration() -> None:
    loop = OpenLoop(10.0, ManualClock())
    assert loop.send_times(100.0, 4, 60.0) == pytest.approx([100.0, 100.1, 100.2, 100.3])
    assert len(loop.send_times(100.0, 1000, 1.0)) == 10
    with pytest.raises(ValueError):
        OpenLoop(0.0, ManualClock())


async def test_open_loop_sends_on_schedule_although_nothing_has_answered() -> None:
    clock = ManualClock()
    start = clock.monotonic()
    started: list[float] = []
    release = asyncio.Event()

    async def stalled() -> Outcome:
        started.append(clock.monotonic())
        if len(started) == 4:  # the server answers everything only 0.2 s after the 4th send
            clock.advance(0.2)
            release.set()
        await release.wait()
        return Outcome(10)

    loop = OpenLoop(10.0, clock, sleep=_sleeper(clock))  # type: ignore[arg-type]
    samples, elapsed = await loop.run(stalled, count=4, duration=60.0)
    assert [t - start for t in started] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert [s.latency for s in samples] == pytest.approx([0.5, 0.4, 0.3, 0.2])
    assert elapsed == pytest.approx(0.5)


async def test_open_loop_latency_includes_the_schedulers_own_lateness() -> None:
    clock = ManualClock()

    async def instant() -> Outcome:
        return Outcome()

    # The one sleep (before request 1, due at +0.1) overruns by 0.25 s and wakes at +0.35:
    # request 1 is charged its 0.25 s lateness, request 2 (due at +0.2, sent at once) 0.15 s;
    # the schedule is absolute, so the lateness does not shift later requests.
    loop = OpenLoop(10.0, clock, sleep=_sleeper(clock, oversleep=0.25))  # type: ignore[arg-type]
    samples, _ = await loop.run(instant, count=4, duration=60.0)
    assert [s.latency for s in samples] == pytest.approx([0.0, 0.25, 0.15, 0.05])


async def test_closed_loop_sends_exactly_the_requested_count() -> None:
    clock = ManualClock()
    calls = 0

    async def one() -> Outcome:
        nonlocal calls
        calls += 1
        clock.advance(0.1)
        await asyncio.sleep(0)
        return Outcome(5)

    done: list[int] = []
    samples, elapsed = await closed_loop(
        one, workers=3, count=7, duration=60.0, clock=clock, on_done=done.append
    )
    assert calls == 7 and len(samples) == 7 and done == list(range(1, 8))
    assert all(s.ok and s.size == 5 for s in samples)
    assert elapsed == pytest.approx(0.7)


async def test_closed_loop_stops_at_the_duration() -> None:
    clock = ManualClock()

    async def slow() -> Outcome:
        clock.advance(1.0)
        return Outcome()

    samples, _ = await closed_loop(slow, workers=1, count=100, duration=3.0, clock=clock)
    assert len(samples) == 3


async def test_a_network_failure_is_an_error_outcome_not_an_exception() -> None:
    async def refused() -> Outcome:
        raise ConnectionRefusedError("no")

    async def late() -> Outcome:
        raise TimeoutError

    assert (await guarded(refused)).error == "ConnectionRefusedError"
    assert (await guarded(late)).error == "timeout"
