"""Hosted quotas in the app's Prometheus metrics (``mirror_hosted_*``): per-tenancy usage and
limit gauges, and the refusals counter; the series of a deleted tenancy are removed."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from mirror.hosted.quota import BYTES, REPOSITORIES, Usage
from mirror.metrics import Metrics


class PrometheusQuotaMetrics:
    """Publishes quotas in the app's ``Metrics`` (``mirror_hosted_*``)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def publish(self, usage: Usage) -> None:
        """Set the usage and limit gauges of ``usage.tenancy`` (no limit series when none)."""
        m, tenancy = self._metrics, usage.tenancy
        m.hosted_stored_bytes.labels(tenancy).set(usage.bytes)
        m.hosted_repositories.labels(tenancy).set(usage.repositories)
        for quota, limit in usage.limits.as_json().items():
            if limit is None:
                _remove(m.hosted_quota_limit, tenancy, quota)
            else:
                m.hosted_quota_limit.labels(tenancy, quota).set(limit)

    def refused(self, tenancy: str, quota: str) -> None:
        """Count one refusal."""
        self._metrics.hosted_quota_refusals.labels(tenancy, quota).inc()

    def forget(self, tenancy: str) -> None:
        """Remove every series of ``tenancy``."""
        m = self._metrics
        _remove(m.hosted_stored_bytes, tenancy)
        _remove(m.hosted_repositories, tenancy)
        for quota in (BYTES, REPOSITORIES):
            _remove(m.hosted_quota_limit, tenancy, quota)
            _remove(m.hosted_quota_refusals, tenancy, quota)


def _remove(metric: Gauge | Counter, *labels: str) -> None:
    try:
        metric.remove(*labels)
    except KeyError:
        pass
