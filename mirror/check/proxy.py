"""The counting, switchable proxy that ``mirror check`` puts between a mirror and its origin:
an aiohttp app on loopback that forwards every request to the origin, counts requests by
method and path, and can be switched to answer 503 (down), corrupt one blob's bytes, stream
slowly, or hold requests until a test lets them through."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from mirror.testing.loopback import loopback_socket, serve_on_loopback

HOP_HEADERS = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "host", "content-length"}
)
CHUNK = 64 * 1024


@dataclass
class ProxyMode:
    """What the proxy does now: ``down`` answers 503 to everything; a blob whose digest is in
    ``corrupt`` has its bytes flipped (same length); ``slow`` seconds pass between chunks;
    ``hold``, given the method and path, is awaited before a request is forwarded (a gate)."""

    down: bool = False
    corrupt: set[str] = field(default_factory=set)
    slow: float = 0.0
    hold: Callable[[str, str], Awaitable[None]] | None = None


class CountingProxy:
    """Forwards to ``origin`` and counts ``(method, path)`` of every request it receives,
    and the client connections open at once (``peak_connections``: kept-alive idle ones too)
    and requests in flight at once (``peak_in_flight``)."""

    def __init__(self, origin: str, *, timeout: float = 30.0) -> None:
        self.origin = origin.rstrip("/")
        self.mode = ProxyMode()
        self.counts: Counter[tuple[str, str]] = Counter()
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._http: aiohttp.ClientSession | None = None
        self._connections: set[asyncio.BaseTransport] = set()
        self.peak_connections = 0
        self.in_flight = 0
        self.peak_in_flight = 0

    def count(self, method: str, path_contains: str) -> int:
        """How many ``method`` requests whose path contains ``path_contains`` arrived."""
        return sum(
            n for (m, path), n in self.counts.items() if m == method and path_contains in path
        )

    def reset(self) -> None:
        """Forget the counts and go back to forwarding faithfully."""
        self.counts.clear()
        self.mode = ProxyMode()
        self.peak_connections = self.peak_in_flight = 0

    def app(self) -> web.Application:
        """The proxy as an aiohttp application (one catch-all route)."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        return app

    @asynccontextmanager
    async def serve(self, port: int = 0) -> AsyncIterator[str]:
        """Listen on 127.0.0.1 (``port``, or a free one) while the context lasts; yields the
        proxy's base URL."""
        async with aiohttp.ClientSession(timeout=self._timeout, auto_decompress=False) as http:
            self._http = http
            try:
                async with serve_on_loopback(self.app(), loopback_socket(port)) as url:
                    yield url
            finally:
                self._http = None

    def _opened(self, request: web.Request) -> None:
        """Note the request's connection; count the distinct ones still open."""
        if request.transport is not None:
            self._connections.add(request.transport)
        self._connections = {t for t in self._connections if not t.is_closing()}
        self.peak_connections = max(self.peak_connections, len(self._connections))

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        self.counts[(request.method, request.path)] += 1
        self._opened(request)
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            return await self._relay(request)
        finally:
            self.in_flight -= 1

    async def _relay(self, request: web.Request) -> web.StreamResponse:
        if self.mode.down:
            return web.json_response({"errors": [{"code": "UNAVAILABLE"}]}, status=503)
        assert self._http is not None
        if self.mode.hold is not None:
            await self.mode.hold(request.method, request.path)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        body = await request.read()
        async with self._http.request(
            request.method,
            self.origin + request.path_qs,
            headers=headers,
            data=body or None,
            allow_redirects=False,
        ) as upstream:
            out = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_HEADERS}
            response = web.StreamResponse(status=upstream.status, headers=out)
            if upstream.content_length is not None:
                response.content_length = upstream.content_length
            await response.prepare(request)
            corrupt = any(digest in request.path for digest in self.mode.corrupt)
            try:
                async for chunk in upstream.content.iter_chunked(CHUNK):
                    if self.mode.slow:
                        await asyncio.sleep(self.mode.slow)
                    await response.write(bytes(b ^ 0xFF for b in chunk) if corrupt else chunk)
                await response.write_eof()
            except ConnectionResetError:  # the mirror hung up: nothing more to send
                pass
            return response
