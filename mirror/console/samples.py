"""The cache dashboard's history: the mirror's own metrics sampled every ``interval`` seconds
into a small in-process ring buffer (an hour at 10 s), no external service needed."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from mirror.clock import Clock

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class UpstreamFigures:
    """Requests sent to one upstream, and how many failed (5xx, 429 or no answer)."""

    host: str
    requests: float
    errors: float


@dataclass(frozen=True, slots=True)
class Sample:
    """The cache's counters and gauges at one moment (counters are totals since start)."""

    at: float
    hits: float
    misses: float
    bytes_from_cache: float
    bytes_from_upstream: float
    fills_in_progress: float
    disk_used: float
    capacity: float
    evictions: float
    upstreams: tuple[UpstreamFigures, ...]

    @property
    def hit_ratio(self) -> float | None:
        """Hits over all cache lookups (``None`` before the first request)."""
        total = self.hits + self.misses
        return self.hits / total if total else None


def _failed(status: str) -> bool:
    return not status.isdigit() or status.startswith("5") or status in ("0", "429")


def sample(registry: CollectorRegistry, at: float, disk_used: float, capacity: float) -> Sample:
    """Read the figures the dashboard shows from the mirror's metrics registry."""
    sums: dict[str, float] = {}
    upstreams: dict[str, list[float]] = {}
    for family in registry.collect():
        for s in family.samples:
            sums[s.name] = sums.get(s.name, 0.0) + s.value
            if s.name == "mirror_upstream_requests_total":
                figures = upstreams.setdefault(s.labels["upstream"], [0.0, 0.0])
                figures[0] += s.value
                figures[1] += s.value if _failed(s.labels["status"]) else 0.0
    return Sample(
        at,
        sums.get("mirror_cache_hits_total", 0.0),
        sums.get("mirror_cache_misses_total", 0.0),
        sums.get("mirror_bytes_served_from_cache_total", 0.0),
        sums.get("mirror_bytes_fetched_upstream_total", 0.0),
        sums.get("mirror_fills_in_progress", 0.0),
        disk_used,
        capacity,
        sums.get("mirror_retention_evictions_total", 0.0),
        tuple(UpstreamFigures(h, r, e) for h, (r, e) in sorted(upstreams.items())),
    )


class SampleRing:
    """The last ``size`` samples, oldest first."""

    def __init__(self, size: int) -> None:
        self._samples: deque[Sample] = deque(maxlen=size)

    def record(self, taken: Sample) -> None:
        """Keep ``taken``; past ``size`` samples the oldest is dropped."""
        self._samples.append(taken)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self._samples)

    def __len__(self) -> int:
        return len(self._samples)

    def latest(self) -> Sample | None:
        """The newest sample, if any."""
        return self._samples[-1] if self._samples else None


async def sample_periodically(
    ring: SampleRing,
    read: Callable[[float], Sample],
    clock: Clock,
    interval: float,
    sleep: Sleep = asyncio.sleep,
) -> None:
    """The background job: a sample now and every ``interval`` seconds, until cancelled."""
    while True:
        try:
            ring.record(read(clock.now()))
        except Exception:
            log.exception("sampling the cache's metrics failed")
        await sleep(interval)
