"""Where a blob fill reads from: an upstream client, or anything that answers like one."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol

from mirror.oci.digest import Digest
from mirror.upstream.client import UpstreamBlob
from mirror.upstream.endpoint import UpstreamEndpoint


class BlobSource(Protocol):
    """The part of :class:`~mirror.upstream.client.UpstreamClient` a blob fill uses (a tier's
    replicas read a blob they do not own from its owner through one of these)."""

    @property
    def endpoint(self) -> UpstreamEndpoint:
        """The upstream the blobs come from (fills are shared per endpoint and digest)."""
        ...

    async def head_blob(self, repo: str, digest: Digest | str) -> int:
        """The size of a blob; 404 → ``BLOB_UNKNOWN``."""
        ...

    def open_blob(
        self, repo: str, digest: Digest | str, offset: int = 0, *, length: int | None = None
    ) -> AbstractAsyncContextManager[UpstreamBlob]:
        """Stream a blob from ``offset``; 404 → ``BLOB_UNKNOWN``, a broken transfer
        ``UpstreamUnavailable``."""
        ...
