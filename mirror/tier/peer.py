"""Reading a blob from the replica that owns it, over the owner's internal route.

``GET /_tier/blobs/<digest>?upstream=<key>&repo=<repo>``, signed (see
:mod:`mirror.tier.signing`). The owner serves it from its cache or its own fill, so the
tier fetches each digest from upstream once. Failures that mean "the owner cannot help"
(no connection, a timeout, a 5xx, a refused signature, a 421 from a replica whose view of
the tier differs) raise :class:`PeerUnavailable`, and the caller asks the next replica on the
walk or goes upstream itself; a ``BLOB_UNKNOWN`` from the owner is upstream's answer.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, Mapping, Sequence

import aiohttp
from yarl import URL

from mirror.errors import ErrorCode, RegistryError
from mirror.oci.digest import Digest
from mirror.tier.inventory import INVENTORY_PATH, PROOF_PATH, parse_inventory
from mirror.tier.signing import HEADER, PeerSigner
from mirror.upstream.client import UpstreamBlob
from mirror.upstream.status import connection_failure

PEER_PATH = "/_tier/blobs/{digest}"
# Hosted blobs (and manifest bodies) between replicas: read, stored (replication), held.
HOSTED_PATH = "/_tier/hosted/{digest}"
# The answer of a replica asked for a digest it does not serve in its view of the tier.
MISDIRECTED = 421
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


class PeerUnavailable(Exception):
    """The peer could not serve the blob: ask the next replica, or read it from upstream.
    ``down`` says whether the peer failed (and is passed over for a while) rather than
    declined (it does not serve this digest in its view of the tier)."""

    def __init__(self, server: str, reason: str, *, down: bool = True) -> None:
        self.server = server
        self.reason = reason
        self.down = down
        super().__init__(f"peer {server}: {reason}")


def peer_url(
    base: URL, upstream: str, repo: str, digest: Digest | str, skip: Sequence[str] = ()
) -> URL:
    """The peer's internal URL of blob ``digest`` of ``repo`` at upstream ``upstream``;
    ``skip`` names the replicas before it on the walk that the caller found down."""
    query = {"upstream": upstream, "repo": repo}
    if skip:
        query["skip"] = ",".join(skip)
    return base.with_path(PEER_PATH.format(digest=digest)).with_query(query)


def hosted_url(base: URL, digest: Digest | str, size: int | None = None) -> URL:
    """The peer's internal URL of hosted blob ``digest`` (``size``: of a copy sent to it)."""
    url = base.with_path(HOSTED_PATH.format(digest=digest))
    return url if size is None else url.with_query({"size": str(size)})


def inventory_url(base: URL) -> URL:
    """The peer's inventory of hosted copies."""
    return base.with_path(INVENTORY_PATH)


def proof_url(base: URL, digest: Digest | str, nonce: bytes) -> URL:
    """The peer's content proof of ``digest`` for ``nonce``."""
    return base.with_path(PROOF_PATH.format(digest=digest)).with_query({"nonce": nonce.hex()})


class PeerBlob(UpstreamBlob):
    """A blob streaming from peer ``server``; its holder releases or closes the response."""

    def __init__(self, server: str, response: aiohttp.ClientResponse, size: int, offset: int):
        # A peer's body is not an upstream's: no per-upstream bandwidth limit applies.
        super().__init__(response, size=size, offset=offset, skip=0, transport=None)
        self.server = server
        self._peer_response = response

    def release(self) -> None:
        """Hand the (fully read) connection back to the pool."""
        self._peer_response.release()

    def close(self) -> None:
        """Drop the connection (the body was not read to its end)."""
        self._peer_response.close()


