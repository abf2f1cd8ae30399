"""Prometheus metrics, in a registry owned by the app (no process-global collectors): the
mirror's own, the standard ``process_*`` and ``python_*`` collectors, and a build-info gauge."""

from __future__ import annotations

import platform
from importlib import metadata
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.openmetrics import exposition as openmetrics

# The Prometheus text format, as Prometheus has always scraped it, said to be UTF-8.
TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = openmetrics.CONTENT_TYPE_LATEST


def _version() -> str:
    try:
        return metadata.version("mirror")
    except metadata.PackageNotFoundError:
        return "unknown"


class Metrics:
    """Every metric the mirror exports, registered in its own ``CollectorRegistry``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        r = self.registry
        # The conventional collectors every Prometheus client exports: CPU, memory, open
        # files, start time (process_*), interpreter and garbage collector (python_*).
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.build_info = Gauge(
            "mirror_build_info",
            "Always 1; the labels say which mirror and Python are running",
            ["version", "python"],
            registry=r,
        )
        self.build_info.labels(_version(), platform.python_version()).set(1)
        self.requests = Counter(
            "mirror_http_requests",
            "HTTP requests answered",
            ["route", "method", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "mirror_http_request_seconds",
            "Time to answer, until the body was sent",
            ["route"],
            registry=r,
        )
        self.cache_hits = Counter(
            "mirror_cache_hits", "Requests answered from the cache", ["kind"], registry=r
        )
        self.cache_misses = Counter(
            "mirror_cache_misses", "Requests that needed upstream", ["kind"], registry=r
        )
        self.bytes_from_cache = Counter(
            "mirror_bytes_served_from_cache", "Blob bytes sent from committed cache", registry=r
        )
        self.bytes_from_upstream = Counter(
            "mirror_bytes_fetched_upstream", "Blob bytes received from upstreams", registry=r
        )
        self.upstream_requests = Counter(
            "mirror_upstream_requests",
            "Requests sent to upstreams",
            ["upstream", "method", "status"],
            registry=r,
        )
        # Per-upstream limits (upstreams[].max_connections, requests_per_second, bandwidth).
        self.upstream_limit_waits = Counter(
            "mirror_upstream_limit_waits",
            "Upstream requests that waited for a limit (connections, requests, bandwidth)",
            ["upstream", "lane", "limit"],
            registry=r,
        )
        self.upstream_limit_wait_seconds = Counter(
            "mirror_upstream_limit_wait_seconds",
            "Seconds upstream requests waited for a limit",
            ["upstream", "lane", "limit"],
            registry=r,
        )
        self.upstream_limit_queue = Gauge(
            "mirror_upstream_limit_queue",
            "Upstream requests waiting for a connection slot now",
            ["upstream", "lane"],
            registry=r,
        )
        self.fills_started = Counter("mirror_fills_started", "Blob fills started", registry=r)
        self.fills_committed = Counter(
            "mirror_fills_committed", "Blob fills verified and committed", registry=r
        )
        self.fills_aborted = Counter(
            "mirror_fills_aborted",
            "Blob fills that ended without committing",
            ["reason"],
            registry=r,
        )
        self.fills_resumed = Counter(
            "mirror_fills_resumed", "Blob transfers resumed with Range after breaking", registry=r
        )
        self.digest_mismatches = Counter(
            "mirror_digest_mismatches",
            "Upstream content that did not match its digest",
            ["kind"],
            registry=r,
        )
        self.singleflight_joins = Counter(
            "mirror_singleflight_joins",
            "Requests that joined an in-flight upstream fetch",
            ["kind"],
            registry=r,
        )
        self.stale_served = Counter(
            "mirror_stale_served", "Tags served stale because upstream failed", registry=r
        )
        self.corrupt_objects = Counter(
            "mirror_corrupt_objects",
            "Cached objects that failed an integrity check (tag, header, size, digest), evicted",
            registry=r,
        )
        self.fills_in_progress = Gauge(
            "mirror_fills_in_progress", "Blob fills currently running", registry=r
        )
        # Retention, garbage collection and capacity (issue 4).
        self.uncached_streams = Counter(
            "mirror_uncached_streams",
            "Blobs or manifests served without caching (the disk refused them, or a tier "
            "replica relays a blob it does not own)",
            ["reason"],
            registry=r,
        )
        self.client_disconnects = Counter(
            "mirror_client_disconnects",
            "Responses cut short because the client closed its connection (normal traffic)",
            ["route"],
            registry=r,
        )
        self.metadata_write_failures = Counter(
            "mirror_metadata_write_failures",
            "Metadata records the disk refused to write (manifest, tag, last-pull, response);"
            " what they describe was served anyway, uncached",
            ["record"],
            registry=r,
        )
        self.retention_runs = Counter(
            "mirror_retention_runs", "Retention runs", ["trigger", "mode"], registry=r
        )
        self.evictions = Counter(
            "mirror_retention_evictions",
            "Images evicted from the cache, by the rule that selected them",
            ["trigger", "rule"],
            registry=r,
        )
        self.objects_deleted = Counter(
            "mirror_retention_objects_deleted",
            "Manifests and blobs deleted from disk",
            ["kind"],
            registry=r,
        )
        self.bytes_freed = Counter(
            "mirror_retention_bytes_freed", "Bytes freed by deletions", ["trigger"], registry=r
        )
        self.hosted_bytes_reclaimed = Counter(
            "mirror_hosted_reclaimed_bytes",
            "Bytes deleted from disk after hosted content was deleted, per tenancy",
            ["tenancy"],
            registry=r,
        )
        self.deletions_deferred = Counter(
            "mirror_retention_deletions_deferred",
            "Blobs left for a later run because a client was reading them",
            registry=r,
        )
        self.cache_size = Gauge(
            "mirror_cache_size_bytes", "Bytes in the cache, fills in progress included", registry=r
        )
        self.offline = Gauge(
            "mirror_offline",
            "1 when the mirror never contacts an upstream (cache.offline)",
            registry=r,
        )
        self.prewarmed = Counter(
            "mirror_prewarm_images",
            "Images pre-warmed into the cache, by result (ok, failed)",
            ["result"],
            registry=r,
        )
        # Hosted repositories' per-tenancy quotas (one series per tenancy that stores
        # something or has a limit; a deleted tenancy's series are removed).
        self.hosted_stored_bytes = Gauge(
            "mirror_hosted_stored_bytes",
            "Bytes a tenancy's hosted repositories store (each object once per tenancy)",
            ["tenancy"],
            registry=r,
        )
        self.hosted_repositories = Gauge(
            "mirror_hosted_repositories",
            "Hosted repositories of a tenancy",
            ["tenancy"],
            registry=r,
        )
        self.hosted_quota_limit = Gauge(
            "mirror_hosted_quota_limit",
            "A tenancy's quota (bytes or repositories); absent when unlimited",
            ["tenancy", "quota"],
            registry=r,
        )
        self.hosted_quota_refusals = Counter(
            "mirror_hosted_quota_refusals",
            "Pushes refused because they would pass a tenancy's quota",
            ["tenancy", "quota"],
            registry=r,
        )

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count and time one answered request (label children resolved once per key)."""
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            children = (
                self.requests.labels(route, method, str(status)),
                self.request_seconds.labels(route),
            )
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """Every metric and its content type: OpenMetrics when ``accept`` (a request's
        ``Accept`` header) asks for it, else the Prometheus text format."""
        if "application/openmetrics-text" in accept:
            body = openmetrics.generate_latest(self.registry)  # type: ignore[no-untyped-call]
            return body, OPENMETRICS_CONTENT_TYPE
        return generate_latest(self.registry), TEXT_CONTENT_TYPE
