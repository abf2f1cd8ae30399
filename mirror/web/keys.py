"""Every typed key of the app and its requests, in one place.

``AppKey``: what the app wires once in its cleanup contexts (the handlers need ``SERVICES``,
``AUTH`` and ``RETENTION``; ``CACHE``, ``METADATA`` and ``UPSTREAMS`` are shared between the
contexts). ``RequestKey``: what a middleware hands on to the handlers and the access log.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiohttp import web

from mirror.auth.access import RepoRef
from mirror.auth.principal import Principal
from mirror.auth.service import AuthService
from mirror.blobstore.capacity import CapacityLimit
from mirror.db.roles import MetadataStore
from mirror.errors import ErrorCode, RegistryError
from mirror.hosted.quota import TenancyQuotas
from mirror.hosted.repositories import HostedRepositories
from mirror.hosted.uploads import UploadStore
from mirror.metrics import Metrics
from mirror.pullthrough.blobs import BlobService
from mirror.pullthrough.listing import ListingService
from mirror.pullthrough.manifests import ManifestService
from mirror.pullthrough.prewarm import Prewarmer
from mirror.retention.audit import AuditLog
from mirror.retention.service import RetentionService
from mirror.upstream.pool import UpstreamPool
from mirror.upstream.routing import Router, Target


@dataclass(frozen=True)
class Services:
    """The services behind the routes."""

    router: Router
    blobs: BlobService
    manifests: ManifestService
    listing: ListingService
    metadata: MetadataStore
    metrics: Metrics


SERVICES = web.AppKey("services", Services)
# Present only with ``auth.enabled``.
AUTH = web.AppKey("auth", AuthService)
RETENTION = web.AppKey("retention", RetentionService)
# Who may read /metrics: "anonymous", "admin" or "off" (``server.metrics`` resolved).
# Hosted repositories' content (pushed manifests and tags).
HOSTED = web.AppKey("hosted", HostedRepositories)
# Per-tenancy quotas of hosted repositories (usage, limits, reservations).
QUOTAS = web.AppKey("quotas", TenancyQuotas)
METRICS_ACCESS = web.AppKey("metrics_access", str)
# The blob store under its capacity limit, the metadata store and the upstream clients.
CACHE = web.AppKey("cache", CapacityLimit)
METADATA = web.AppKey("metadata", MetadataStore)
UPSTREAMS = web.AppKey("upstreams", UpstreamPool)
# The blob upload sessions on disk, and whether auth-off pushes are allowed
# (``server.allow_anonymous_push``).
UPLOADS = web.AppKey("uploads", UploadStore)
ANONYMOUS_PUSH = web.AppKey("anonymous_push", bool)
# The deletions' audit log (retention, a tier's hosted copies): one per process.
AUDIT = web.AppKey("audit", AuditLog)
# Pre-warming images into the cache (the admin API and the scheduled list).
PREWARM = web.AppKey("prewarm", Prewarmer)

# Set once the server is stopping (``on_shutdown``): what cancels a handler from then on.
STOPPING = web.AppKey("stopping", asyncio.Event)

# The target resolved by the auth middleware (tenancy repositories and their rules), if any.
TARGET = web.RequestKey("target", Target)
# The hosted repository a write addresses, once the auth middleware checked it may be pushed.
HOSTED_REPO = web.RequestKey("hosted_repo", RepoRef)
# Who made the request, once the auth middleware authenticated it.
PRINCIPAL = web.RequestKey("principal", Principal)
# Seconds the handler took, with perf_counter resolution (the loop clock ticks in ms on uvloop).
ELAPSED = web.RequestKey("elapsed", float)
# Body bytes a handler wrote to the socket itself (sendfile, sealed sends): aiohttp never saw them.
SENT_DIRECT = web.RequestKey("sent_direct", int)
# Body bytes a handler wrote through aiohttp's writer so far (a streamed blob), less what the
# transport still held when the client went away: aiohttp counts a body only once its end is
# written, so an answer cut short is counted from this.
SENT_STREAMED = web.RequestKey("sent_streamed", int)
# How an answer ended when not in full (``client_gone``, ``cancelled``), for the access line.
OUTCOME = web.RequestKey("outcome", str)
# The response whose headers went out, so a cancelled handler's access line can name it.
PREPARED = web.RequestKey("prepared", web.StreamResponse)


def services(request: web.Request) -> Services:
    """The app's services."""
    return request.app[SERVICES]


def target(request: web.Request) -> Target:
    """Resolve the request's repository name and ``?ns=`` to an upstream target."""
    resolved: Target | None = request.get(TARGET)
    if resolved is not None:
        return resolved
    name = request.match_info.get("name")
    if name is None:
        raise RegistryError(ErrorCode.NAME_INVALID)
    return services(request).router.resolve(name, request.query.get("ns"))
