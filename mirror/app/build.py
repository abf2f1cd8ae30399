"""The only place that wires things: config in, a running ``web.Application`` out.

Every long-lived resource (the blob store and the data directory's lock, the metadata store,
the upstream clients, the services, auth, retention and its scheduler, the last-pull flusher)
has a ``cleanup_ctx`` of its own. aiohttp cleans up only the contexts whose startup finished,
so a start that fails midway closes exactly what had opened; the rest close in reverse order.
Contexts hand on what they opened under the typed keys of ``mirror.web.keys``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from mirror.app.auth import open_auth, print_once
from mirror.app.limit_metrics import LimitMetrics
from mirror.app.metadata import (
    open_metadata,
    open_retention_state,
    open_shared_audit,
    upload_owners_of,
)
from mirror.app.quotas import load_quotas, quotas_of
from mirror.app.stores import BlobStoreImpl, open_store
from mirror.app.tier import blob_sources, hosted_digests, open_replica, repair_periodically
from mirror.app.workers import WorkerSlot
from mirror.blobstore.capacity import CapacityLimit
from mirror.blobstore.install import restrict_to_owner
from mirror.clock import Clock, SystemClock
from mirror.config import Config, UpstreamConfig
from mirror.console.app import add_console
from mirror.db.lock import DataDirLock
from mirror.db.metadata import WRITE_FAILED
from mirror.db.roles import MetadataStore
from mirror.hosted.repositories import HostedRepositories
from mirror.hosted.uploads import UploadStore
from mirror.metrics import Metrics
from mirror.oci.digest import Digest
from mirror.oci.reflist import parse_all
from mirror.pullthrough.blobs import BlobService
from mirror.pullthrough.leases import Leases
from mirror.pullthrough.listing import ListingService
from mirror.pullthrough.manifests import ManifestService
from mirror.pullthrough.prewarm import Prewarmer, Sleep
from mirror.retention.audit import AuditLog, prune_periodically
from mirror.retention.names import resolve_policy_repository
from mirror.retention.policy import RetentionPolicy
from mirror.retention.service import RetentionService
from mirror.tier.hosted_store import ReplicatedStore
from mirror.upstream.addresses import RuleHosts
from mirror.upstream.client import UpstreamClient
from mirror.upstream.endpoint import UpstreamEndpoint
from mirror.upstream.limits import UpstreamLimits
from mirror.upstream.pool import UpstreamPool
from mirror.upstream.routing import Route, Router
from mirror.web.admin.prewarm import add_prewarm_routes
from mirror.web.admin.retention import add_admin_routes
from mirror.web.keys import (
    ANONYMOUS_PUSH,
    AUDIT,
    AUTH,
    CACHE,
    HOSTED,
    METADATA,
    METRICS_ACCESS,
    PREWARM,
    QUOTAS,
    RETENTION,
    SERVICES,
    STOPPING,
    UPLOADS,
    UPSTREAMS,
    Services,
)
from mirror.web.middleware import common_headers, errors_middleware, note_stopping
from mirror.web.registry.routes import add_routes
from mirror.web.registry.seeding import install_seeding
from mirror.web.registry.upload_owners import UPLOAD_OWNERS
from mirror.web.routes import install_auth
from mirror.web.tier import TIER, add_tier_routes
from mirror.web.tier_hosted import HOSTED_COPIES, HOSTED_DIGESTS, add_hosted_routes
from mirror.web.tier_uploads import add_upload_routes

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
        forward_ns=upstream.forward_ns,
        limits=UpstreamLimits(
            upstream.max_connections, upstream.requests_per_second, upstream.bandwidth
        ),
    )


def router_of(config: Config) -> Router:
    """The request router for the configured upstreams."""
    routes = [Route(u.host, u.aliases, u.library_prefix) for u in config.upstreams]
    return Router(routes, config.default_upstream or None)


def declared_policies(
    config: Config, router: Router
) -> list[tuple[RetentionPolicy, tuple[str, ...]]]:
    """The config file's retention policies, repositories resolved to ``HOST/REPO``."""
    declared = []
    for p in config.retention.policies:
        policy = RetentionPolicy(
            p.name, p.not_pulled_days, p.not_tagged_days, p.exempt_tags, p.match
        )
        names = (resolve_policy_repository(router, name) for name in p.repositories)
        declared.append((policy, tuple(names)))
    return declared


