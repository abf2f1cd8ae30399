"""The upstream registry client: the pull side of the distribution API, one upstream each.

``repo`` is always the upstream-side repository name (``library/alpine``). Failures raise the
errors of ``mirror.errors`` as described on :class:`~mirror.upstream.transport.Transport`.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, cast

import aiohttp
from yarl import URL

from mirror.clock import Clock, SystemClock
from mirror.errors import ErrorCode, RegistryError, UpstreamUnavailable
from mirror.oci.digest import Digest
from mirror.upstream.addresses import RuleHosts
from mirror.upstream.authenticator import Authenticator, OnResponse
from mirror.upstream.body import AHEAD, regrouped, taken_over
from mirror.upstream.breaker import CircuitBreaker
from mirror.upstream.endpoint import UpstreamEndpoint
from mirror.upstream.limits import Lane, Limiter, LimitObserver
from mirror.upstream.status import connection_failure, read_capped
from mirror.upstream.transport import RetryPolicy, Sleep, Transport

# distribution-spec "Pulling manifests": registries SHOULD accept at least 4 MiB manifests.
MANIFEST_LIMIT = 4 * 1024 * 1024
TAGS_LIMIT = 16 * 1024 * 1024
DEFAULT_CHUNK_SIZE = 64 * 1024
REFERRERS_HEADERS = ("OCI-Filters-Applied", "Link")
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


@dataclass(frozen=True, slots=True)
class ManifestHead:
    """What a manifest HEAD told us; ``digest`` is None when the upstream sent no valid one."""

    digest: Digest | None
    media_type: str | None
    size: int | None


@dataclass(frozen=True, slots=True)
class UpstreamManifest:
    """A manifest as fetched: the exact bytes, and the upstream's (unverified) digest claim."""

    body: bytes
    media_type: str | None
    digest: Digest | None


class UpstreamBlob:
    """An open blob download starting at ``offset``; ``size`` is the whole blob's size."""

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        *,
        size: int | None,
        offset: int,
        skip: int,
        transport: Transport | None,
    ) -> None:
        self.size = size
        self.offset = offset
        self._response = response
        self._skip = skip
        self._transport = transport

    async def pieces(self, first: int, largest: int) -> AsyncIterator[bytes]:
        """The body from ``offset`` on in whole pieces: ``first`` bytes, then each twice the
        one before up to ``largest`` (the last one shorter). A large body is received straight
        into its pieces (:mod:`mirror.upstream.body`) and its connection closed at the end; a
        broken or stalled transfer raises UpstreamUnavailable."""
        direct = None if self._skip else taken_over(self._response, first, largest, AHEAD)
        if direct is None:
            async for piece in regrouped(self.iter_chunks(largest), first, largest):
                yield piece
            return
        try:
            async for received in direct:
                if self._transport is not None:
                    await self._transport.transferred(len(received))
                # A bytearray that nothing changes once yielded: it passes wherever bytes do
                # (hash, seal, send, join), and converting it would be the copy saved.
                yield cast(bytes, received)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamUnavailable(
                f"upstream blob transfer failed: {connection_failure(exc)}",
                detail={"upstream_step": "blob transfer"},
            ) from exc
        finally:
            await direct.aclose()
            self._response.close()  # the connection was taken over: never pooled again

    async def iter_chunks(self, chunk_size: int = DEFAULT_CHUNK_SIZE) -> AsyncIterator[bytes]:
        """The body from ``offset`` on; a broken or stalled transfer raises UpstreamUnavailable."""
        try:
            async for chunk in self._response.content.iter_chunked(chunk_size):
                if self._transport is not None:  # None: not an upstream's body (a peer's)
                    await self._transport.transferred(len(chunk))
                if self._skip:
                    dropped = min(self._skip, len(chunk))
                    self._skip -= dropped
                    chunk = chunk[dropped:]
                    if not chunk:
                        continue
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamUnavailable(
                f"upstream blob transfer failed: {connection_failure(exc)}",
                detail={"upstream_step": "blob transfer"},
            ) from exc


def _digest_header(resp: aiohttp.ClientResponse) -> Digest | None:
    value = resp.headers.get("Docker-Content-Digest")
    if not value:
        return None
    try:
        return Digest.parse(value.strip())
    except RegistryError:
        return None


def _media_type(resp: aiohttp.ClientResponse) -> str | None:
    value = resp.headers.get("Content-Type", "").split(";", 1)[0].strip()
    return value or None


def _blob_window(resp: aiohttp.ClientResponse, offset: int) -> tuple[int | None, int]:
    """(total size, bytes to skip) for a blob answer to a request from ``offset``."""
    length = resp.content_length
    if resp.status != 206:
        if length is not None and offset > length:
            raise RegistryError(ErrorCode.RANGE_INVALID, detail={"offset": offset, "size": length})
        return length, offset  # the upstream ignored Range: skip to the offset ourselves
    match = _CONTENT_RANGE.match(resp.headers.get("Content-Range", "").strip())
    if match is None or int(match.group(1)) != offset:
        raise UpstreamUnavailable(
            "upstream answered 206 with an unexpected Content-Range",
            detail={"content_range": resp.headers.get("Content-Range"), "offset": offset},
        )
    total = match.group(3)
    return (int(total) if total != "*" else int(match.group(2)) + 1), 0


