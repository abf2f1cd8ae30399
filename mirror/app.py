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

from mirror.app_auth import open_auth, print_once
from mirror.clock import Clock, SystemClock
from mirror.config import Config, UpstreamConfig
from mirror.metrics import Metrics
from mirror.pullthrough.blobs import BlobService
from mirror.pullthrough.listing import ListingService
from mirror.pullthrough.manifests import ManifestService
from mirror.routing import Route, Router
from mirror.storage import open_store
from mirror.store.metadata import Metadata
from mirror.upstream.client import UpstreamClient
from mirror.upstream.endpoint import UpstreamEndpoint
from mirror.upstream.pool import UpstreamPool
from mirror.web.auth import AUTH
from mirror.web.auth_routes import install_auth
from mirror.web.context import SERVICES, Services
from mirror.web.errors import common_headers, errors_middleware
from mirror.web.routes import add_routes

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
        ca_file=upstream.ca_file,
        verify_tls=upstream.verify_tls,
    )


def router_of(config: Config) -> Router:
    """The request router for the configured upstreams."""
    routes = [Route(u.host, u.aliases, u.library_prefix) for u in config.upstreams]
    return Router(routes, config.default_upstream or None)


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
    app.on_response_prepare.append(common_headers)

    async def resources(app: web.Application) -> AsyncIterator[None]:
        data_dir = Path(config.storage.data_dir)
        store = open_store(config, on_corrupt=lambda _error: metrics.corrupt_objects.inc())
        store.sweep()
        metadata = Metadata(data_dir / "metadata")
        clients: dict[str, UpstreamClient] = {}
        for upstream in config.upstreams:

            def count(method: str, status: int, host: str = upstream.host) -> None:
                metrics.upstream_requests.labels(host, method, str(status)).inc()

            client = UpstreamClient(endpoint_of(upstream), on_response=count)
            await client.start()
            clients[upstream.host] = client

        def make_client(endpoint: UpstreamEndpoint) -> UpstreamClient:
            def count(method: str, status: int, host: str = endpoint.host) -> None:
                metrics.upstream_requests.labels(host, method, str(status)).inc()

            return UpstreamClient(endpoint, on_response=count)

        pool = UpstreamPool(clients, make_client)
        cache = config.cache
        blobs = BlobService(
            store,
            pool.get,
            metrics,
            chunk_size=config.storage.chunk_size,
            fill_timeout=cache.fill_timeout,
        )
        manifests = ManifestService(
            store,
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
            config.storage.chunk_size,
        )
        flusher = asyncio.create_task(
            _flush_last_pulls(metadata, max(cache.last_pull_flush_interval, 0.05))
        )
        try:
            yield
        finally:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            await blobs.close()
            await pool.close()
            if AUTH in app:
                app[AUTH].identity.close()
            for client in clients.values():
                await client.close()
            metadata.close()

    app.cleanup_ctx.append(resources)
    return app
