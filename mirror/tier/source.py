"""A blob source for one upstream on a tier replica: the owner first, upstream when it cannot.

A replica that owns a digest reads it from upstream. One that does not asks the owner (which
fills from upstream once for the whole tier); when the owner is down, misconfigured or
answers 5xx, this replica stands in for it and goes upstream itself, and passes the owner
over for a while (:class:`~mirror.tier.placement.Placement`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mirror.errors import UpstreamUnavailable
from mirror.oci.digest import Digest
from mirror.tier.peer import PeerClient, PeerUnavailable, peer_url
from mirror.tier.placement import Placement
from mirror.upstream.client import UpstreamBlob, UpstreamClient
from mirror.upstream.endpoint import UpstreamEndpoint

log = logging.getLogger(__name__)


class TierSource:
    """Blobs of upstream ``key``: from their owner replica, else from ``upstream``."""

    def __init__(
        self, key: str, upstream: UpstreamClient, placement: Placement, peers: PeerClient
    ) -> None:
        self._key = key
        self._upstream = upstream
        self._placement = placement
        self._peers = peers

    @property
    def endpoint(self) -> UpstreamEndpoint:
        """The upstream's endpoint: fills stay shared per upstream and digest."""
        return self._upstream.endpoint

    def _failed(self, exc: PeerUnavailable) -> None:
        log.warning("owner %s cannot serve (%s); reading from upstream", exc.server, exc.reason)
        self._placement.mark_down(exc.server)

    async def head_blob(self, repo: str, digest: Digest | str) -> int:
        """The size: from the owner, else upstream."""
        owner = self._placement.peer_for(digest)
        if owner is not None:
            url = peer_url(self._placement.url(owner), self._key, repo, digest)
            try:
                return await self._peers.head_blob(owner, url)
            except PeerUnavailable as exc:
                self._failed(exc)
        return await self._upstream.head_blob(repo, digest)

    @asynccontextmanager
    async def open_blob(
        self, repo: str, digest: Digest | str, offset: int = 0, *, length: int | None = None
    ) -> AsyncIterator[UpstreamBlob]:
        """The blob from ``offset``: from the owner, else upstream. A transfer from the owner
        that breaks raises ``UpstreamUnavailable`` (the fill resumes, from upstream if the
        owner is gone by then)."""
        owner = self._placement.peer_for(digest) if length is None else None
        if owner is not None:
            url = peer_url(self._placement.url(owner), self._key, repo, digest)
            try:
                async with self._peers.open_blob(owner, url, offset) as blob:
                    yield blob
                return
            except PeerUnavailable as exc:
                self._failed(exc)
            except UpstreamUnavailable:
                self._placement.mark_down(owner)
                raise
        async with self._upstream.open_blob(repo, digest, offset, length=length) as blob:
            yield blob
