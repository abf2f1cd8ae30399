"""The only place that wires things: config in, a running ``web.Application`` out.

Every long-lived resource (metadata store, upstream clients, services, the last-pull flusher)
is created in a ``cleanup_ctx`` and closed in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from mirror.app.auth import open_auth, print_once
from mirror.app.stores import BlobStoreImpl, open_store
from mirror.blobstore.capacity import CapacityLimit
from mirror.blobstore.install import restrict_to_owner
from mirror.clock import Clock, SystemClock
from mirror.config import Config, UpstreamConfig
from mirror.db.lock import DataDirLock
from mirror.db.metadata import Metadata
from mirror.db.retention import Policy, RetentionStore
from mirror.metrics import Metrics
from mirror.pullthrough.blobs import BlobService
from mirror.pullthrough.leases import Leases
from mirror.pullthrough.listing import ListingService
from mirror.pullthrough.manifests import ManifestService
from mirror.retention.audit import AuditLog
from mirror.retention.service import RetentionService
from mirror.upstream.client import UpstreamClient
from mirror.upstream.endpoint import UpstreamEndpoint
from mirror.upstream.pool import UpstreamPool
from mirror.upstream.routing import Route, Router
from mirror.web.access import AUTH
from mirror.web.admin.retention import RETENTION, add_admin_routes
from mirror.web.keys import SERVICES, Services
from mirror.web.middleware import common_headers, errors_middleware
from mirror.web.registry.routes import add_routes
from mirror.web.routes import install_auth

log = logging.getLogger(__name__)


def endpoint_of(upstream: UpstreamConfig) -> UpstreamEndpoint:
    """The upstream client's plain view of one configured upstream."""
    return UpstreamEndpoint(
        host=upstream.host,
        url=upstream.url,
        username=upstream.username,
        password=upstream.password,
        connect_timeout=upstream.connect_timeout,
        read_timeout=upstream.read_timeout,
        retries=upstream.retries,
        breaker_threshold=upstream.breaker_threshold,
        breaker_cooldown=upstream.breaker_cooldown,
        ca_file=upstream.ca_file,
        verify_tls=upstream.verify_tls,
    )


def router_of(config: Config) -> Router:
    """The request router for the configured upstreams."""
    routes = [Route(u.host, u.aliases, u.library_prefix) for u in config.upstreams]
    return Router(routes, config.default_upstream or None)


def declared_policies(config: Config, router: Router) -> list[tuple[Policy, tuple[str, ...]]]:
    """The config file's retention policies, repositories resolved to ``HOST/REPO``."""
    declared = []
    for p in config.retention.policies:
        policy = Policy(p.name, p.not_pulled_days, p.not_tagged_days, p.exempt_tags, p.match)
        targets = [router.resolve(name, None) for name in p.repositories]
        declared.append((policy, tuple(f"{t.upstream}/{t.repo}" for t in targets)))
    return declared


def retention_of(
    config: Config,
    metadata: Metadata,
    cache: CapacityLimit,
    metrics: Metrics,
    clock: Clock,
    in_use: Callable[[str], bool],
) -> RetentionService:
    """The retention service over the data directory's retention state and audit log."""
    settings = config.retention
    data_dir = Path(config.storage.data_dir)
    audit = Path(settings.audit_log) if settings.audit_log else None
    service = RetentionService(
        metadata,
        cache,
        RetentionStore(data_dir / "retention"),
        AuditLog(audit or data_dir / "retention" / "audit.jsonl", clock),
        metrics,
        clock,
        in_use=in_use,
        cooling_period=settings.cooling_period,
        capacity=cache if settings.max_size else None,
    )
    service.declare(declared_policies(config, router_of(config)))
    return service


async def _flush_last_pulls(metadata: Metadata, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            metadata.flush()
        except Exception:
            log.exception("flushing last-pull times failed")


def build_app(
    config: Config,
    *,
    clock: Clock | None = None,
    metrics: Metrics | None = None,
    announce: Callable[[str], None] = print_once,
    store_factory: Callable[[Path], BlobStoreImpl] | None = None,
) -> web.Application:
    """The mirror as an aiohttp application (resources open on startup, close on cleanup).

    With ``auth.enabled`` the first start's administrator token goes to ``announce``.
    """
    app = web.Application(middlewares=[errors_middleware])
    clock = clock or SystemClock()
    metrics = metrics or Metrics()
    add_routes(app)
    if config.auth.enabled:
        install_auth(app)
    add_admin_routes(app)
    app.on_response_prepare.append(common_headers)
    existed = Path(config.storage.data_dir).is_dir()

    async def resources(app: web.Application) -> AsyncIterator[None]:
        data_dir = Path(config.storage.data_dir)
        if store_factory is not None:
            store = store_factory(data_dir)
        else:
            store = open_store(config, on_corrupt=lambda _error: metrics.corrupt_objects.inc())
        # Taken once the keys checked out, so a refused start leaves the data dir untouched.
        lock = DataDirLock(data_dir)
        lock.acquire(exclusive=False)
        if restrict_to_owner(data_dir) and existed:
            log.warning("%s was readable by other users; now owner-only (0700)", data_dir)
        store.sweep()
        limits = config.retention
        capped = CapacityLimit(
            store,
            metrics,
            max_size=limits.max_size,
            high=limits.high_watermark,
            low=limits.low_watermark,
        )
        if limits.max_size:
            await capped.measure()
        metadata = Metadata(data_dir / "metadata")

        def make_client(endpoint: UpstreamEndpoint) -> UpstreamClient:
            def count(method: str, status: int, host: str = endpoint.host) -> None:
                metrics.upstream_requests.labels(host, method, str(status)).inc()

            return UpstreamClient(endpoint, on_response=count)

        clients: dict[str, UpstreamClient] = {}
        for upstream in config.upstreams:
            client = make_client(endpoint_of(upstream))
            await client.start()
            clients[upstream.host] = client

        pool = UpstreamPool(clients, make_client)
        cache = config.cache
        leases = Leases()
        blobs = BlobService(
            capped,
            pool.get,
            metrics,
            chunk_size=config.storage.chunk_size,
            fill_timeout=cache.fill_timeout,
            leases=leases,
        )
        manifests = ManifestService(
            capped,
            metadata,
            pool.get,
            metrics,
            clock,
            tag_ttl=cache.tag_ttl,
            max_stale=cache.max_stale,
        )
        listing = ListingService(
            metadata,
            pool.get,
            metrics,
            clock,
            ttl=cache.tag_ttl,
            max_stale=cache.max_stale,
        )
        router = router_of(config)
        if config.auth.enabled:
            app[AUTH] = open_auth(config, router, metadata, pool, clock, announce)
        app[SERVICES] = Services(
            router,
            blobs,
            manifests,
            listing,
            metadata,
            metrics,
        )
        flusher = asyncio.create_task(
            _flush_last_pulls(metadata, max(cache.last_pull_flush_interval, 0.05))
        )
        retention = retention_of(config, metadata, capped, metrics, clock, leases.in_use)
        capped.evictor = retention.evict_to
        app[RETENTION] = retention
        scheduled = None
        if limits.interval > 0:
            scheduled = asyncio.create_task(retention.run_periodically(limits.interval))
        try:
            yield
        finally:
            for task in (flusher, scheduled):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            await capped.close()
            await blobs.close()
            await pool.close()
            if AUTH in app:
                app[AUTH].identity.close()
            for client in clients.values():
                await client.close()
            metadata.close()
            retention.close()
            lock.release()

    app.cleanup_ctx.append(resources)
    return app
