"""A client that hangs up as soon as it has what it wanted still gets its access line and its
served bytes: a warm blob sent on the socket itself (sendfile, the sealed send) and read to its
end, one cut short mid-body (the bytes the kernel took, outcome ``client_gone``), and a handler
aiohttp cancels on the hang-up (``handler_cancellation``), which aiohttp itself never logs.

The client is a raw socket: it sends the request, reads the head and the body (or part of it)
and closes at once, with a FIN or a reset, with no second request to wait on."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from mirror.app.build import build_app
from mirror.config import load_config
from mirror.metrics import Metrics
from mirror.web.accesslog import AccessLogger

from .fake_upstream import FakeUpstream

pytestmark = pytest.mark.integration

FAKE_HOST = "fake.test"
BLOB_ROUTE = "/v2/{name}/blobs/{digest}"
SERVED = "mirror_bytes_served_from_cache_total"


class Records(logging.Handler):
    """The access lines' fields and texts, as logged."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: list[dict[str, Any]] = []
        self.lines: list[str] = []
        self.logged = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "access" in record.__dict__:
            self.fields.append(record.__dict__["access"])
            self.lines.append(record.getMessage())
            self.logged.set()


@dataclass
class Served:
    """A mirror on a real port with its access lines and metrics."""

    port: int
    records: Records
    metrics: Metrics
    fake: FakeUpstream
    runner: web.AppRunner

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels or None) or 0.0

    def blob_lines(self) -> list[dict[str, Any]]:
        return [f for f in self.records.fields if "/blobs/" in f["path"]]

    async def lines_for(self, count: int) -> list[dict[str, Any]]:
        """The blob access lines once there are ``count`` (the server writes a line once its
        handler returns, which may be just after the client read the last byte), boundedly."""
        async with asyncio.timeout(10):
            while len(self.blob_lines()) < count:
                self.records.logged.clear()
                await self.records.logged.wait()
        return self.blob_lines()


@pytest.fixture
async def runners() -> AsyncIterator[list[web.AppRunner]]:
    """Runners a test started, cleaned up after it."""
    started: list[web.AppRunner] = []
    yield started
    for runner in started:
        await runner.cleanup()


