"""Per-upstream limits: concurrent connections, requests per second and bytes per second.

Registries rate-limit their clients (Docker Hub counts manifest GETs, many cap connections),
so, as Harbor and zot do, a mirror can be told to stay under them. Requests come in two
*lanes*: ``METADATA`` (manifests, tags, referrers, blob HEADs, token fetches, probes) and
``BLOB`` (blob bodies, which hold a connection for as long as the transfer lasts). Metadata is
never queued behind blob transfers:

* of ``max_connections`` slots, blob transfers may hold at most ``max_connections - 1``, so one
  is always left for metadata, and a freed slot goes to a waiting metadata request first;
* a blob request may not take the last request token of the second, and a metadata request
  may run the bucket into debt (it waits for its own token only, never for blobs' tokens);
* bandwidth counts blob bodies only (metadata is small).

Time is a parameter (``clock`` and ``sleep``) so that tests move a ``ManualClock``.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from mirror.clock import Clock

Sleep = Callable[[float], Awaitable[None]]


class Lane(enum.Enum):
    """What a request is for: metadata (small, latency-bound) or a blob body (long)."""

    METADATA = "metadata"
    BLOB = "blob"


@dataclass(frozen=True, slots=True)
class UpstreamLimits:
    """The configured limits of one upstream; 0 means unlimited."""

    max_connections: int = 0
    requests_per_second: float = 0.0
    bandwidth: int = 0

    def __post_init__(self) -> None:
        for name in ("max_connections", "requests_per_second", "bandwidth"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")

    @property
    def any(self) -> bool:
        """Whether any limit is set."""
        return bool(self.max_connections or self.requests_per_second or self.bandwidth)


class LimitObserver:
    """Told of every wait a limit imposed and of each lane's queue depth (metrics)."""

    def waited(self, lane: Lane, limit: str, seconds: float) -> None:
        """A request of ``lane`` waited ``seconds`` for ``limit`` (connections, requests,
        bandwidth)."""

    def queued(self, lane: Lane, depth: int) -> None:
        """``depth`` requests of ``lane`` now wait for a connection slot."""


class ConnectionSlots:
    """``capacity`` connection slots; blob transfers leave one for metadata (capacity >= 2)."""

    def __init__(self, capacity: int, observer: LimitObserver) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.blob_capacity = capacity - 1 if capacity >= 2 else capacity
        self.in_use = 0
        self.blobs_in_use = 0
        self._observer = observer
        self._waiting: dict[Lane, deque[asyncio.Future[None]]] = {lane: deque() for lane in Lane}

    def depth(self, lane: Lane) -> int:
        """How many requests of ``lane`` wait for a slot."""
        return len(self._waiting[lane])

    def _free_for(self, lane: Lane) -> bool:
        if self.in_use >= self.capacity:
            return False
        return lane is Lane.METADATA or self.blobs_in_use < self.blob_capacity

    def _take(self, lane: Lane) -> None:
        self.in_use += 1
        if lane is Lane.BLOB:
            self.blobs_in_use += 1

    async def acquire(self, lane: Lane) -> bool:
        """Take a slot for ``lane``, waiting (metadata first) while none is free to it; whether
        it had to wait."""
        if self._free_for(lane) and not self._waiting[lane]:
            self._take(lane)
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[lane].append(waiter)
        self._observer.queued(lane, self.depth(lane))
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(lane)  # granted just as we were cancelled: hand it on
            elif waiter in self._waiting[lane]:  # a release may have dropped it already
                self._waiting[lane].remove(waiter)
            raise
        finally:
            self._observer.queued(lane, self.depth(lane))
        return True

    def release(self, lane: Lane) -> None:
        """Give back a slot of ``lane`` and hand free slots to waiters, metadata first."""
        self.in_use -= 1
        if lane is Lane.BLOB:
            self.blobs_in_use -= 1
        for waiting_lane in (Lane.METADATA, Lane.BLOB):
            queue = self._waiting[waiting_lane]
            while queue and self._free_for(waiting_lane):
                waiter = queue.popleft()
                if not waiter.done():
                    self._take(waiting_lane)
                    waiter.set_result(None)


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; it may go into debt."""

    def __init__(self, rate: float, burst: float, clock: Clock) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("rate and burst must be positive")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._stamp = clock.monotonic()

    @property
    def tokens(self) -> float:
        """The tokens saved up now (negative: debt still to pay off)."""
        now = self._clock.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        return self._tokens

    def take(self, amount: float) -> float:
        """Take ``amount`` at once; the seconds until the debt this leaves is paid (0: none)."""
        self._tokens = self.tokens - amount
        return max(0.0, -self._tokens / self.rate)

    def until(self, level: float) -> float:
        """Seconds until the bucket holds ``level`` tokens (0 if it does now)."""
        return max(0.0, (level - self.tokens) / self.rate)


class Limiter:
    """Enforces one upstream's :class:`UpstreamLimits` for its transport."""

    def __init__(
        self,
        limits: UpstreamLimits,
        clock: Clock,
        sleep: Sleep = asyncio.sleep,
        observer: LimitObserver | None = None,
    ) -> None:
        self.limits = limits
        self._clock = clock
        self._sleep = sleep
        self._observer = observer or LimitObserver()
        self.slots = (
            ConnectionSlots(limits.max_connections, self._observer)
            if limits.max_connections
            else None
        )
        rps = limits.requests_per_second
        self.requests = TokenBucket(rps, max(1.0, rps), clock) if rps else None
        # A quarter second of burst: smooth enough, and larger than any one read.
        rate = limits.bandwidth
        self.bytes = TokenBucket(rate, max(64 * 1024, rate / 4), clock) if rate else None

    @asynccontextmanager
    async def connection(self, lane: Lane) -> AsyncIterator[None]:
        """Hold a connection slot of ``lane`` for the context (nothing without a cap)."""
        if self.slots is None:
            yield
            return
        started = self._clock.monotonic()
        if await self.slots.acquire(lane):
            self._waited(lane, "connections", started)
        try:
            yield
        finally:
            self.slots.release(lane)

    async def request(self, lane: Lane) -> None:
        """Wait for a request token: metadata for its own, blobs leaving one for metadata."""
        bucket = self.requests
        if bucket is None:
            return
        started = self._clock.monotonic()
        if lane is Lane.METADATA:
            waited = await self._pause(bucket.take(1))
        else:
            reserve = 1.0 if bucket.burst >= 2 else 0.0
            waited = False
            while (wait := bucket.until(1 + reserve)) > 0:
                waited = await self._pause(wait)
            bucket.take(1)
        if waited:
            self._waited(lane, "requests", started)

    async def transferred(self, size: int) -> None:
        """Account ``size`` blob bytes received, pausing while over the bandwidth."""
        if self.bytes is None:
            return
        started = self._clock.monotonic()
        if await self._pause(self.bytes.take(size)):
            self._waited(Lane.BLOB, "bandwidth", started)

    async def _pause(self, seconds: float) -> bool:
        """Sleep ``seconds`` if positive; whether it slept."""
        if seconds <= 0:
            return False
        await self._sleep(seconds)
        return True

    def _waited(self, lane: Lane, limit: str, started: float) -> None:
        self._observer.waited(lane, limit, self._clock.monotonic() - started)
