"""Reading a blob from the replica that owns it, over the owner's internal route.

``GET /_tier/blobs/<digest>?upstream=<key>&repo=<repo>``, signed (see
:mod:`mirror.tier.signing`). The owner serves it from its cache or its own fill, so the
tier fetches each digest from upstream once. Failures that mean "the owner cannot help"
(no connection, a timeout, a 5xx, a refused signature) raise :class:`PeerUnavailable`, and
the caller goes upstream itself; a ``BLOB_UNKNOWN`` from the owner is upstream's answer.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from yarl import URL

from mirror.errors import ErrorCode, RegistryError
from mirror.oci.digest import Digest
from mirror.tier.signing import HEADER, PeerSigner
from mirror.upstream.client import UpstreamBlob

PEER_PATH = "/_tier/blobs/{digest}"
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


class PeerUnavailable(Exception):
    """The owner could not serve the blob; read it from upstream instead."""

    def __init__(self, server: str, reason: str) -> None:
        self.server = server
        self.reason = reason
        super().__init__(f"peer {server}: {reason}")


def peer_url(base: URL, upstream: str, repo: str, digest: Digest | str) -> URL:
    """The owner's internal URL of blob ``digest`` of ``repo`` at upstream ``upstream``."""
    path = PEER_PATH.format(digest=digest)
    return base.with_path(path).with_query({"upstream": upstream, "repo": repo})


class PeerClient:
    """Asks other replicas for blobs over one session; ``sender`` is this replica's server."""

    def __init__(self, session: aiohttp.ClientSession, signer: PeerSigner, sender: str) -> None:
        self._session = session
        self._signer = signer
        self._sender = sender

    def _headers(self, method: str, url: URL) -> dict[str, str]:
        return {HEADER: self._signer.sign(method, url.raw_path_qs, self._sender)}

    async def head_blob(self, server: str, url: URL) -> int:
        """The blob's size as the owner knows it (from its cache, fill or upstream)."""
        try:
            async with self._session.head(url, headers=self._headers("HEAD", url)) as resp:
                _check(server, resp)
                if resp.content_length is None:
                    raise PeerUnavailable(server, "HEAD without Content-Length")
                return resp.content_length
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PeerUnavailable(server, repr(exc)) from exc

    @asynccontextmanager
    async def open_blob(self, server: str, url: URL, offset: int) -> AsyncIterator[UpstreamBlob]:
        """The blob from ``offset`` as the owner streams it (verified by the caller)."""
        headers = self._headers("GET", url)
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            resp = await self._session.get(url, headers=headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PeerUnavailable(server, repr(exc)) from exc
        try:
            _check(server, resp)
            yield UpstreamBlob(resp, size=_size(server, resp, offset), offset=offset, skip=0)
        except BaseException:
            resp.close()
            raise
        resp.release()


def _check(server: str, resp: aiohttp.ClientResponse) -> None:
    """Raise unless the owner answered with the blob."""
    if resp.status == 404:
        raise RegistryError(ErrorCode.BLOB_UNKNOWN, detail={"owner": server})
    if resp.status not in (200, 206):
        raise PeerUnavailable(server, f"answered {resp.status}")


def _size(server: str, resp: aiohttp.ClientResponse, offset: int) -> int:
    """The whole blob's size from an answer to a request from ``offset``."""
    if resp.status == 206:
        match = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", "").strip())
        if match is None or int(match.group(1)) != offset:
            raise PeerUnavailable(server, "unexpected Content-Range")
        return int(match.group(3))
    if offset or resp.content_length is None:
        raise PeerUnavailable(server, "no usable size in the answer")
    return resp.content_length
