"""A blob source for one upstream on a tier replica: the owner first, upstream when it cannot.

A replica that owns a digest reads it from upstream. One that does not asks the owner (which
fills from upstream once for the whole tier). An owner that is down is passed over for a
while (:class:`~mirror.tier.placement.Placement`) and the next replica on the digest's walk
is asked instead, the one nginx moves the owner's requests to; when that is this replica, it
goes upstream itself.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mirror.errors import UpstreamUnavailable
from mirror.oci.digest import Digest
from mirror.tier.peer import PeerBlob, PeerClient, PeerUnavailable, peer_url
from mirror.tier.placement import Placement
from mirror.upstream.client import UpstreamBlob, UpstreamClient
from mirror.upstream.endpoint import UpstreamEndpoint

log = logging.getLogger(__name__)


class TierSource:
    """Blobs of upstream ``key``: from the replica that serves them, else from ``upstream``."""

    def __init__(
        self,
        key: str,
        upstream: UpstreamClient,
        placement: Placement,
        peers: PeerClient,
    ) -> None:
        self._key = key
        self._upstream = upstream
        self._placement = placement
        self._peers = peers

    @property
    def endpoint(self) -> UpstreamEndpoint:
        """The upstream's endpoint: fills stay shared per upstream and digest."""
        return self._upstream.endpoint

    def _failed(self, exc: PeerUnavailable, tried: list[str]) -> None:
        log.warning("replica %s cannot serve (%s); trying the next", exc.server, exc.reason)
        if exc.down:
            self._placement.mark_down(exc.server)
        tried.append(exc.server)

    async def head_blob(self, repo: str, digest: Digest | str) -> int:
        """The size: from the replica that serves the digest, else upstream."""
        tried: list[str] = []
        while (peer := self._placement.peer_for(digest, tried)) is not None:
            skip = self._placement.passed_over(digest, peer)
            url = peer_url(self._placement.url(peer), self._key, repo, digest, skip)
            try:
                return await self._peers.head_blob(peer, url)
            except PeerUnavailable as exc:
                self._failed(exc, tried)
        return await self._upstream.head_blob(repo, digest)

    async def _from_peer(self, repo: str, digest: Digest | str, offset: int) -> PeerBlob | None:
        tried: list[str] = []
        while (peer := self._placement.peer_for(digest, tried)) is not None:
            skip = self._placement.passed_over(digest, peer)
            url = peer_url(self._placement.url(peer), self._key, repo, digest, skip)
            try:
                blob = await self._peers.open_blob(peer, url, offset)
            except PeerUnavailable as exc:
                self._failed(exc, tried)
            else:
                return blob
        return None

    @asynccontextmanager
    async def open_blob(
        self, repo: str, digest: Digest | str, offset: int = 0, *, length: int | None = None
    ) -> AsyncIterator[UpstreamBlob]:
        """The blob from ``offset``: from the replica that serves it, else upstream. A
        transfer from a peer that breaks raises ``UpstreamUnavailable`` (the fill resumes,
        from the next replica or upstream, as the peer is passed over by then)."""
        peer_blob = await self._from_peer(repo, digest, offset) if length is None else None
        if peer_blob is None:
            async with self._upstream.open_blob(repo, digest, offset, length=length) as blob:
                yield blob
            return
        try:
            yield peer_blob
        except UpstreamUnavailable:
            self._placement.mark_down(peer_blob.server)
            peer_blob.close()
            raise
        except BaseException:
            peer_blob.close()
            raise
        peer_blob.release()