class PeerClient:
    """Asks other replicas for blobs over one session; ``sender`` is this replica's server."""

    def __init__(self, session: aiohttp.ClientSession, signer: PeerSigner, sender: str) -> None:
        self._session = session
        self._signer = signer
        self._sender = sender

    def _headers(self, method: str, url: URL) -> dict[str, str]:
        return {HEADER: self._signer.sign(method, url.raw_path_qs, self._sender)}

    async def head_blob(self, server: str, url: URL) -> int:
        """The blob's size as the peer knows it (from its cache, fill or upstream)."""
        try:
            async with self._session.head(url, headers=self._headers("HEAD", url)) as resp:
                _check(server, resp)
                if resp.content_length is None:
                    raise PeerUnavailable(server, "HEAD without Content-Length")
                return resp.content_length
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PeerUnavailable(server, connection_failure(exc)) from exc

    async def open_blob(self, server: str, url: URL, offset: int) -> PeerBlob:
        """The blob from ``offset`` as the peer streams it (the caller verifies it, and
        releases the blob's response)."""
        headers = self._headers("GET", url)
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            resp = await self._session.get(url, headers=headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PeerUnavailable(server, connection_failure(exc)) from exc
        try:
            _check(server, resp)
            return PeerBlob(server, resp, _size(server, resp, offset), offset)
        except BaseException:
            resp.close()
            raise

    async def holds(self, server: str, url: URL) -> int | None:
        """The size of the hosted blob the peer holds on its own disk; ``None`` if it does
        not hold it."""
        try:
            async with self._session.head(url, headers=self._headers("HEAD", url)) as resp:
                if resp.status == 404:
                    return None
                _check(server, resp)
                if resp.content_length is None:
                    raise PeerUnavailable(server, "HEAD without Content-Length")
                return resp.content_length
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PeerUnavailable(server, connection_failure(exc)) from exc

    async def store(self, server: str, url: URL, chunks: AsyncIterable[bytes]) -> None:
        """Send a copy of a hosted blob for the peer to keep (it verifies the digest and size
        named by ``url`` before it keeps it)."""
        try:
            async with self._session.put(
                url, data=chunks, headers=self._headers("PUT", url)
            ) as resp:
                if resp.status not in (200, 201):
                    raise PeerUnavailable(server, f"refused the copy: {resp.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PeerUnavailable(server, connection_failure(exc)) from exc

    async def send(
        self,
        server: str,
        method: str,
        url: URL,
        body: AsyncIterable[bytes] | None,
        headers: Mapping[str, str],
    ) -> aiohttp.ClientResponse:
        """A signed request to the peer (an upload session's request it holds); the caller
        reads and releases the response."""
        try:
            return await self._session.request(
                method, url, data=body, headers={**headers, **self._headers(method, url)}
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PeerUnavailable(server, connection_failure(exc)) from exc

    async def inventory(self, server: str, url: URL) -> set[str]:
        """The hosted digests the peer holds on its own disk (its inventory, streamed)."""
        try:
            async with self._session.get(url, headers=self._headers("GET", url)) as resp:
                if resp.status != 200:
                    raise PeerUnavailable(server, f"inventory answered {resp.status}")
                return await parse_inventory(resp.content)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PeerUnavailable(server, connection_failure(exc)) from exc
        except (RegistryError, UnicodeDecodeError) as exc:
            raise PeerUnavailable(server, f"malformed inventory: {exc}") from exc

    async def proof(self, server: str, url: URL) -> str | None:
        """The peer's content proof of a blob for the nonce in ``url``; ``None`` when it
        does not hold the blob."""
        try:
            async with self._session.get(url, headers=self._headers("GET", url)) as resp:
                if resp.status == 404:
                    return None
                if resp.status != 200:
                    raise PeerUnavailable(server, f"proof answered {resp.status}")
                return (await resp.text()).strip()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PeerUnavailable(server, connection_failure(exc)) from exc


def _check(server: str, resp: aiohttp.ClientResponse) -> None:
    """Raise unless the peer answered with the blob."""
    if resp.status == 404:
        raise RegistryError(ErrorCode.BLOB_UNKNOWN, detail={"owner": server})
    if resp.status == MISDIRECTED:
        raise PeerUnavailable(server, "does not serve this digest", down=False)
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
