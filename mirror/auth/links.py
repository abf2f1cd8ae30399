"""The authorisation-aware cache: content is served through a repository only when that
repository is known to reference it.

A repository's links grow as its manifests are served (the manifest and everything it
references). Content asked for through a repository without a link must first be confirmed
by the repository's own upstream, with its own credentials (a ``HEAD`` in that repository):
knowing a digest is not access, and a blob cached for one tenancy is never handed to another
just because it is on disk.
"""

from __future__ import annotations

from typing import Protocol

from mirror.db.roles import Links, Manifests
from mirror.errors import ErrorCode, RegistryError
from mirror.oci.digest import Digest
from mirror.oci.media import MANIFEST_TYPES
from mirror.upstream.pool import UpstreamPool
from mirror.upstream.routing import Target


class LinkRecords(Links, Manifests, Protocol):
    """The metadata links are proven from: the links, and what cached manifests reference."""


class LinkGuard:
    """Proves that a target repository references a digest before it is served."""

    def __init__(self, metadata: LinkRecords, upstreams: UpstreamPool) -> None:
        self._metadata = metadata
        self._upstreams = upstreams

    async def prove_blob(self, target: Target, digest: Digest) -> None:
        """Return when ``target`` references blob ``digest``, else raise ``BLOB_UNKNOWN``."""
        if self._metadata.linked(target.upstream, target.repo, digest):
            return
        client = self._upstreams.get(target.upstream)
        try:
            await client.head_blob(target.repo, digest)
        except RegistryError as exc:
            raise self._unknown(exc, ErrorCode.BLOB_UNKNOWN, digest) from None
        self._metadata.link(target.upstream, target.repo, [digest])

    async def prove_manifest(self, target: Target, digest: Digest) -> None:
        """Return when ``target`` references manifest ``digest``, else ``MANIFEST_UNKNOWN``."""
        if self._metadata.linked(target.upstream, target.repo, digest):
            return
        client = self._upstreams.get(target.upstream)
        try:
            head = await client.head_manifest(target.repo, str(digest), MANIFEST_TYPES)
        except RegistryError as exc:
            raise self._unknown(exc, ErrorCode.MANIFEST_UNKNOWN, digest) from None
        if head.digest is not None and head.digest != digest:
            raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, detail={"digest": str(digest)})
        self._metadata.link(target.upstream, target.repo, [digest])

    def record_manifest(self, target: Target, digest: Digest) -> None:
        """``target`` served manifest ``digest``: link it and everything it references."""
        record = self._metadata.manifest(digest)
        references = record.referenced() if record is not None else ()
        self._metadata.link(target.upstream, target.repo, [digest, *references])

    @staticmethod
    def _unknown(exc: RegistryError, code: ErrorCode, digest: Digest) -> RegistryError:
        # The upstream refusing (401/403) or not knowing (404) the digest in this repository
        # both mean: not here. Outages and throttling pass through as they are.
        if exc.status in (401, 403, 404):
            return RegistryError(code, detail={"digest": str(digest)})
        return exc
