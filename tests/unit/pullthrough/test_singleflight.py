"""Concurrent identical calls are coalesced into one, whose result or error every caller shares."""

from __future__ import annotations

import asyncio

import pytest

from mirror.pullthrough.singleflight import SingleFlight


class CountingCall:
    """An upstream call that counts how often it ran and blocks until ``release``."""

    def __init__(self, result: object = "manifest", error: Exception | None = None) -> None:
        self.result = result
        self.error = error
        self.calls = 0
        self.completed = 0
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self) -> object:
        self.calls += 1
        self.started.set()
        await self.release.wait()
        self.completed += 1
        if self.error is not None:
            raise self.error
        return self.result


async def settle() -> None:
    """Let every ready task run until it blocks."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_concurrent_callers_share_one_call() -> None:
    flight: SingleFlight[object] = SingleFlight()
    call = CountingCall()

    callers = [asyncio.create_task(flight.do("alpine:latest", call)) for _ in range(5)]
    await call.started.wait()
    await settle()
    assert flight.joined("alpine:latest")
    call.release.set()
    results = await asyncio.gather(*callers)

    assert results == ["manifest"] * 5
    assert call.calls == 1
    assert not flight.joined("alpine:latest")


async def test_different_keys_do_not_share() -> None:
    flight: SingleFlight[object] = SingleFlight()
    alpine, busybox = CountingCall("alpine"), CountingCall("busybox")
    alpine.release.set()
    busybox.release.set()

    results = await asyncio.gather(
        flight.do("alpine", alpine), flight.do("busybox", busybox), flight.do("alpine", alpine)
    )

    assert list(results) == ["alpine", "busybox", "alpine"]
    assert (alpine.calls, busybox.calls) == (1, 1)


async def test_error_is_shared_by_every_caller() -> None:
    flight: SingleFlight[object] = SingleFlight()
    error = ConnectionError("upstream went away")
    call = CountingCall(error=error)

    callers = [asyncio.create_task(flight.do("key", call)) for _ in range(3)]
    await call.started.wait()
    await settle()
    call.release.set()
    outcomes = await asyncio.gather(*callers, return_exceptions=True)

    assert outcomes == [error, error, error]
    assert all(outcome is error for outcome in outcomes)
    assert call.calls == 1


async def test_cancelled_caller_does_not_cancel_the_call_for_others() -> None:
    flight: SingleFlight[object] = SingleFlight()
    call = CountingCall()
    leaving = asyncio.create_task(flight.do("key", call))
    staying = asyncio.create_task(flight.do("key", call))
    await call.started.wait()
    await settle()

    leaving.cancel()
    await settle()
    call.release.set()

    assert await staying == "manifest"
    assert leaving.cancelled()
    assert (call.calls, call.completed) == (1, 1)


async def test_call_completes_even_when_every_caller_went_away() -> None:
    flight: SingleFlight[object] = SingleFlight()
    call = CountingCall()
    only = asyncio.create_task(flight.do("key", call))
    await call.started.wait()

    only.cancel()
    with pytest.raises(asyncio.CancelledError):
        await only
    assert flight.joined("key")
    call.release.set()
    await settle()

    assert call.completed == 1
    assert not flight.joined("key")


@pytest.mark.parametrize(
    "error",
    [pytest.param(None, id="after-success"), pytest.param(KeyError("x"), id="after-failure")],
)
async def test_after_completion_a_new_call_runs(error: Exception | None) -> None:
    flight: SingleFlight[object] = SingleFlight()
    first = CountingCall("first", error=error)
    second = CountingCall("second")
    first.release.set()
    second.release.set()

    outcome = await asyncio.gather(flight.do("key", first), return_exceptions=True)

    assert list(outcome) == [error if error is not None else "first"]
    assert await flight.do("key", second) == "second"
    assert (first.calls, second.calls) == (1, 1)
