"""Where ``mirror export`` reads from without ``--mirror``: the configured cache, opened
directly (the blob store, its keys and the metadata store; no server), and the configured
mirror served in-process on loopback only once the cache cannot answer alone (a tag past its
TTL to revalidate, a manifest or blob to fill from upstream, referrers to list).

Both hold the data directory's lock, one after the other: the cache's reader gives it up
before the mirror is built (which takes it again, as ``mirror serve`` does), so an export
never runs beside a server on the same cache, as before.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncGenerator, Callable
from contextlib import AsyncExitStack, aclosing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mirror.bundle.cached import CachedBlob, CachedBlobs
from mirror.bundle.fetched import FetchedManifest
from mirror.bundle.stored import NotStored, StoredManifests
from mirror.clock import Clock, SystemClock
from mirror.oci.digest import Digest

if TYPE_CHECKING:
    from aiohttp import web

    from mirror.bundle.client import RegistryClient
    from mirror.config import Config
    from mirror.db.lock import DataDirLock
    from mirror.db.metadata import Metadata

# How the in-process mirror is built from the configuration (``build_app``; tests count).
BuildApp = Callable[["Config"], "web.Application"]


class CacheSource:
    """The images of ``config``'s cache: manifests and blobs read from the stores while they
    answer, then (for good) through the mirror ``build`` makes, served on loopback. Use as an
    async context manager; ``served`` says whether the mirror had to be started."""

    def __init__(self, config: Config, build: BuildApp, clock: Clock | None = None) -> None:
        self._config = config
        self._build = build
        self._clock = clock or SystemClock()
        self._stack = AsyncExitStack()
        self._lock: DataDirLock | None = None
        self._metadata: Metadata | None = None
        self._stored: StoredManifests | None = None
        self._blobs: CachedBlobs | None = None
        self._client: RegistryClient | None = None
        # Blobs are opened by several reads at once: the mirror is started by the first.
        self._starting = asyncio.Lock()

    @property
    def served(self) -> bool:
        """Whether the in-process mirror was started (a request the cache could not answer)."""
        return self._client is not None

    async def __aenter__(self) -> CacheSource:
        try:
            if self._config.metadata.backend == "diskcache":
                self._open_cache()
            else:
                # A shared database serves a tier: ask the mirror, which connects as it does.
                await self._serve()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            self._close_cache()
        finally:
            await self._stack.aclose()

    def _open_cache(self) -> None:
        """Take the lock, open the store (its keys checked) and the metadata, as a server's
        start does (the store's sweep re-verifies what a crash left not yet durable)."""
        from mirror.app.stores import open_store
        from mirror.db.lock import DataDirLock
        from mirror.db.metadata import Metadata
        from mirror.upstream.routing import Route, Router

        config = self._config
        data_dir = Path(config.storage.data_dir)
        store = open_store(config, clock=self._clock)
        self._lock = DataDirLock(data_dir)
        self._lock.acquire(holder="mirror export")
        store.sweep()
        self._metadata = Metadata(data_dir / "metadata")
        routes = [Route(u.host, u.aliases, u.library_prefix) for u in config.upstreams]
        router = Router(routes, config.default_upstream or None)
        ttl = math.inf if config.cache.offline else config.cache.tag_ttl
        self._stored = StoredManifests(store, self._metadata, router, self._clock, ttl)
        self._blobs = CachedBlobs(store)

    def _close_cache(self) -> None:
        self._stored = None
        try:
            if self._metadata is not None:
                self._metadata.close()
        finally:
            self._metadata = None
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    async def _serve(self) -> RegistryClient:
        """The client of the in-process mirror, started the first time it is needed."""
        async with self._starting:
            if self._client is None:
                self._client = await self._start_mirror()
            return self._client

    async def _start_mirror(self) -> RegistryClient:
        import aiohttp

        from mirror.bundle.client import TIMEOUT, RegistryClient
        from mirror.testing.loopback import serve_on_loopback
        from mirror.web.keys import CACHE

        self._close_cache()
        app = self._build(self._config)
        url = await self._stack.enter_async_context(serve_on_loopback(app))
        session = aiohttp.ClientSession(timeout=TIMEOUT)
        self._stack.push_async_callback(session.close)
        self._blobs = CachedBlobs(app[CACHE])
        return RegistryClient(session, url)

    async def manifest(self, host: str, repo: str, reference: str) -> FetchedManifest:
        """From the cache when it answers alone, else through the mirror."""
        if self._stored is not None:
            try:
                return await self._stored.manifest(host, repo, reference)
            except NotStored:
                pass
        return await (await self._serve()).manifest(host, repo, reference)

    async def referrers(self, host: str, repo: str, digest: Digest) -> list[dict[str, Any]]:
        """Through the mirror (it lists them, from its upstream when connected)."""
        return await (await self._serve()).referrers(host, repo, digest)

    async def blob(self, host: str, repo: str, digest: Digest) -> AsyncGenerator[bytes, None]:
        """Through the mirror (a blob the store lacks: the pull-through path fills it)."""
        client = await self._serve()
        async with aclosing(client.blob(host, repo, digest)) as chunks:
            async for chunk in chunks:
                yield chunk

    async def open(self, digest: Digest) -> CachedBlob | None:
        """The blob from the store that holds it (``CachedBlobs.open``); a miss of the cache's
        own store starts the mirror, whose store is asked again (``None``: take it over HTTP)."""
        if self._blobs is None:
            raise RuntimeError("CacheSource is not open")
        found = await self._blobs.open(digest)
        if found is None and not self.served:
            await self._serve()
            found = await self._blobs.open(digest)
        return found