def audit_log(config: Config, clock: Clock) -> AuditLog:
    """The deletions' audit log (``retention.audit_log``, or the data directory's), on a tier
    over PostgreSQL also the tier's shared one (the caller closes it)."""
    path = config.retention.audit_log
    data_dir = Path(config.storage.data_dir)
    file = Path(path) if path else data_dir / "retention" / "audit.jsonl"
    return AuditLog(file, clock, open_shared_audit(config))


def retention_of(
    config: Config,
    metadata: MetadataStore,
    cache: CapacityLimit,
    metrics: Metrics,
    clock: Clock,
    in_use: Callable[[Digest], bool],
    audit: AuditLog,
    router: Router | None = None,
) -> RetentionService:
    """The retention service over the data directory's retention state and ``audit`` (the
    caller's to close; ``router`` resolves the policies' repositories; by default the
    configured one)."""
    settings = config.retention
    data_dir = Path(config.storage.data_dir)
    service = RetentionService(
        metadata,
        cache,
        open_retention_state(config, data_dir / "retention"),
        audit,
        metrics,
        clock,
        in_use=in_use,
        cooling_period=settings.cooling_period,
        capacity=cache if settings.max_size else None,
        hosted_grace=config.hosted.gc_grace,
    )
    service.declare(declared_policies(config, router or router_of(config)))
    return service


async def _flush_last_pulls(metadata: MetadataStore, interval: float, metrics: Metrics) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            metadata.flush()
        except WRITE_FAILED as exc:
            # The batch stays pending for the next try (a full disk is not a bug).
            log.warning("cannot write last-pull times yet, keeping them: %s", exc)
            metrics.metadata_write_failures.labels("last-pull").inc()
        except Exception:
            log.exception("flushing last-pull times failed")


