"""Per-upstream limits: connection slots with a metadata lane, request and byte buckets."""

from __future__ import annotations

import asyncio

import pytest

from mirror.clock import ManualClock
from mirror.upstream.limits import (
    ConnectionSlots,
    Lane,
    Limiter,
    LimitObserver,
    Sleep,
    TokenBucket,
    UpstreamLimits,
)


class Recorder(LimitObserver):
    """Keeps every wait and queue depth it is told of."""

    def __init__(self) -> None:
        self.waits: list[tuple[Lane, str, float]] = []
        self.depths: list[tuple[Lane, int]] = []

    def waited(self, lane: Lane, limit: str, seconds: float) -> None:
        self.waits.append((lane, limit, seconds))

    def queued(self, lane: Lane, depth: int) -> None:
        self.depths.append((lane, depth))


def clock_sleep(clock: ManualClock) -> tuple[list[float], Sleep]:
    """A sleep that moves ``clock`` instead of waiting, and the list of what it slept."""
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)
        await asyncio.sleep(0)

    return slept, sleep


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_blob_transfers_leave_one_connection_for_metadata() -> None:
    slots = ConnectionSlots(3, Recorder())
    await slots.acquire(Lane.BLOB)
    await slots.acquire(Lane.BLOB)
    third_blob = asyncio.ensure_future(slots.acquire(Lane.BLOB))
    await settle()
    assert not third_blob.done()
    await asyncio.wait_for(slots.acquire(Lane.METADATA), 1)  # the reserved slot
    assert slots.in_use == 3
    third_blob.cancel()


async def test_a_freed_slot_goes_to_waiting_metadata_before_waiting_blobs() -> None:
    recorder = Recorder()
    slots = ConnectionSlots(2, recorder)
    await slots.acquire(Lane.BLOB)
    await slots.acquire(Lane.METADATA)
    blob = asyncio.ensure_future(slots.acquire(Lane.BLOB))
    await settle()
    metadata = asyncio.ensure_future(slots.acquire(Lane.METADATA))
    await settle()
    assert (Lane.BLOB, 1) in recorder.depths and (Lane.METADATA, 1) in recorder.depths
    slots.release(Lane.BLOB)
    await settle()
    assert metadata.done() and not blob.done()
    slots.release(Lane.METADATA)
    await settle()
    assert blob.done()
    assert slots.in_use == 2 and slots.blobs_in_use == 1


async def test_one_connection_is_shared_when_the_cap_is_one() -> None:
    slots = ConnectionSlots(1, Recorder())
    await slots.acquire(Lane.BLOB)
    metadata = asyncio.ensure_future(slots.acquire(Lane.METADATA))
    await settle()
    assert not metadata.done()
    slots.release(Lane.BLOB)
    await asyncio.wait_for(metadata, 1)


async def test_a_cancelled_waiter_leaks_no_slot() -> None:
    slots = ConnectionSlots(2, Recorder())
    await slots.acquire(Lane.METADATA)
    await slots.acquire(Lane.METADATA)
    waiter = asyncio.ensure_future(slots.acquire(Lane.METADATA))
    await settle()
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert slots.depth(Lane.METADATA) == 0
    slots.release(Lane.METADATA)
    slots.release(Lane.METADATA)
    assert slots.in_use == 0


def test_token_bucket_refills_at_its_rate_and_goes_into_debt() -> None:
    clock = ManualClock()
    bucket = TokenBucket(2.0, 2.0, clock)
    assert bucket.take(1) == 0 and bucket.take(1) == 0
    assert bucket.take(1) == pytest.approx(0.5)
    clock.advance(0.5)
    assert bucket.tokens == pytest.approx(0.0)
    clock.advance(10)
    assert bucket.tokens == pytest.approx(2.0)  # never more than the burst


async def test_requests_per_second_paces_requests() -> None:
    clock = ManualClock()
    _, sleep = clock_sleep(clock)
    recorder = Recorder()
    limiter = Limiter(UpstreamLimits(requests_per_second=4), clock, sleep, recorder)
    start = clock.monotonic()
    for _ in range(12):
        await limiter.request(Lane.METADATA)
    # 4 saved up, then 8 more at 4 a second.
    assert clock.monotonic() - start == pytest.approx(2.0)
    assert all(limit == "requests" for _, limit, _ in recorder.waits)


async def test_blob_requests_leave_the_last_token_for_metadata() -> None:
    clock = ManualClock()
    slept, sleep = clock_sleep(clock)
    limiter = Limiter(UpstreamLimits(requests_per_second=4), clock, sleep)
    for _ in range(3):
        await limiter.request(Lane.BLOB)
    assert slept == []
    await limiter.request(Lane.BLOB)  # would take the last token: waits one refill
    assert sum(slept) == pytest.approx(0.25)
    assert limiter.requests is not None
    assert limiter.requests.tokens == pytest.approx(1.0)
    before = len(slept)
    await limiter.request(Lane.METADATA)  # the saved token, at once
    assert len(slept) == before


async def test_bandwidth_holds_blob_bytes_to_the_rate() -> None:
    clock = ManualClock()
    _, sleep = clock_sleep(clock)
    recorder = Recorder()
    rate = 1024 * 1024
    limiter = Limiter(UpstreamLimits(bandwidth=rate), clock, sleep, recorder)
    start = clock.monotonic()
    for _ in range(64):
        await limiter.transferred(64 * 1024)  # 4 MiB
    burst = rate / 4
    assert clock.monotonic() - start == pytest.approx((4 * rate - burst) / rate)
    assert {limit for _, limit, _ in recorder.waits} == {"bandwidth"}


async def test_connection_waits_are_observed() -> None:
    clock = ManualClock()
    recorder = Recorder()
    limiter = Limiter(UpstreamLimits(max_connections=2), clock, observer=recorder)
    async with limiter.connection(Lane.BLOB):
        async with limiter.connection(Lane.METADATA):
            pending = asyncio.ensure_future(limiter.connection(Lane.METADATA).__aenter__())
            await settle()
            clock.advance(0.2)
        await asyncio.wait_for(pending, 1)
    [(lane, limit, seconds)] = recorder.waits
    assert (lane, limit) == (Lane.METADATA, "connections")
    assert seconds == pytest.approx(0.2)


async def test_a_waiter_cancelled_while_a_release_passes_it_over_leaks_nothing() -> None:
    slots = ConnectionSlots(2, Recorder())
    await slots.acquire(Lane.BLOB)
    cancelled = asyncio.ensure_future(slots.acquire(Lane.BLOB))
    after = asyncio.ensure_future(slots.acquire(Lane.BLOB))
    await settle()
    cancelled.cancel()
    await asyncio.sleep(0)  # the task is cancelled; its waiter is still queued
    slots.release(Lane.BLOB)  # passes over the cancelled waiter, grants the next
    results = await asyncio.gather(cancelled, after, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError) and results[1] is True  # it waited
    assert slots.in_use == 1 and slots.depth(Lane.BLOB) == 0


@pytest.mark.parametrize(
    "field", ["max_connections", "requests_per_second", "bandwidth"], ids=lambda f: f
)
def test_negative_limits_are_refused(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        UpstreamLimits(**{field: -1})


def test_no_limits_means_no_limiter_state() -> None:
    limiter = Limiter(UpstreamLimits(), ManualClock())
    assert not UpstreamLimits().any
    assert limiter.slots is None and limiter.requests is None and limiter.bytes is None
