"""Manifests pulled through: digests are immutable, tags are revalidated after a TTL with an
upstream ``HEAD``, and a cached tag is served stale when upstream fails."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from mirror.blobstore.interface import BlobStore
from mirror.clock import Clock
from mirror.db.metadata import WRITE_FAILED, ManifestRecord, TagRecord
from mirror.db.roles import Manifests, Pulls, Repositories, Tags
from mirror.errors import (
    DigestMismatch,
    ErrorCode,
    RegistryError,
    UpstreamThrottled,
    UpstreamUnavailable,
)
from mirror.lru import Lru
from mirror.metrics import Metrics
from mirror.oci.digest import Digest, is_digest
from mirror.oci.media import (
    DOCKER_MANIFEST_LIST,
    IMAGE_TYPES,
    MANIFEST_TYPES,
    acceptable,
    default_platform_child,
    parse_manifest,
)
from mirror.oci.names import validate_tag
from mirror.pullthrough.blobs import Upstreams
from mirror.pullthrough.singleflight import SingleFlight
from mirror.upstream.routing import Target

log = logging.getLogger(__name__)

# What the mirror asks upstream for: every manifest type, so the cached one is canonical.
UPSTREAM_ACCEPT = (*MANIFEST_TYPES,)

# With ``tag_ttl = 0`` every pull of a tag asks upstream whatever its time says, so the time a
# tag was last confirmed unchanged only starts its stale window: it is written back at most
# once a second. A metadata write per tag HEAD cost each one about 1 ms on the event loop
# while fills wrote to the same disk (benchmarks/published/profiles/lanes.md).
TOUCH_INTERVAL = 1.0


@dataclass(frozen=True, slots=True)
class Manifest:
    """A manifest ready to send."""

    digest: Digest
    media_type: str
    body: bytes
    # Set when upstream failed and a cached tag was served past its TTL.
    stale: bool = False


class ManifestRecords(Tags, Manifests, Repositories, Pulls, Protocol):
    """The metadata manifests are served from: tags, manifests, the catalog, last pulls."""


class ManifestService:
    """Serves manifests by tag or digest through the cache."""

    def __init__(
        self,
        store: BlobStore,
        metadata: ManifestRecords,
        upstreams: Upstreams,
        metrics: Metrics,
        clock: Clock,
        *,
        tag_ttl: float,
        max_stale: float,
        body_cache_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self._store = store
        self._metadata = metadata
        self._upstreams = upstreams
        self._metrics = metrics
        self._clock = clock
        self._tag_ttl = tag_ttl
        self._max_stale = max_stale
        self._flights: SingleFlight[Manifest] = SingleFlight()
        # Verified manifest bodies by digest (immutable), so warm requests skip the store.
        self._bodies: Lru[Digest, bytes] = Lru(body_cache_bytes, len, max_share=16)

    async def get(self, target: Target, reference: str, accept: Sequence[str]) -> Manifest:
        """The manifest ``reference`` (tag or digest) of ``target``, negotiated by ``accept``."""
        if is_digest(reference):
            manifest = await self.by_digest(target, Digest.parse(reference))
        else:
            manifest = await self.by_tag(target, validate_tag(reference))
        return await negotiate(manifest, accept, lambda child: self.by_digest(target, child))

    def record_pull(self, target: Target, manifest: Manifest) -> None:
        """Note that a client pulled this image now (feeds retention)."""
        self._metadata.record_pull(target.upstream, target.repo, manifest.digest, self._clock.now())

    async def by_digest(self, target: Target, digest: Digest) -> Manifest:
        """A manifest by digest: immutable, so a cached one never needs upstream."""
        cached = await self._cached(digest)
        if cached is not None:
            self._metrics.cache_hits.labels("manifest").inc()
            return cached
        self._metrics.cache_misses.labels("manifest").inc()
        key = ("digest", target.upstream, str(digest))
        if self._flights.joined(key):
            self._metrics.singleflight_joins.labels("manifest").inc()
        return await self._flights.do(key, lambda: self._fetch(target, str(digest), digest))

    async def by_tag(self, target: Target, tag: str) -> Manifest:
        """A manifest by tag: from cache within the TTL, else revalidated with upstream."""
        record = self._metadata.tag(target.upstream, target.repo, tag)
        now = self._clock.now()
        if record is not None and now - record.fetched_at < self._tag_ttl:
            cached = await self._cached(Digest.parse(record.digest))
            if cached is not None:
                self._metrics.cache_hits.labels("tag").inc()
                return cached
        self._metrics.cache_misses.labels("tag").inc()
        key = ("tag", target.upstream, target.repo, tag)
        if self._flights.joined(key):
            self._metrics.singleflight_joins.labels("tag").inc()
        return await self._flights.do(key, lambda: self._revalidate(target, tag, record))

    async def _revalidate(self, target: Target, tag: str, record: TagRecord | None) -> Manifest:
        client = self._upstreams(target.upstream)
        try:
            if record is not None:
                head = await client.head_manifest(target.repo, tag, UPSTREAM_ACCEPT)
                if head.digest is not None and str(head.digest) == record.digest:
                    cached = await self._cached(Digest.parse(record.digest))
                    if cached is not None:
                        self._touch(target, tag, record)
                        return cached
            manifest = await self._fetch(target, tag, None)
        except (UpstreamUnavailable, UpstreamThrottled, DigestMismatch) as exc:
            stale = await self._stale(target, tag, record)
            if stale is None:
                if isinstance(exc, DigestMismatch):
                    raise RegistryError(
                        ErrorCode.UNAVAILABLE,
                        "upstream manifest did not match its digest",
                        detail={"digest": exc.expected},
                    ) from exc
                raise
            log.warning(
                "serving stale %s/%s:%s from %s: upstream failed: %s",
                target.upstream,
                target.repo,
                tag,
                stale.digest,
                exc,
            )
            self._metrics.stale_served.inc()
            return stale
        record = TagRecord(
            str(manifest.digest), manifest.media_type, len(manifest.body), self._clock.now()
        )
        try:
            self._metadata.set_tag(target.upstream, target.repo, tag, record)
        except WRITE_FAILED as exc:
            # The verified manifest is served; the tag is looked up upstream again next time.
            self._unrecorded("tag", f"{target.repo}:{tag}", exc)
            self._metrics.uncached_streams.labels("manifest").inc()
        return manifest

    def _touch(self, target: Target, tag: str, record: TagRecord) -> None:
        """Record that upstream confirmed ``tag`` unchanged now (with TTL 0: once a second)."""
        now = self._clock.now()
        if self._tag_ttl <= 0 and now - record.fetched_at < TOUCH_INTERVAL:
            return
        try:
            self._metadata.touch_tag(target.upstream, target.repo, tag, now)
        except WRITE_FAILED as exc:
            # Only the revalidation time is lost: the next pull asks again.
            self._unrecorded("tag", f"{target.repo}:{tag}", exc)

    async def _stale(self, target: Target, tag: str, record: TagRecord | None) -> Manifest | None:
        if record is None:
            return None
        if self._clock.now() - record.fetched_at > self._tag_ttl + self._max_stale:
            return None
        cached = await self._cached(Digest.parse(record.digest))
        if cached is None:
            return None
        return Manifest(cached.digest, cached.media_type, cached.body, stale=True)

    async def _cached(self, digest: Digest) -> Manifest | None:
        record = self._metadata.manifest(digest)
        if record is None:
            self._bodies.drop(digest)
            return None
        body = self._bodies.get(digest)
        if body is None:
            body = await self._store.get(digest)
            if body is None:
                return None
            self._bodies.put(digest, body)
        return Manifest(digest, record.media_type, body)

    async def _fetch(self, target: Target, reference: str, expected: Digest | None) -> Manifest:
        """GET a manifest from upstream, verify it against its digest, and cache it."""
        client = self._upstreams(target.upstream)
        upstream = await client.get_manifest(target.repo, reference, UPSTREAM_ACCEPT)
        algorithm = expected.algorithm if expected else "sha256"
        actual = Digest.of(upstream.body, algorithm)
        claimed = expected or upstream.digest
        if claimed is not None and claimed != actual:
            self._metrics.digest_mismatches.labels("manifest").inc()
            log.error(
                "upstream %s sent a manifest for %s that hashes to %s",
                target.upstream,
                claimed,
                actual,
            )
            raise DigestMismatch(str(claimed), str(actual))
        info = parse_manifest(upstream.body, upstream.media_type)
        try:
            await self._store.put(actual, upstream.body)
        except OSError as exc:
            # Disk full or over the cache limit: serve it anyway, uncached.
            log.warning("cannot cache manifest %s (%s); serving it uncached", actual, exc)
            self._metrics.uncached_streams.labels("manifest").inc()
            return Manifest(actual, info.media_type, upstream.body)
        record = ManifestRecord(
            info.media_type, len(upstream.body), info.references, self._clock.now()
        )
        try:
            self._metadata.set_manifest(actual, record)
        except WRITE_FAILED as exc:
            # Without its record the stored body is invisible: give its room back, and serve
            # the verified manifest uncached (the README promises pulls on a full disk).
            self._unrecorded("manifest", str(actual), exc)
            self._metrics.uncached_streams.labels("manifest").inc()
            with contextlib.suppress(OSError):
                await self._store.delete(actual)
            return Manifest(actual, info.media_type, upstream.body)
        try:
            self._metadata.add_repository(target.upstream, target.repo)
        except WRITE_FAILED as exc:
            self._unrecorded("repository", f"{target.upstream}/{target.repo}", exc)
        return Manifest(actual, info.media_type, upstream.body)

    def _unrecorded(self, record: str, what: str, exc: Exception) -> None:
        """Note a metadata write the disk refused: one warning line and a count."""
        log.warning("cannot record %s %s (%s); serving it uncached", record, what, exc)
        self._metrics.metadata_write_failures.labels(record).inc()


async def negotiate(
    manifest: Manifest, accept: Sequence[str], child: Callable[[Digest], Awaitable[Manifest]]
) -> Manifest:
    """``manifest`` if ``accept`` takes its media type; else, as distribution does, a Docker
    manifest list asked for by a client that takes only image manifests resolves to its
    linux/amd64 image (fetched with ``child``); an OCI index is never converted. Otherwise
    ``MANIFEST_UNKNOWN``."""
    if acceptable(manifest.media_type, accept):
        return manifest
    if manifest.media_type == DOCKER_MANIFEST_LIST and any(t in IMAGE_TYPES for t in accept):
        default = default_platform_child(parse_manifest(manifest.body, manifest.media_type))
        if default is not None:
            chosen = await child(Digest.parse(default))
            if acceptable(chosen.media_type, accept):
                return chosen
    raise RegistryError(
        ErrorCode.MANIFEST_UNKNOWN,
        "manifest found, but its media type is not in the Accept header",
        detail={"mediaType": manifest.media_type, "accept": list(accept)},
    )
