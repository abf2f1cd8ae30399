"""Warm plaintext blobs go out with the kernel's ``sendfile``: whole blobs and ranges byte-exact,
also to a client that reads slowly (the socket fills and the send waits for room)."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import uvloop

from mirror.web.registry.sendfile import send_file_range, socket_fd

from .conftest import Mirror, MirrorFactory
from .fake_upstream import FakeUpstream

pytestmark = pytest.mark.integration

FAKE_HOST = "fake.test"
SIZE = 3 * 1024 * 1024 + 17


@pytest.fixture
async def fake() -> FakeUpstream:
    return FakeUpstream()


@pytest.fixture
async def plaintext(
    mirror_factory: MirrorFactory, aiohttp_server: Any, fake: FakeUpstream
) -> Mirror:
    """A mirror with encryption off (plaintext cache files) in front of the fake upstream."""
    server = await aiohttp_server(fake.app(), host="127.0.0.1")
    return await mirror_factory(
        {FAKE_HOST: f"http://127.0.0.1:{server.port}"}, encryption={"enabled": False}
    )


async def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        return resp.status, await resp.read()


@pytest.mark.parametrize(
    "first, last",
    [
        pytest.param(None, None, id="whole-blob"),
        pytest.param(0, 0, id="first-byte"),
        pytest.param(1_000_000, 2_500_000, id="middle"),
        pytest.param(SIZE - 5, SIZE - 1, id="tail"),
    ],
)
async def test_a_warm_plaintext_blob_is_sent_byte_exact(
    plaintext: Mirror, fake: FakeUpstream, first: int | None, last: int | None
) -> None:
    data = os.urandom(SIZE)
    digest = fake.add_blob(data)
    url = f"{plaintext.url}/v2/team/app/blobs/{digest}"
    assert await get(url) == (200, data)  # cold: fills the cache
    assert len(plaintext.cached_blob_files()) == 1

    if first is None or last is None:
        assert await get(url) == (200, data)
    else:
        status, body = await get(url, {"Range": f"bytes={first}-{last}"})
        assert (status, body) == (206, data[first : last + 1])
    expected = last + 1 - first if first is not None and last is not None else SIZE
    # The route counts what the kernel accepted once each sendfile call returns to the loop,
    # which may be just after the client has read the last byte: wait for it, boundedly.
    for _ in range(100):
        if plaintext.metric("mirror_bytes_served_from_cache_total") >= expected:
            break
        await asyncio.sleep(0.05)
    assert plaintext.metric("mirror_bytes_served_from_cache_total") >= expected


async def _slow_reader_scenario(path: Path, data: bytes) -> tuple[int, bytes]:
    """Send ``data[100:]`` from ``path`` to a client that reads slowly; (sent, received)."""
    received = bytearray()
    done = asyncio.Event()

    async def slow_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(256 * 1024):
            received.extend(chunk)
            await asyncio.sleep(0.001)
        writer.close()
        done.set()

    server = await asyncio.start_server(slow_client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
    transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    fd = socket_fd(transport)
    assert fd is not None
    file_fd = os.open(path, os.O_RDONLY)
    try:
        sent = await send_file_range(transport, fd, file_fd, 100, len(data) - 100)
    finally:
        os.close(file_fd)
    transport.close()
    async with asyncio.timeout(10):
        await done.wait()
    server.close()
    return sent, bytes(received)


@pytest.mark.parametrize("run", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])
def test_sendfile_waits_for_a_slow_reader_and_sends_every_byte(
    tmp_path: Path, run: Callable[[Coroutine[Any, Any, tuple[int, bytes]]], tuple[int, bytes]]
) -> None:
    # uvloop (what `mirror serve` runs) has no loop.sendfile: the route's own path must work.
    data = os.urandom(8 * 1024 * 1024)
    path = tmp_path / "blob"
    path.write_bytes(data)

    sent, received = run(_slow_reader_scenario(path, data))

    assert sent == len(data) - 100
    assert received == data[100:]
