"""Manifests an in-process export reads straight from the cache, without starting the mirror:
a tag is resolved through the metadata store as the serving path resolves it (only while it
is within its TTL, or forever when the mirror is offline), a manifest is taken from the blob
store only when the metadata records it, and every body is hashed against its digest.

Whatever the cache cannot answer alone (a tag to revalidate with its upstream, a manifest or
blob it does not hold, a name no upstream serves, referrers) raises ``NotStored``: the caller
then asks the mirror's own serving path, which fills from upstream or answers the error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from mirror.bundle.fetched import FetchedManifest
from mirror.clock import Clock
from mirror.db.roles import Manifests, Pulls, Tags
from mirror.errors import RegistryError
from mirror.oci.digest import Digest, is_digest
from mirror.oci.names import TAG_PATTERN
from mirror.upstream.routing import Router, Target


class NotStored(Exception):
    """The cache alone cannot answer for ``what``: the mirror's serving path must."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what}: not answered by the cache alone")
        self.what = what


class ManifestRecords(Tags, Manifests, Pulls, Protocol):
    """The metadata a stored manifest is read through: tags, manifests, last pulls."""


class ManifestBodies(Protocol):
    """Where manifest bodies are kept (the blob store's small-object read)."""

    async def get(self, digest: Digest) -> bytes | None:
        """The whole object, or ``None`` if it is not stored."""
        ...


@dataclass
class StoredManifests:
    """Reads manifests of the mirror's cache as its serving path would answer them from
    cache (``tag_ttl``: how long a cached tag is current, ``math.inf`` offline); each read
    counts as a pull of the image (retention), as a ``GET`` through the mirror does."""

    bodies: ManifestBodies
    metadata: ManifestRecords
    router: Router
    clock: Clock
    tag_ttl: float

    async def manifest(self, host: str, repo: str, reference: str) -> FetchedManifest:
        """The manifest ``reference`` (tag or digest) of ``host/repo``; ``NotStored`` when the
        cache cannot answer alone, or its copy does not hash to its digest."""
        what = f"{host}/{repo}:{reference}"
        target = self._target(host, repo, what)
        digest = self._digest_of(target, reference, what)
        record = self.metadata.manifest(digest)
        body = await self.bodies.get(digest) if record is not None else None
        if record is None or body is None or Digest.of(body, digest.algorithm) != digest:
            raise NotStored(what)
        self.metadata.record_pull(target.upstream, target.repo, digest, self.clock.now())
        return FetchedManifest(digest, record.media_type, body)

    async def referrers(self, host: str, repo: str, digest: Digest) -> list[dict[str, Any]]:
        """Always ``NotStored``: referrers are listed by the serving path (and its upstream)."""
        raise NotStored(f"referrers of {host}/{repo}@{digest}")

    def _target(self, host: str, repo: str, what: str) -> Target:
        try:
            return self.router.resolve(repo, host)
        except RegistryError:
            raise NotStored(what) from None

    def _digest_of(self, target: Target, reference: str, what: str) -> Digest:
        if is_digest(reference):
            try:
                return Digest.parse(reference)
            except RegistryError:
                raise NotStored(what) from None
        if not TAG_PATTERN.fullmatch(reference):
            raise NotStored(what)
        tag = self.metadata.tag(target.upstream, target.repo, reference)
        if tag is None or self.clock.now() - tag.fetched_at >= self.tag_ttl:
            raise NotStored(what)
        return Digest.parse(tag.digest)
