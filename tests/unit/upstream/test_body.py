"""A large blob body is received straight into whole pieces, on asyncio's loop and uvloop alike:
exactly the announced bytes, in pieces growing from the first size to the largest; an upstream
that sends fewer bytes than it announced, or stalls, fails the transfer (never a short blob);
bytes past the announced length are not part of the blob; the connection is never reused."""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import uvloop

from mirror.errors import DigestMismatch, UpstreamUnavailable
from mirror.oci.digest import Digest
from mirror.pullthrough.download import Download
from mirror.upstream import UpstreamClient, UpstreamEndpoint
from mirror.upstream.body import TAKEOVER_MIN
from tests.peers.tls import CertAuthority, make_test_ca

MiB = 1024 * 1024
BLOB = os.urandom(TAKEOVER_MIN + 3 * MiB + 12345)
DIGEST = Digest.of(BLOB)

Runner = Callable[[Coroutine[Any, Any, None]], None]
RUNNERS = [pytest.param(asyncio.run, id="asyncio"), pytest.param(uvloop.run, id="uvloop")]
# What a fake upstream does after its headers: writes the body it is given, then (maybe) stalls.
Behaviour = Callable[[asyncio.StreamWriter], Awaitable[None]]


class Connections:
    """The connections a fake upstream accepted, and an event set whenever none is open."""

    def __init__(self) -> None:
        self.accepted = 0
        self.open = 0
        self.none_open = asyncio.Event()

    def opened(self) -> None:
        self.accepted += 1
        self.open += 1
        self.none_open.clear()

    def ended(self) -> None:
        self.open -= 1
        if not self.open:
            self.none_open.set()


async def upstream(
    body: bytes,
    announced: int,
    *,
    then: Behaviour | None = None,
    tls: ssl.SSLContext | None = None,
) -> tuple[asyncio.Server, Connections]:
    """A one-route HTTP/1.1 server answering every GET with ``body`` under a Content-Length of
    ``announced``."""
    connections = Connections()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.opened()
        try:
            while (await reader.readuntil(b"\r\n\r\n")).startswith(b"GET"):
                head = f"HTTP/1.1 200 OK\r\nContent-Length: {announced}\r\n\r\n"
                writer.write(head.encode())
                for start in range(0, len(body), 256 * 1024):
                    writer.write(body[start : start + 256 * 1024])
                    await writer.drain()
                if then is not None:
                    await then(writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            connections.ended()
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls), connections


async def hang_up(writer: asyncio.StreamWriter) -> None:
    writer.close()
    await writer.wait_closed()


def client(
    server: asyncio.Server, read_timeout: float = 5.0, ca: CertAuthority | None = None
) -> UpstreamClient:
    port = server.sockets[0].getsockname()[1]
    endpoint = UpstreamEndpoint(
        host=f"127.0.0.1:{port}",
        url=f"{'https' if ca else 'http'}://127.0.0.1:{port}",
        read_timeout=read_timeout,
        ca_file=str(ca.ca_cert) if ca else None,
    )
    return UpstreamClient(endpoint)


async def pieces(upstream_client: UpstreamClient) -> list[bytes]:
    async with upstream_client.open_blob("a", DIGEST) as blob:
        return [bytes(piece) async for piece in blob.pieces(1 * MiB, 4 * MiB)]


@pytest.mark.parametrize("run", RUNNERS)
def test_a_large_body_arrives_whole_in_growing_pieces(run: Runner) -> None:
    async def main() -> None:
        server, connections = await upstream(BLOB, len(BLOB))
        async with server, client(server) as upstream_client:
            first = await pieces(upstream_client)
            second = await pieces(upstream_client)
        assert b"".join(first) == BLOB
        sizes = [len(piece) for piece in first]
        assert sizes[:4] == [1 * MiB, 2 * MiB, 4 * MiB, 4 * MiB]
        assert sum(sizes) == len(BLOB) and all(size > 0 for size in sizes)
        assert second == first
        # A taken-over connection is closed, never handed to the next request.
        assert connections.accepted == 2

    run(main())


@pytest.mark.parametrize("run", RUNNERS)
def test_a_large_body_over_tls_arrives_whole(run: Runner, tmp_path: Path) -> None:
    ca = make_test_ca(tmp_path)

    async def main() -> None:
        server, connections = await upstream(BLOB, len(BLOB), tls=ca.server_context())
        async with server, client(server, ca=ca) as upstream_client:
            assert b"".join(await pieces(upstream_client)) == BLOB
            await asyncio.wait_for(connections.none_open.wait(), 5)

    run(main())


@pytest.mark.parametrize("run", RUNNERS)
def test_a_body_shorter_than_announced_fails_the_transfer(run: Runner) -> None:
    async def main() -> None:
        server, _ = await upstream(BLOB[: TAKEOVER_MIN + MiB], len(BLOB), then=hang_up)
        async with server, client(server) as upstream_client:
            with pytest.raises(UpstreamUnavailable, match="broken off"):
                await pieces(upstream_client)

    run(main())


@pytest.mark.parametrize("run", RUNNERS)
def test_an_upstream_that_stalls_mid_body_times_out(run: Runner) -> None:
    async def stall(writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async def main() -> None:
        server, _ = await upstream(BLOB[: len(BLOB) // 2], len(BLOB), then=stall)
        async with server, client(server, read_timeout=0.3) as upstream_client:
            with pytest.raises(UpstreamUnavailable):
                await asyncio.wait_for(pieces(upstream_client), 3)

    run(main())


@pytest.mark.parametrize("run", RUNNERS)
def test_bytes_past_the_announced_length_are_not_the_blob(run: Runner) -> None:
    async def main() -> None:
        server, _ = await upstream(BLOB + b"trailing garbage", len(BLOB))
        async with server, client(server) as upstream_client:
            assert b"".join(await pieces(upstream_client)) == BLOB

    run(main())


@pytest.mark.parametrize("run", RUNNERS)
def test_a_download_of_wrong_bytes_of_the_right_size_never_verifies(run: Runner) -> None:
    async def main() -> None:
        lie = BLOB[:-1] + bytes([BLOB[-1] ^ 1])
        server, _ = await upstream(lie, len(lie))
        async with server, client(server) as upstream_client:
            download = Download(
                upstream_client, "a", DIGEST, chunk_size=MiB, piece_size=4 * MiB, resume_attempts=0
            )

            async def started(size: int) -> None:
                assert size == len(BLOB)

            got = []
            with pytest.raises(DigestMismatch):
                async for piece in download.chunks(started):
                    got.append(piece)
            # The stream raised instead of ending (a fill holds the last piece back for that).
            assert b"".join(got) == lie

    run(main())


@pytest.mark.parametrize("run", RUNNERS)
def test_a_reader_that_stops_early_closes_the_connection(run: Runner) -> None:
    async def main() -> None:
        server, connections = await upstream(BLOB, len(BLOB))
        async with server, client(server) as upstream_client:
            async with upstream_client.open_blob("a", DIGEST) as blob:
                async for piece in blob.pieces(1 * MiB, 4 * MiB):
                    assert bytes(piece) == BLOB[: len(piece)]
                    break
            # The upstream, blocked mid-body, sees the connection end.
            await asyncio.wait_for(connections.none_open.wait(), 5)

    run(main())