async def serve(
    runners: list[web.AppRunner],
    aiohttp_server: Any,
    tmp_path: Path,
    *,
    encrypted: bool,
    handler_cancellation: bool = False,
    shutdown_timeout: float = 60.0,
) -> Served:
    """A mirror in front of a fake upstream, on a runner as ``mirror serve`` makes it
    (aiohttp's test server always cancels handlers on a hang-up: here that is a choice)."""
    fake = FakeUpstream()
    upstream = await aiohttp_server(fake.app(), host="127.0.0.1")
    config = load_config(
        overrides={
            "storage": {"data_dir": str(tmp_path / "data")},
            "encryption": {"kek_file": str(tmp_path / "kek"), "enabled": encrypted},
            "upstreams": [{"host": FAKE_HOST, "url": f"http://127.0.0.1:{upstream.port}"}],
            "default_upstream": FAKE_HOST,
        },
        environ={},
    )
    logger = logging.getLogger(f"test.hangup.{tmp_path.name}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    records = Records()
    logger.addHandler(records)
    metrics = Metrics()
    runner = web.AppRunner(
        build_app(config, metrics=metrics),
        access_log=logger,
        access_log_class=AccessLogger,
        handler_cancellation=handler_cancellation,
        shutdown_timeout=shutdown_timeout,
    )
    await runner.setup()
    runners.append(runner)
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return Served(port, records, metrics, fake, runner)


async def hang_up_get(port: int, path: str, *, read: int | None = None, reset: bool) -> bytes:
    """GET ``path`` on a fresh connection, read the head and ``read`` body bytes (all of them
    by default), then close at once (a reset with ``reset``); the body bytes read."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # A small window: the kernel cannot take a large body on the reader's behalf.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0].split()[1] == "200", head
    length = next(
        int(v) for k, _, v in (h.partition(":") for h in lines) if k.lower() == "content-length"
    )
    body = await reader.readexactly(length if read is None else read)
    if reset:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()
    return body


async def warm(served: Served, data: bytes) -> str:
    """The blob's path once it is in the cache (pulled once, read in full)."""
    path = f"/v2/team/app/blobs/{served.fake.add_blob(data)}"
    assert await hang_up_get(served.port, path, reset=False) == data
    assert len(await served.lines_for(1)) == 1
    return path


ENCRYPTION = [pytest.param(True, id="sealed-send"), pytest.param(False, id="sendfile")]
CLOSE = [pytest.param(False, id="fin"), pytest.param(True, id="reset")]
# aiohttp's handler_cancellation: off as `mirror serve` runs, on as aiohttp's test server does.
CANCELLING = [pytest.param(False, id="handler-runs-on"), pytest.param(True, id="handler-cancelled")]


@pytest.mark.parametrize("cancelling", CANCELLING)
@pytest.mark.parametrize("size", [1000, 300_000], ids=["small", "300k"])
@pytest.mark.parametrize("reset", CLOSE)
@pytest.mark.parametrize("encrypted", ENCRYPTION)
async def test_a_body_read_in_full_then_hung_up_on_is_logged_and_counted(
    runners: list[web.AppRunner],
    aiohttp_server: Any,
    tmp_path: Path,
    encrypted: bool,
    reset: bool,
    size: int,
    cancelling: bool,
) -> None:
    served = await serve(
        runners, aiohttp_server, tmp_path, encrypted=encrypted, handler_cancellation=cancelling
    )
    data = os.urandom(size)
    path = await warm(served, data)
    before = served.metric(SERVED)
    answered = served.metric(
        "mirror_http_requests_total", route=BLOB_ROUTE, method="GET", status="200"
    )

    for _ in range(5):
        assert await hang_up_get(served.port, path, reset=reset) == data

    lines = (await served.lines_for(6))[1:]
    assert [(f["status"], f["bytes"], f["outcome"]) for f in lines] == [(200, size, "complete")] * 5
    assert served.metric(SERVED) - before == 5 * size
    after = served.metric(
        "mirror_http_requests_total", route=BLOB_ROUTE, method="GET", status="200"
    )
    assert after - answered == 5


SIZE_LARGE = 24 * 1024 * 1024
READ = 1024 * 1024


@pytest.mark.parametrize("encrypted", ENCRYPTION)
async def test_a_body_cut_short_logs_the_bytes_really_sent_and_that_the_client_went_away(
    runners: list[web.AppRunner], aiohttp_server: Any, tmp_path: Path, encrypted: bool
) -> None:
    served = await serve(runners, aiohttp_server, tmp_path, encrypted=encrypted)
    data = os.urandom(SIZE_LARGE)
    path = await warm(served, data)
    before = served.metric(SERVED)

    got = await hang_up_get(served.port, path, read=READ, reset=True)
    assert got == data[:READ]

    (line,) = (await served.lines_for(2))[1:]
    # What the kernel took: at least what the client read, short of the whole blob (its
    # window and the server's send buffer hold a few MiB at most).
    assert READ <= line["bytes"] < SIZE_LARGE
    assert (line["status"], line["outcome"]) == (200, "client_gone")
    assert served.metric(SERVED) - before == line["bytes"]
    assert served.records.lines[-1].endswith(" client_gone")
    assert served.metric("mirror_client_disconnects_total", route=BLOB_ROUTE) == 1


@pytest.mark.parametrize("cancelling", CANCELLING)
async def test_a_cold_body_streamed_while_it_fills_and_cut_short_logs_the_bytes_sent(
    runners: list[web.AppRunner], aiohttp_server: Any, tmp_path: Path, cancelling: bool
) -> None:
    # A cold blob goes out through aiohttp's writer, which counts a body only once its end is
    # written: the handler keeps its own count, less what the transport still held.
    served = await serve(
        runners, aiohttp_server, tmp_path, encrypted=True, handler_cancellation=cancelling
    )
    data = os.urandom(SIZE_LARGE)
    path = f"/v2/team/app/blobs/{served.fake.add_blob(data)}"

    got = await hang_up_get(served.port, path, read=READ, reset=True)
    assert got == data[:READ]

    (line,) = await served.lines_for(1)
    assert READ <= line["bytes"] < SIZE_LARGE
    assert (line["status"], line["outcome"]) == (200, "client_gone")
    assert served.records.lines[-1].endswith(" client_gone")
    # The fill went on without its client: the next pull is warm and whole.
    assert await hang_up_get(served.port, path, reset=False) == data


@pytest.mark.parametrize("encrypted", ENCRYPTION)
async def test_a_handler_cancelled_by_the_hang_up_still_gets_its_line_and_its_count(
    runners: list[web.AppRunner], aiohttp_server: Any, tmp_path: Path, encrypted: bool
) -> None:
    # aiohttp's handler_cancellation cancels the handler when its client goes away; aiohttp
    # then writes no access line for it, so the mirror does.
    served = await serve(
        runners, aiohttp_server, tmp_path, encrypted=encrypted, handler_cancellation=True
    )
    data = os.urandom(SIZE_LARGE)
    path = await warm(served, data)
    before = served.metric(SERVED)

    got = await hang_up_get(served.port, path, read=READ, reset=True)
    assert got == data[:READ]

    (line,) = (await served.lines_for(2))[1:]
    assert READ <= line["bytes"] < SIZE_LARGE
    assert (line["status"], line["outcome"]) == (200, "client_gone")
    assert served.metric(SERVED) - before == line["bytes"]
    counted = served.metric(
        "mirror_http_requests_total", route=BLOB_ROUTE, method="GET", status="200"
    )
    assert counted == 2


async def test_a_download_cut_by_the_server_stopping_is_logged_as_cancelled(
    runners: list[web.AppRunner], aiohttp_server: Any, tmp_path: Path
) -> None:
    # A stop waits shutdown_timeout for requests in flight, then cancels their handlers.
    served = await serve(runners, aiohttp_server, tmp_path, encrypted=True, shutdown_timeout=0.5)
    data = os.urandom(SIZE_LARGE)
    path = await warm(served, data)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", served.port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await reader.readuntil(b"\r\n\r\n")  # headers out; the client then stalls

    runners.remove(served.runner)
    await served.runner.cleanup()
    writer.close()

    (line,) = (await served.lines_for(2))[1:]
    assert (line["status"], line["outcome"]) == (200, "cancelled")
    assert 0 < line["bytes"] < SIZE_LARGE
    assert served.records.lines[-1].endswith(" cancelled")
