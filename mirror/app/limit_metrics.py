"""The upstream limits' waits and queue depths, told to the app's metrics."""

from __future__ import annotations

from mirror.metrics import Metrics
from mirror.upstream.limits import Lane, LimitObserver


class LimitMetrics(LimitObserver):
    """Counts one upstream's limit waits and shows its lanes' queue depths."""

    def __init__(self, metrics: Metrics, upstream: str) -> None:
        self._metrics = metrics
        self._upstream = upstream

    def waited(self, lane: Lane, limit: str, seconds: float) -> None:
        """Count one wait of ``seconds`` for ``limit``."""
        labels = (self._upstream, lane.value, limit)
        self._metrics.upstream_limit_waits.labels(*labels).inc()
        self._metrics.upstream_limit_wait_seconds.labels(*labels).inc(seconds)

    def queued(self, lane: Lane, depth: int) -> None:
        """Show how many requests of ``lane`` wait for a connection slot."""
        self._metrics.upstream_limit_queue.labels(self._upstream, lane.value).set(depth)
