"""``max_connections`` counts sockets, measured at the upstream: a real aiohttp upstream counts
the TCP connections it holds (its protocol's ``connection_made`` to ``connection_lost``) while
the client closes connections mid-body and opens new ones at once, revalidates tags, fetches
tokens, and meets connections the upstream closed after keep-alive."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web

from mirror.oci.digest import Digest
from mirror.upstream import UpstreamClient, UpstreamEndpoint
from mirror.upstream.limits import UpstreamLimits
from tests.peers.tls import CertAuthority, make_test_ca

BLOB = bytes(range(256)) * 4096 * 4  # 4 MiB: far more than one read, so a stop leaves a rest
BLOB_DIGEST = Digest.of(BLOB)
MANIFEST = b'{"schemaVersion":2}'
TOKEN = "t0ken"


class CountedProtocol(asyncio.Protocol):
    """The upstream's own protocol, with its connections counted on the way in and out."""

    def __init__(self, inner: asyncio.Protocol, held: HeldConnections) -> None:
        self.inner = inner
        self.held = held

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.held.made()
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.held.lost()
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class HeldConnections:
    """How many connections the upstream holds now, at most, and in all."""

    def __init__(self) -> None:
        self.now = self.peak = self.total = 0

    def made(self) -> None:
        self.now += 1
        self.total += 1
        self.peak = max(self.peak, self.now)

    def lost(self) -> None:
        self.now -= 1


async def blob(request: web.Request) -> web.StreamResponse:
    if request.headers.get("Authorization") != f"Bearer {TOKEN}":
        realm = f"{request.scheme}://{request.host}/token"
        challenge = f'Bearer realm="{realm}",service="test",scope="repository:r:pull"'
        return web.Response(status=401, headers={"WWW-Authenticate": challenge})
    return web.Response(body=BLOB)


async def manifest(request: web.Request) -> web.Response:
    headers = {"Content-Type": "application/json", "Docker-Content-Digest": "sha256:" + "a" * 64}
    return web.Response(body=MANIFEST, headers=headers)


async def token(request: web.Request) -> web.Response:
    return web.json_response({"token": TOKEN, "expires_in": 0})  # a fetch for every 401


@asynccontextmanager
async def counted_upstream(
    keepalive: float = 75.0, tls: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[str, HeldConnections]]:
    """An upstream on 127.0.0.1 (blobs behind a Bearer challenge, tags, its token realm on
    the same origin) and what it counts; it closes a connection idle for ``keepalive`` s and
    speaks TLS with ``tls``."""
    app = web.Application()
    app.router.add_get("/v2/r/blobs/{digest}", blob)
    app.router.add_route("*", "/v2/r/manifests/{reference}", manifest)
    app.router.add_get("/token", token)
    runner = web.AppRunner(app, keepalive_timeout=keepalive)
    await runner.setup()
    held = HeldConnections()
    loop = asyncio.get_running_loop()
    factory = runner.server
    assert factory is not None
    server = await loop.create_server(
        lambda: CountedProtocol(factory(), held), "127.0.0.1", 0, ssl=tls
    )
    try:
        port = server.sockets[0].getsockname()[1]
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}", held
    finally:
        server.close()
        await runner.cleanup()


def capped(url: str, cap: int, ca: CertAuthority | None = None) -> UpstreamClient:
    host = url.split("://", 1)[1]
    limits = UpstreamLimits(max_connections=cap)
    ca_file = str(ca.ca_cert) if ca else None
    return UpstreamClient(UpstreamEndpoint(host=host, url=url, limits=limits, ca_file=ca_file))


async def stop_mid_body(client: UpstreamClient) -> None:
    """Read a blob's first piece and leave: the client must close that connection."""
    async with client.open_blob("r", BLOB_DIGEST) as opened:
        async for _ in opened.iter_chunks(64 * 1024):
            break


async def whole_blob(client: UpstreamClient) -> None:
    async with client.open_blob("r", BLOB_DIGEST) as opened:
        assert sum([len(piece) async for piece in opened.iter_chunks()]) == len(BLOB)


async def tag_head(client: UpstreamClient) -> None:
    await client.head_manifest("r", "v1", ["application/json"])


Step = Callable[[UpstreamClient], Awaitable[None]]


async def repeat(times: int, step: Step, client: UpstreamClient) -> None:
    for _ in range(times):
        await step(client)


async def test_a_connection_closed_mid_body_is_gone_before_the_next_one_opens() -> None:
    async with counted_upstream() as (url, held), capped(url, 1) as client:
        await repeat(10, stop_mid_body, client)  # each a break, then a new GET at once
    assert held.total >= 10, "every stop mid-body closed its connection"
    assert held.peak == 1


async def test_tls_connections_closed_mid_body_stay_under_the_cap(tmp_path: Path) -> None:
    # A TLS transport waits for the upstream's close_notify before it closes its socket.
    ca = make_test_ca(tmp_path)
    async with (
        counted_upstream(tls=ca.server_context()) as (url, held),
        capped(url, 1, ca) as client,
    ):
        await repeat(5, stop_mid_body, client)
    assert held.total >= 5
    assert held.peak == 1


@pytest.mark.parametrize("cap", [2, 4], ids=["cap-2", "cap-4"])
async def test_breaks_fills_tag_heads_and_token_fetches_stay_under_the_cap(cap: int) -> None:
    async with counted_upstream() as (url, held), capped(url, cap) as client:
        await asyncio.gather(
            *(repeat(6, stop_mid_body, client) for _ in range(cap)),
            *(repeat(3, whole_blob, client) for _ in range(cap)),
            *(repeat(20, tag_head, client) for _ in range(cap)),
        )
    assert held.total > cap, "connections were closed and opened again"
    assert held.peak <= cap


async def test_connections_closed_by_the_upstream_after_keep_alive_are_replaced_within_cap() -> (
    None
):
    async with counted_upstream(keepalive=0.05) as (url, held), capped(url, 2) as client:
        for _ in range(4):
            await asyncio.gather(tag_head(client), whole_blob(client), tag_head(client))
            await asyncio.sleep(0.1)  # the upstream closes the idle ones
    assert held.total > 2
    assert held.peak <= 2
