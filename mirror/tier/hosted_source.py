"""The blob source of hosted repositories on a tier replica: the other replicas' copies.

A hosted blob missing from this replica's disk (it was pushed through another replica, or
this one was replaced) is read from a replica on the digest's walk that holds it, never from
an upstream: a hosted repository has none.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mirror.errors import ErrorCode, RegistryError
from mirror.oci.digest import Digest
from mirror.tier.hosted import HostedCopies
from mirror.upstream.client import UpstreamBlob
from mirror.upstream.endpoint import UpstreamEndpoint

# Fills of hosted blobs are shared per digest under this one endpoint (it is never dialled).
HOSTED_ENDPOINT = UpstreamEndpoint(host="hosted", url="http://hosted.invalid")


class HostedSource:
    """Hosted blobs, read from the replicas that hold copies."""

    def __init__(self, copies: HostedCopies) -> None:
        self._copies = copies

    @property
    def endpoint(self) -> UpstreamEndpoint:
        """The one endpoint every hosted fill is keyed by."""
        return HOSTED_ENDPOINT

    async def head_blob(self, repo: str, digest: Digest | str) -> int:
        """The size held by a replica on the walk; ``BLOB_UNKNOWN`` if none holds it."""
        size = await self._copies.size_anywhere(Digest.parse(str(digest)))
        if size is None:
            raise RegistryError(ErrorCode.BLOB_UNKNOWN, detail={"digest": str(digest)})
        return size

    @asynccontextmanager
    async def open_blob(
        self, repo: str, digest: Digest | str, offset: int = 0, *, length: int | None = None
    ) -> AsyncIterator[UpstreamBlob]:
        """The blob from ``offset`` as a replica holding it streams it (the fill verifies)."""
        blob = await self._copies.open_copy(Digest.parse(str(digest)), offset)
        try:
            yield blob
        except BaseException:
            blob.close()
            raise
        blob.release()