class UpstreamClient:
    """Pulls manifests, blobs, tags and referrers from one upstream over one pooled session.

    Use as ``async with UpstreamClient(endpoint) as client`` or call :meth:`start` and
    :meth:`close`. ``clock`` drives token expiry and the circuit breaker's cooldown, ``sleep``
    the retry backoff; ``on_response`` is called with (method, status) for every upstream
    response, status 0 for no response. ``guard`` (clients of tenancies' rules) refuses
    connections to internal addresses that the rule-host allow-list does not name.
    ``offline`` (``cache.offline``) makes every call raise ``MirrorOffline`` (a 404) with no
    connection ever opened: see :mod:`mirror.upstream.offline`. ``endpoint.limits`` caps
    connections, requests and bandwidth (:mod:`mirror.upstream.limits`), blob bodies in their
    own lane; ``observer`` is told of every wait.
    """

    def __init__(
        self,
        endpoint: UpstreamEndpoint,
        *,
        clock: Clock | None = None,
        sleep: Sleep = asyncio.sleep,
        on_response: OnResponse | None = None,
        policy: RetryPolicy | None = None,
        max_connections: int = 64,
        guard: RuleHosts | None = None,
        offline: bool = False,
        observer: LimitObserver | None = None,
    ) -> None:
        self.endpoint = endpoint
        clock = clock or SystemClock()
        limiter = Limiter(endpoint.limits, clock, sleep, observer) if endpoint.limits.any else None
        authenticator = Authenticator(
            endpoint.username,
            endpoint.password,
            clock=clock,
            on_response=on_response,
            upstream=endpoint.base_url,
        )
        self._transport = Transport(
            endpoint,
            authenticator,
            policy=policy or RetryPolicy(),
            sleep=sleep,
            on_response=on_response,
            max_connections=max_connections,
            breaker=CircuitBreaker(
                endpoint.host,
                threshold=endpoint.breaker_threshold,
                cooldown=endpoint.breaker_cooldown,
                clock=clock,
            ),
            guard=guard,
            offline=offline,
            limiter=limiter,
        )

    @property
    def offline(self) -> bool:
        """Whether this client refuses every upstream request (offline mode)."""
        return self._transport.offline

    async def probe(self, within: float) -> str | None:
        """Why the upstream's ``GET /v2/`` got no answer within ``within`` s (one line), or None."""
        return await self._transport.probe(within)

    async def start(self) -> None:
        """Open the session (idempotent)."""
        await self._transport.start()

    async def close(self) -> None:
        """Close the session."""
        await self._transport.close()

    @property
    def is_open(self) -> bool:
        """Whether the session is open (started and not closed since)."""
        return self._transport.is_open

    async def __aenter__(self) -> UpstreamClient:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _url(self, repo: str, *parts: str, query: dict[str, str] | None = None) -> URL:
        """The URL of ``/v2/<repo>/<parts>``; to a chained mirror it names the registry
        (``ns``) first, as containerd does."""
        url = self._transport.url("/v2/" + "/".join((repo, *parts)))
        forwarded = {"ns": self.endpoint.host} if self.endpoint.forward_ns else {}
        merged = forwarded | (query or {})
        return url.with_query(merged) if merged else url

    async def _send(
        self,
        method: str,
        url: URL,
        repo: str,
        unknown: ErrorCode,
        lane: Lane = Lane.METADATA,
        **headers: str,
    ) -> aiohttp.ClientResponse:
        return await self._transport.send(
            method,
            url,
            scope=f"repository:{repo}:pull",
            unknown=unknown,
            headers=headers,
            lane=lane,
        )

    async def _head(
        self, url: URL, repo: str, unknown: ErrorCode, **headers: str
    ) -> aiohttp.ClientResponse:
        """A HEAD's (released) response, sent on a metadata connection slot."""
        async with self._transport.connection(Lane.METADATA):
            resp = await self._send("HEAD", url, repo, unknown, Lane.METADATA, **headers)
            resp.release()
        return resp

    async def head_manifest(self, repo: str, reference: str, accept: Sequence[str]) -> ManifestHead:
        """HEAD a manifest by tag or digest. 404 → ``MANIFEST_UNKNOWN`` (or upstream's code)."""
        url = self._url(repo, "manifests", reference)
        resp = await self._head(url, repo, ErrorCode.MANIFEST_UNKNOWN, Accept=", ".join(accept))
        return ManifestHead(_digest_header(resp), _media_type(resp), resp.content_length)

    async def get_manifest(
        self, repo: str, reference: str, accept: Sequence[str]
    ) -> UpstreamManifest:
        """GET a manifest; more than 4 MiB raises ``MANIFEST_INVALID``."""
        url = self._url(repo, "manifests", reference)
        too_big = RegistryError(
            ErrorCode.MANIFEST_INVALID,
            "manifest exceeds the 4 MiB limit",
            detail={"reference": reference, "limit": MANIFEST_LIMIT},
        )
        async with self._transport.connection(Lane.METADATA):
            resp = await self._send(
                "GET", url, repo, ErrorCode.MANIFEST_UNKNOWN, Accept=", ".join(accept)
            )
            body = await self._read(resp, MANIFEST_LIMIT, "manifest", too_big)
        return UpstreamManifest(body, _media_type(resp), _digest_header(resp))

    async def head_blob(self, repo: str, digest: Digest | str) -> int:
        """The size of a blob. 404 → ``BLOB_UNKNOWN``."""
        resp = await self._head(self._url(repo, "blobs", str(digest)), repo, ErrorCode.BLOB_UNKNOWN)
        if resp.content_length is None:
            raise UpstreamUnavailable(
                "upstream blob HEAD has no Content-Length", detail={"digest": str(digest)}
            )
        return resp.content_length

    @asynccontextmanager
    async def open_blob(
        self, repo: str, digest: Digest | str, offset: int = 0, *, length: int | None = None
    ) -> AsyncIterator[UpstreamBlob]:
        """Stream a blob from ``offset``, following redirects; the connection is released on exit.

        Sends ``Range: bytes=offset-`` for a nonzero offset (``bytes=offset-end`` with a
        ``length``) and copes with an upstream that ignores it (200: the first ``offset`` bytes
        are skipped here; the caller stops reading after ``length``). 404 → ``BLOB_UNKNOWN``.
        """
        if offset < 0 or (length is not None and length < 1):
            raise ValueError("offset must be >= 0 and length >= 1")
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        if length is not None:
            headers = {"Range": f"bytes={offset}-{offset + length - 1}"}
        url = self._url(repo, "blobs", str(digest))
        async with self._transport.connection(Lane.BLOB):
            resp = await self._send("GET", url, repo, ErrorCode.BLOB_UNKNOWN, Lane.BLOB, **headers)
            try:
                size, skip = _blob_window(resp, offset)
                yield UpstreamBlob(
                    resp, size=size, offset=offset, skip=skip, transport=self._transport
                )
            except BaseException:
                resp.close()  # never hand a half-read connection back to the pool
                raise
            resp.release()

    async def get_tags(
        self, repo: str, n: int | None = None, last: str | None = None
    ) -> tuple[dict[str, Any], str | None]:
        """The tag list page and its ``Link`` header. 404 → ``NAME_UNKNOWN``."""
        query = {key: str(value) for key, value in (("n", n), ("last", last)) if value is not None}
        url = self._url(repo, "tags", "list", query=query)
        async with self._transport.connection(Lane.METADATA):
            resp = await self._send(
                "GET", url, repo, ErrorCode.NAME_UNKNOWN, Accept="application/json"
            )
            body = await self._read(resp, TAGS_LIMIT, "tag list")
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            document = None
        if not isinstance(document, dict):
            raise UpstreamUnavailable("upstream tag list is not a JSON object")
        return document, resp.headers.get("Link")

    async def get_referrers(
        self, repo: str, digest: Digest | str, artifact_type: str | None = None
    ) -> tuple[bytes, str | None, dict[str, str]]:
        """The referrers index bytes, its media type, and the pass-through headers
        (``OCI-Filters-Applied``, ``Link``). 404 → ``MANIFEST_UNKNOWN`` (or upstream's code):
        a registry without the referrers API answers 404 too.
        """
        query = {"artifactType": artifact_type} if artifact_type is not None else None
        url = self._url(repo, "referrers", str(digest), query=query)
        async with self._transport.connection(Lane.METADATA):
            resp = await self._send(
                "GET",
                url,
                repo,
                ErrorCode.MANIFEST_UNKNOWN,
                Accept="application/vnd.oci.image.index.v1+json",
            )
            body = await self._read(resp, MANIFEST_LIMIT, "referrers index")
        passed = {name: resp.headers[name] for name in REFERRERS_HEADERS if name in resp.headers}
        return body, _media_type(resp), passed

    async def _read(
        self,
        resp: aiohttp.ClientResponse,
        limit: int,
        what: str,
        too_big: RegistryError | None = None,
    ) -> bytes:
        """The whole body (at most ``limit`` bytes), releasing the connection either way."""
        try:
            body = await read_capped(resp, limit)
        except (aiohttp.ClientError, TimeoutError) as exc:
            resp.close()
            raise UpstreamUnavailable(
                f"upstream {what} transfer failed: {connection_failure(exc)}",
                detail={"upstream_step": f"{what} transfer"},
            ) from exc
        if body is None:
            resp.close()
            raise too_big or UpstreamUnavailable(f"upstream {what} exceeds {limit} bytes")
        resp.release()
        return body