@contextlib.asynccontextmanager
async def running(job: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    """Run ``job`` as a task for the duration of the block; it is cancelled and awaited after
    (an error it died of is raised then)."""
    task = asyncio.create_task(job)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


CleanupContext = Callable[[web.Application], AsyncIterator[None]]


@dataclass(frozen=True)
class Resources:
    """How the app's long-lived resources open and close: one cleanup context each.

    ``existed`` is whether the data directory was there before this start (only then is
    tightening its mode worth a warning).
    """

    config: Config
    router: Router
    clock: Clock
    metrics: Metrics
    announce: Callable[[str], None]
    store_factory: Callable[[Path], BlobStoreImpl] | None
    existed: bool
    # Blobs being filled or served: the blob service holds them, retention spares them.
    leases: Leases = field(default_factory=Leases)
    # How background tasks wait between runs (the scheduled pre-warm list).
    sleep: Sleep = asyncio.sleep
    # This process's place among the workers of a multi-process server (None: the only one).
    worker: WorkerSlot | None = None

    @property
    def runs_jobs(self) -> bool:
        """Whether this process runs the background jobs (retention and pre-warm schedules,
        the upload sweeper): the only process, or worker 0."""
        return self.worker is None or self.worker.runs_jobs

    def data_dir_lock(self) -> DataDirLock:
        """The data directory's lock, taken here (``DataDirLocked`` when another server or
        an offline run has it), or inherited from this worker's supervisor."""
        if self.worker is not None:
            return DataDirLock.adopt(self.data_dir, self.worker.lock_fd)
        lock = DataDirLock(self.data_dir)
        lock.acquire(holder="a running mirror server")
        return lock

    @property
    def data_dir(self) -> Path:
        """The configured data directory."""
        return Path(self.config.storage.data_dir)

    def contexts(self) -> list[CleanupContext]:
        """The cleanup contexts in start order (auth only when enabled)."""
        auth = [self.auth] if self.config.auth.enabled else []
        return [
            self.cache,
            self.metadata,
            self.upstreams,
            self.tier,
            self.audit,
            self.services,
            self.uploads,
            *auth,
            self.quotas,
            self.retention,
            self.last_pulls,
            self.prewarm,
            self.hosted_repair,
        ]

    def open_store(self) -> BlobStoreImpl:
        """The blob store: the factory's, or the configured one (``KeyringError`` if refused)."""
        if self.store_factory is not None:
            return self.store_factory(self.data_dir)
        return open_store(
            self.config,
            on_corrupt=lambda _error: self.metrics.corrupt_objects.inc(),
            clock=self.clock,
        )

    async def cache(self, app: web.Application) -> AsyncIterator[None]:
        """``CACHE``: the blob store under its capacity limit, while this server holds the
        data directory's lock (``DataDirLocked`` when another server or an offline run has
        it)."""
        data_dir = self.data_dir
        store = self.open_store()
        # Taken once the keys checked out, so a refused start leaves the data dir untouched.
        lock = self.data_dir_lock()
        try:
            if restrict_to_owner(data_dir) and self.existed:
                log.warning("%s was readable by other users; now owner-only (0700)", data_dir)
            # Only a server's first process sweeps: later workers would delete live fills.
            if self.worker is None or self.worker.first_start:
                store.sweep()
            limits = self.config.retention
            capped = CapacityLimit(
                store,
                self.metrics,
                max_size=limits.max_size,
                high=limits.high_watermark,
                low=limits.low_watermark,
            )
            if limits.max_size:
                await capped.measure()
            app[CACHE] = capped
            yield
        finally:
            lock.release()

    async def metadata(self, app: web.Application) -> AsyncIterator[None]:
        """``METADATA``: the metadata store (pending last-pull times are flushed on close)."""
        if self.config.metadata.backend == "postgres":
            metadata = await asyncio.to_thread(open_metadata, self.config, self.data_dir)
        else:
            metadata = open_metadata(self.config, self.data_dir)
        try:
            app[METADATA] = metadata
            yield
        finally:
            metadata.close()

    def client(self, endpoint: UpstreamEndpoint, guard: RuleHosts | None = None) -> UpstreamClient:
        """An (unstarted) upstream client that counts its responses in the metrics; ``guard``
        for the clients of tenancies' rules."""

        def count(method: str, status: int, host: str = endpoint.host) -> None:
            self.metrics.upstream_requests.labels(host, method, str(status)).inc()

        return UpstreamClient(
            endpoint,
            clock=self.clock,
            on_response=count,
            guard=guard,
            offline=self.config.cache.offline,
            observer=LimitMetrics(self.metrics, endpoint.host),
        )

    async def upstreams(self, app: web.Application) -> AsyncIterator[None]:
        """``UPSTREAMS``: a started client per configured upstream, and the pool that also
        holds the clients made for tenancies' rules."""
        async with contextlib.AsyncExitStack() as opened:
            clients: dict[str, UpstreamClient] = {}
            for upstream in self.config.upstreams:
                client = self.client(endpoint_of(upstream))
                opened.push_async_callback(client.close)
                await client.start()
                clients[upstream.host] = client
            pool = UpstreamPool(clients, self.client, RuleHosts(self.config.auth.rule_hosts))
            opened.push_async_callback(pool.close)
            app[UPSTREAMS] = pool
            yield

    async def tier(self, app: web.Application) -> AsyncIterator[None]:
        """``TIER``: this replica's place in its tier and its session to the peers (only with
        ``tier.replicas``)."""
        shared = self.worker is not None
        async with open_replica(self.config.tier, self.clock, shared_store=shared) as replica:
            if replica is not None:
                app[TIER] = replica
            owners = upload_owners_of(self.config) if replica is not None and not shared else None
            if owners is not None:
                app[UPLOAD_OWNERS] = owners
            try:
                yield
            finally:
                if owners is not None:
                    owners.close()

    async def audit(self, app: web.Application) -> AsyncIterator[None]:
        """``AUDIT``: the deletions' audit log, one for the retention service and a tier's
        hosted copies (on PostgreSQL one pool); pruned of events older than
        ``retention.audit_keep_days`` at start and every 6 h by the process running the jobs."""
        audit = audit_log(self.config, self.clock)
        try:
            app[AUDIT] = audit
            keep = self.config.retention.audit_keep_days * 86400
            if keep > 0 and self.runs_jobs:
                async with running(prune_periodically(audit, keep, self.clock, self.sleep)):
                    yield
            else:
                yield
        finally:
            audit.close()

    async def services(self, app: web.Application) -> AsyncIterator[None]:
        """``SERVICES``: the pull-through services behind the routes (fills still running
        are cancelled on close)."""
        capped, metadata, pool = app[CACHE], app[METADATA], app[UPSTREAMS]
        cache = self.config.cache
        # Offline, nothing could revalidate a tag: what is cached stays current forever.
        tag_ttl = math.inf if cache.offline else cache.tag_ttl
        self.metrics.offline.set(1 if cache.offline else 0)
        replica = app.get(TIER)
        # The hosted copies of a tier write to the audit log (a removed extra copy).
        copies = None if replica is None else replica.hosted_copies(capped, app[AUDIT])
        blobs = BlobService(
            capped,
            blob_sources(pool.get, replica, copies),
            self.metrics,
            chunk_size=self.config.storage.chunk_size,
            fill_timeout=cache.fill_timeout,
            leases=self.leases,
            keep=None if replica is None else replica.keeps,
        )
        manifests = ManifestService(
            capped,
            metadata,
            pool.get,
            self.metrics,
            self.clock,
            tag_ttl=tag_ttl,
            max_stale=cache.max_stale,
        )
        listing = ListingService(
            metadata,
            pool.get,
            self.metrics,
            self.clock,
            ttl=tag_ttl,
            max_stale=cache.max_stale,
        )
        app[SERVICES] = Services(self.router, blobs, manifests, listing, metadata, self.metrics)
        app[PREWARM] = Prewarmer(self.router, manifests, blobs, self.metrics, self.clock)
        app[QUOTAS] = quotas_of(self.config, self.metrics, self.clock)
        if copies is not None:
            app[HOSTED_COPIES] = copies
            app[HOSTED_DIGESTS] = hosted_digests(metadata)
        app[HOSTED] = HostedRepositories(
            capped if copies is None else ReplicatedStore(capped, copies),
            metadata,
            self.clock,
            app[QUOTAS],
            max_manifest_bytes=self.config.hosted.max_manifest_size,
        )
        try:
            yield
        finally:
            await blobs.close()
            app[QUOTAS].close()

    async def hosted_repair(self, app: web.Application) -> AsyncIterator[None]:
        """On a tier, the background repair of hosted copies every ``tier.repair_interval``."""
        if HOSTED_COPIES not in app:
            yield
            return
        job = repair_periodically(
            app[HOSTED_COPIES], app[HOSTED_DIGESTS], self.config.tier.repair_interval, self.sleep
        )
        async with running(job):
            yield

    async def uploads(self, app: web.Application) -> AsyncIterator[None]:
        """``UPLOADS``: the blob upload sessions under ``<data_dir>/uploads``; expired ones are
        swept now and every ``storage.upload_timeout / 4`` seconds (at most every 5 min), by
        the process that runs the background jobs."""
        storage = self.config.storage
        store = UploadStore(
            self.data_dir / "uploads",
            self.clock,
            timeout=storage.upload_timeout,
            chunk_size=storage.chunk_size,
            stager=app[CACHE],
        )
        app[UPLOADS] = store
        if not self.runs_jobs:
            yield
            return
        store.sweep()
        interval = min(storage.upload_timeout / 4, 300.0)
        async with running(store.sweep_periodically(interval)):
            yield

    async def auth(self, app: web.Application) -> AsyncIterator[None]:
        """``AUTH``: the identity store and signing key (the first start announces its
        administrator token)."""
        config, router, clock = self.config, self.router, self.clock
        metadata, pool = app[METADATA], app[UPSTREAMS]
        auth = open_auth(config, router, metadata, pool, clock, self.announce, store=app[CACHE])
        try:
            app[AUTH] = auth
            yield
        finally:
            auth.identity.close()

    async def quotas(self, app: web.Application) -> AsyncIterator[None]:
        """Hosted usage per tenancy, rebuilt now from what the data directory holds."""
        await load_quotas(app[QUOTAS], app[METADATA], app[CACHE], app.get(AUTH))
        yield

    async def retention(self, app: web.Application) -> AsyncIterator[None]:
        """``RETENTION``: the retention service, the cache's evictor, and the periodic run
        when ``retention.interval`` is set."""
        config, metrics, clock, router = self.config, self.metrics, self.clock, self.router
        capped, metadata, held = app[CACHE], app[METADATA], self.leases.held
        audit = app[AUDIT]
        retention = retention_of(config, metadata, capped, metrics, clock, held, audit, router)
        async with contextlib.AsyncExitStack() as opened:
            opened.callback(retention.close)
            capped.evictor = retention.evict_to
            # What the collector reclaimed leaves the tenancies' usage.
            retention.after_collect = lambda: load_quotas(
                app[QUOTAS], metadata, capped, app.get(AUTH)
            )
            opened.push_async_callback(stop_eviction, capped)
            # A blob a run deleted and a fill installed again is looked at by the next run.
            blobs = app[SERVICES].blobs
            blobs.on_filled = retention.refilled
            opened.callback(setattr, blobs, "on_filled", None)
            # A tier's replica deletes what it holds when another replica's run released it.
            opened.push_async_callback(retention.follow_tier())
            app[RETENTION] = retention
            interval = config.retention.interval
            if interval > 0 and self.runs_jobs:
                await opened.enter_async_context(running(retention.run_periodically(interval)))
            yield

    async def last_pulls(self, app: web.Application) -> AsyncIterator[None]:
        """The flusher of batched last-pull times (every ``cache.last_pull_flush_interval``)."""
        interval = max(self.config.cache.last_pull_flush_interval, 0.05)
        async with running(_flush_last_pulls(app[METADATA], interval, self.metrics)):
            yield

    async def prewarm(self, app: web.Application) -> AsyncIterator[None]:
        """The scheduled pre-warm list (``prewarm.images`` every ``prewarm.interval`` seconds,
        the first run at start), when an interval is set; cancelled at shutdown."""
        settings = self.config.prewarm
        if settings.interval <= 0 or not self.runs_jobs:
            yield
            return
        refs = parse_all(("prewarm.images", image) for image in settings.images)
        job = app[PREWARM].run_periodically(
            refs, settings.interval, settings.concurrency, self.sleep
        )
        async with running(job):
            yield


async def stop_eviction(capped: CapacityLimit) -> None:
    """Detach the cache's evictor and wait for an eviction running in the background."""
    capped.evictor = None
    await capped.close()


def build_app(
    config: Config,
    *,
    clock: Clock | None = None,
    metrics: Metrics | None = None,
    announce: Callable[[str], None] = print_once,
    store_factory: Callable[[Path], BlobStoreImpl] | None = None,
    sleep: Sleep = asyncio.sleep,
    worker: WorkerSlot | None = None,
) -> web.Application:
    """The mirror as an aiohttp application (resources open on startup, close on cleanup).

    With ``auth.enabled`` the first start's administrator token goes to ``announce``;
    ``sleep`` is how background tasks wait between runs (the scheduled pre-warm list);
    ``worker`` is this process's slot when it is one worker of several.
    """
    resources = Resources(
        config,
        router_of(config),
        clock or SystemClock(),
        metrics or Metrics(),
        announce,
        store_factory,
        existed=Path(config.storage.data_dir).is_dir(),
        sleep=sleep,
        worker=worker,
    )
    app = web.Application(middlewares=[errors_middleware])
    add_routes(app)
    if config.auth.enabled:
        install_auth(app)
    add_admin_routes(app)
    add_prewarm_routes(app)
    if config.tier.enabled:
        add_tier_routes(app)
        add_hosted_routes(app)
        add_upload_routes(app)
    if config.console.enabled:
        console = config.console
        add_console(
            app,
            resources.clock,
            console.session_lifetime,
            console.sample_interval,
            data_dir=resources.data_dir,
        )
    app[METRICS_ACCESS] = config.metrics_access()
    app[ANONYMOUS_PUSH] = config.server.allow_anonymous_push and not config.auth.enabled
    if app[ANONYMOUS_PUSH]:
        install_seeding(app)
    app.on_response_prepare.append(common_headers)
    app[STOPPING] = asyncio.Event()
    app.on_shutdown.append(note_stopping)
    app.cleanup_ctx.extend(resources.contexts())
    return app
