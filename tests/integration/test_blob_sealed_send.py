"""Warm encrypted blobs go out from the route's own buffers (``send_sealed_range``): whole blobs
and ranges byte-exact across chunk and piece boundaries, a chunk that fails its tag is never
sent (the connection is cut before its first byte), a client that leaves mid-body frees the
sender, and a TLS listener falls back to the streamed path."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import ssl
import threading
import tracemalloc
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mirror.app.build import build_app
from mirror.blobstore.encrypted import EncryptedBlobStore
from mirror.blobstore.keyring import CacheKeys
from mirror.blobstore.piece_budget import LARGEST_PIECE, PieceBudget
from mirror.blobstore.sealed import ChunkReader
from mirror.config import load_config
from mirror.crypto.envelope import AES_256_GCM, HEADER_SIZE, TAG_SIZE
from mirror.crypto.sources import KeyFile
from mirror.errors import CorruptObject
from mirror.oci.digest import Digest
from mirror.pullthrough.blobs import SealedSpan
from mirror.web.accesslog import AccessLogger
from mirror.web.registry.sealed_send import pieces, send_sealed_range
from mirror.web.registry.sendfile import socket_fd
from tests.peers.tls import CertAuthority, make_test_ca

from .conftest import Mirror, MirrorFactory
from .fake_upstream import FakeUpstream

pytestmark = pytest.mark.integration

FAKE_HOST = "fake.test"
CHUNK = 64 * 1024  # the sealed chunk size of these mirrors and stores
PIECE = LARGEST_PIECE  # the pieces of a send alone
SIZE = 2 * PIECE + 1024 * 1024 + 17  # three pieces, the last one short


@pytest.fixture
async def fake() -> FakeUpstream:
    return FakeUpstream()


async def encrypted_mirror(
    mirror_factory: MirrorFactory, aiohttp_server: Any, fake: FakeUpstream, **options: Any
) -> Mirror:
    server = await aiohttp_server(fake.app(), host="127.0.0.1")
    return await mirror_factory(
        {FAKE_HOST: f"http://127.0.0.1:{server.port}"}, encryption={"chunk_size": CHUNK}, **options
    )


async def get(
    url: str, headers: dict[str, str] | None = None, ssl_context: ssl.SSLContext | None = None
) -> tuple[int, bytes]:
    connector = aiohttp.TCPConnector(ssl=ssl_context) if ssl_context else None
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        http.get(url, headers=headers) as resp,
    ):
        return resp.status, await resp.read()


RANGES = [
    pytest.param(None, None, id="whole-blob"),
    pytest.param(0, 0, id="first-byte"),
    pytest.param(CHUNK - 3, CHUNK + 2, id="across-a-chunk-boundary"),
    pytest.param(PIECE - 10, 2 * PIECE + 9, id="across-two-piece-boundaries"),
    pytest.param(CHUNK + 1, 3 * CHUNK - 1, id="partial-first-and-last-chunk"),
    pytest.param(SIZE - 5, SIZE - 1, id="tail"),
]


@pytest.mark.parametrize("first, last", RANGES)
async def test_a_warm_encrypted_blob_is_sent_byte_exact(
    mirror_factory: MirrorFactory,
    aiohttp_server: Any,
    fake: FakeUpstream,
    first: int | None,
    last: int | None,
) -> None:
    mirror = await encrypted_mirror(mirror_factory, aiohttp_server, fake)
    data = os.urandom(SIZE)
    digest = fake.add_blob(data)
    url = f"{mirror.url}/v2/team/app/blobs/{digest}"
    assert await get(url) == (200, data)  # cold: fills the cache
    before = mirror.metric("mirror_bytes_served_from_cache_total")

    if first is None or last is None:
        assert await get(url) == (200, data)
        expected = SIZE
    else:
        status, body = await get(url, {"Range": f"bytes={first}-{last}"})
        assert (status, body) == (206, data[first : last + 1])
        expected = last + 1 - first
    # Counted once each piece is handed to the kernel, which may be after the client read it.
    for _ in range(100):
        if mirror.metric("mirror_bytes_served_from_cache_total") - before >= expected:
            break
        await asyncio.sleep(0.05)
    assert mirror.metric("mirror_bytes_served_from_cache_total") - before == expected


async def test_one_kept_alive_connection_carries_warm_bodies_one_after_another(
    mirror_factory: MirrorFactory, aiohttp_server: Any, fake: FakeUpstream
) -> None:
    # The route writes the body past aiohttp: the next response on the connection must still
    # start exactly where this one ended.
    mirror = await encrypted_mirror(mirror_factory, aiohttp_server, fake)
    data, small = os.urandom(SIZE), os.urandom(1000)
    url = f"{mirror.url}/v2/team/app/blobs/{fake.add_blob(data)}"
    small_url = f"{mirror.url}/v2/team/app/blobs/{fake.add_blob(small)}"
    assert await get(url) == (200, data)
    assert await get(small_url) == (200, small)
    created: list[int] = []

    async def on_create(*_args: Any) -> None:
        created.append(1)

    tracing = aiohttp.TraceConfig()
    tracing.on_connection_create_end.append(on_create)
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector, trace_configs=[tracing]) as http:
        for headers, expected in [
            (None, data),
            ({"Range": f"bytes={PIECE - 1}-{PIECE}"}, data[PIECE - 1 : PIECE + 1]),
            (None, small),
            (None, data),
        ]:
            target = small_url if expected is small else url
            async with http.get(target, headers=headers) as resp:
                assert await resp.read() == expected
    assert created == [1]  # one connection, kept alive throughout


def tamper(path: Path, chunk: int) -> int:
    """Flip a byte inside sealed chunk ``chunk`` of the file; the plaintext offset it starts at."""
    where = HEADER_SIZE + chunk * (CHUNK + TAG_SIZE) + 100
    with path.open("r+b") as f:
        f.seek(where)
        byte = f.read(1)
        f.seek(where)
        f.write(bytes([byte[0] ^ 0xFF]))
    return chunk * CHUNK


async def test_a_tampered_chunk_cuts_the_response_before_any_of_its_bytes(
    mirror_factory: MirrorFactory, aiohttp_server: Any, fake: FakeUpstream
) -> None:
    mirror = await encrypted_mirror(mirror_factory, aiohttp_server, fake)
    data = os.urandom(SIZE)
    digest = fake.add_blob(data)
    url = f"{mirror.url}/v2/team/app/blobs/{digest}"
    assert await get(url) == (200, data)
    (path,) = mirror.cached_blob_files()
    bad_at = tamper(path, PIECE // CHUNK + 8)  # in the second piece

    received = bytearray()
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200  # the header chunk was fine: headers went out
        with pytest.raises(aiohttp.ClientPayloadError):
            async for piece in resp.content.iter_any():
                received.extend(piece)

    assert len(received) <= bad_at  # not one byte of the bad chunk (nor after it)
    assert bytes(received) == data[: len(received)]
    assert not path.exists()  # evicted: the next pull refetches it
    assert await get(url) == (200, data)


async def test_a_tls_listener_sends_encrypted_blobs_through_the_stream(
    mirror_factory: MirrorFactory, aiohttp_server: Any, fake: FakeUpstream, tmp_path: Path
) -> None:
    # A socket-level write would bypass TLS: the route must fall back to the streamed path.
    ca: CertAuthority = make_test_ca(tmp_path / "ca")
    mirror = await encrypted_mirror(mirror_factory, aiohttp_server, fake, ssl=ca.server_context())
    assert mirror.url.startswith("https://")
    client_tls = ssl.create_default_context(cafile=str(ca.ca_cert))
    data = os.urandom(SIZE)
    digest = fake.add_blob(data)
    url = f"{mirror.url}/v2/team/app/blobs/{digest}"
    assert await get(url, ssl_context=client_tls) == (200, data)

    assert await get(url, ssl_context=client_tls) == (200, data)
    first, last = PIECE - 10, 2 * PIECE + 9
    range_header = {"Range": f"bytes={first}-{last}"}
    assert await get(url, range_header, client_tls) == (206, data[first : last + 1])


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.fields: list[dict[str, Any]] = []
        self.logged = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.fields.append(record.__dict__["access"])
        self.logged.set()

    async def blob_lines(self, count: int) -> list[dict[str, Any]]:
        """The blob requests' fields once ``count`` were logged (a line is written once the
        handler returned, or was cancelled by the hang-up: just after the client's last byte)."""
        async with asyncio.timeout(10):
            while len(blobs := [f for f in self.fields if "/blobs/" in f["path"]]) < count:
                self.logged.clear()
                await self.logged.wait()
        return blobs


@pytest.mark.parametrize("encrypted", [True, False], ids=["encryption-on", "encryption-off"])
async def test_the_access_log_counts_a_warm_body_sent_on_the_socket(
    aiohttp_server: Any, fake: FakeUpstream, tmp_path: Path, encrypted: bool
) -> None:
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
    logger = logging.getLogger(f"test.access.{encrypted}")
    logger.setLevel(logging.INFO)
    records = Records()
    logger.addHandler(records)
    server = await aiohttp_server(
        build_app(config), host="127.0.0.1", access_log=logger, access_log_class=AccessLogger
    )
    data = os.urandom(SIZE)
    url = f"http://127.0.0.1:{server.port}/v2/team/app/blobs/{fake.add_blob(data)}"
    assert await get(url) == (200, data)  # cold
    assert await get(url) == (200, data)  # warm: past aiohttp's writer
    assert await get(url, {"Range": "bytes=10-99"}) == (206, data[10:100])

    blobs = await records.blob_lines(3)
    assert [(f["bytes"], f["outcome"]) for f in blobs] == [
        (SIZE, "complete"),
        (SIZE, "complete"),
        (90, "complete"),
    ]


# send_sealed_range on its own, against a client socket this test controls -----------------


async def open_reader(tmp_path: Path, data: bytes) -> tuple[EncryptedBlobStore, ChunkReader]:
    root = tmp_path / "cache"
    keys = CacheKeys.open(KeyFile(tmp_path / "kek"), root, random_bytes=os.urandom, now=0.0)
    store = EncryptedBlobStore(root, keys, cipher=AES_256_GCM, chunk_size=CHUNK)
    digest = Digest.of(data)
    await store.put(digest, data)
    opened = await store.open(digest)
    assert opened is not None
    reader = opened[0]
    assert isinstance(reader, ChunkReader)
    return store, reader


class Client:
    """A TCP client of a connection whose server side the test drives: it reads slowly, or
    hangs up after ``stop_after`` bytes."""

    def __init__(self, stop_after: int | None = None, *, pause: float = 0.001) -> None:
        self.received = bytearray()
        self.started = asyncio.Event()
        self.done = asyncio.Event()
        self.started = asyncio.Event()  # set once the first bytes of the body arrived
        self.stop_after = stop_after
        self.pause = pause

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.pause > 0.001:
            # A slow reader with a small window: the kernel cannot take the whole body on its
            # behalf, so the sender is still mid-body when the test acts.
            sock = writer.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        while chunk := await reader.read(256 * 1024 if self.pause <= 0.001 else 64 * 1024):
            self.received.extend(chunk)
            self.started.set()
            if self.stop_after is not None and len(self.received) >= self.stop_after:
                writer.transport.abort()  # a reset, as a cancelled pull does
                break
            await asyncio.sleep(self.pause)
        writer.close()
        self.done.set()


async def connect(client: Client) -> tuple[asyncio.Server, asyncio.Transport, int]:
    """A server transport (what the route holds) connected to ``client``, its socket's send
    buffer small so the sender waits for room."""
    server = await asyncio.start_server(client.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
    transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    fd = socket_fd(transport)
    assert fd is not None
    return server, transport, fd


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_pieces_are_cut_at_multiples_of_the_step() -> None:
    assert list(pieces(5, 25, 10)) == [(5, 10), (10, 20), (20, 25)]
    assert list(pieces(10, 20, 10)) == [(10, 20)]
    assert list(pieces(7, 7, 10)) == []


async def test_a_slow_client_gets_the_head_and_every_byte_of_the_range(tmp_path: Path) -> None:
    data = os.urandom(SIZE)
    _, reader = await open_reader(tmp_path, data)
    client = Client()
    server, transport, fd = await connect(client)
    counted: list[int] = []
    first, head = 100, data[100:300]
    span = SealedSpan(head, reader, 300, SIZE - 1 - 300, counted.append)
    try:
        sent = await send_sealed_range(transport, fd, span)
    finally:
        await reader.close()
    transport.close()
    async with asyncio.timeout(10):
        await client.done.wait()
    server.close()

    assert sent == sum(counted) == SIZE - 1 - first
    assert bytes(client.received) == data[first : SIZE - 1]


@pytest.mark.parametrize("depth", [1, 2, 3], ids=["depth-1", "depth-2", "depth-3"])
@pytest.mark.parametrize("bad_piece", [0, 1, 2], ids=["first-piece", "second", "third"])
async def test_a_chunk_failing_its_tag_is_never_sent(
    tmp_path: Path, depth: int, bad_piece: int
) -> None:
    # With depth > 1 the bad piece fails while an earlier one is still being written: the
    # earlier ones (verified) go out in order, not one byte of the bad one nor after it.
    data = os.urandom(SIZE)
    store, reader = await open_reader(tmp_path, data)
    bad_chunk = bad_piece * (PIECE // CHUNK) + 5
    bad_at = tamper(store.path(Digest.of(data)), bad_chunk)
    client = Client(pause=0.002)
    server, transport, fd = await connect(client)
    span = SealedSpan(b"", reader, 0, SIZE, lambda _n: None)
    try:
        with pytest.raises(CorruptObject, match=f"chunk {bad_chunk}"):
            await send_sealed_range(transport, fd, span, depth)
    finally:
        await reader.close()
    transport.abort()  # what the route does on CorruptObject
    async with asyncio.timeout(10):
        await client.done.wait()
    server.close()

    assert len(client.received) == bad_piece * PIECE <= bad_at
    assert bytes(client.received) == data[: bad_piece * PIECE]
    assert store.pieces.taken == 0  # the send's buffers went back to the budget


@pytest.mark.parametrize("depth", [1, 2, 3], ids=["depth-1", "depth-2", "depth-3"])
@pytest.mark.parametrize(
    "first, length",
    [
        pytest.param(0, SIZE, id="whole"),
        pytest.param(CHUNK - 1, SIZE - CHUNK, id="mid-chunk-to-one-before-the-end"),
        pytest.param(PIECE - 7, PIECE + 14, id="across-two-piece-boundaries"),
        pytest.param(SIZE - 3, 3, id="tail"),
    ],
)
async def test_every_depth_sends_the_range_byte_exact_and_in_order(
    tmp_path: Path, depth: int, first: int, length: int
) -> None:
    data = os.urandom(SIZE)
    store, reader = await open_reader(tmp_path, data)
    client = Client()
    server, transport, fd = await connect(client)
    counted: list[int] = []
    try:
        sent = await send_sealed_range(
            transport, fd, SealedSpan(b"", reader, first, length, counted.append), depth
        )
    finally:
        await reader.close()
    transport.close()
    async with asyncio.timeout(10):
        await client.done.wait()
    server.close()

    assert sent == sum(counted) == length
    assert bytes(client.received) == data[first : first + length]
    assert store.pieces.taken == 0


async def test_a_client_leaving_mid_body_frees_the_sender(tmp_path: Path) -> None:
    data = os.urandom(SIZE)
    _, reader = await open_reader(tmp_path, data)
    fds = open_fds()
    client = Client(stop_after=1024 * 1024)
    server, transport, fd = await connect(client)
    span = SealedSpan(b"", reader, 0, SIZE, lambda _n: None)
    async with asyncio.timeout(10):
        with pytest.raises(ConnectionResetError):
            await send_sealed_range(transport, fd, span)
    assert transport.is_closing()  # aborted: the connection is not reused
    await reader.close()
    await client.done.wait()
    server.close()
    await server.wait_closed()
    await asyncio.sleep(0)

    # The sender's duplicate descriptor is closed; the pool thread is free for the next job.
    assert open_fds() <= fds
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(2):
        assert await loop.run_in_executor(None, sum, [1, 2]) == 3


async def test_a_cancelled_send_waits_for_its_threads_and_closes_its_descriptor(
    tmp_path: Path,
) -> None:
    data = os.urandom(SIZE)
    _, reader = await open_reader(tmp_path, data)
    fds = open_fds()
    client = Client(stop_after=None, pause=0.01)
    server, transport, fd = await connect(client)
    span = SealedSpan(b"", reader, 0, SIZE, lambda _n: None)
    task = asyncio.ensure_future(send_sealed_range(transport, fd, span))
    async with asyncio.timeout(30):  # mid-body: the slow client has read part of it
        await client.started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    transport.abort()
    await reader.close()
    async with asyncio.timeout(10):
        await client.done.wait()
    server.close()
    await server.wait_closed()
    await asyncio.sleep(0)

    assert 0 < len(client.received) < SIZE
    assert bytes(client.received) == data[: len(client.received)]
    assert open_fds() <= fds


class CountingExecutor(ThreadPoolExecutor):
    """A real thread pool that knows how many of its jobs are running or queued."""

    def __init__(self) -> None:
        super().__init__(max_workers=4)
        self.lock = threading.Lock()
        self.in_flight = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self.lock:
            self.in_flight += 1

        def run() -> Any:
            try:
                return fn(*args, **kwargs)
            finally:
                with self.lock:
                    self.in_flight -= 1

        return super().submit(run)


async def test_a_cancelled_send_returns_only_once_its_thread_jobs_are_done(
    tmp_path: Path,
) -> None:
    # A decryption still running in a thread would write into a buffer (and read a file
    # descriptor) the caller frees as soon as the cancellation reaches it.
    pool = CountingExecutor()
    asyncio.get_running_loop().set_default_executor(pool)
    data = os.urandom(SIZE)
    _, reader = await open_reader(tmp_path, data)
    for attempt in range(20):
        client = Client(pause=0.01)
        server, transport, fd = await connect(client)
        span = SealedSpan(b"", reader, 0, SIZE, lambda _n: None)
        task = asyncio.ensure_future(send_sealed_range(transport, fd, span))
        await asyncio.sleep(0.002 * attempt)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.in_flight == 0
        transport.abort()
        server.close()
    await reader.close()


@pytest.mark.parametrize("first", [0, 1, CHUNK - 1, CHUNK + 5, PIECE - 3])
async def test_a_piece_buffer_holds_exactly_the_chunks_of_one_piece(
    tmp_path: Path, first: int
) -> None:
    # Every piece of any range, as ``pieces`` cuts it, decrypts into one of the send's buffers,
    # each as large as one piece's chunks (tags included).
    data = os.urandom(SIZE)
    _, reader = await open_reader(tmp_path, data)
    with reader.pieces(SIZE - first, 2) as given:
        assert given.size == PIECE
        assert [len(b) for b in given.buffers] == [(PIECE // CHUNK) * (CHUNK + TAG_SIZE)] * 2
        got = bytearray()
        for start, stop in pieces(first, SIZE, given.size):
            got += b"".join(await reader.read_into(start, stop, given.buffers[0]))
        assert bytes(got) == data[first:]
        # Bytes across two pieces do not fit one piece's buffer: refused as a mistake of the
        # caller, never reported as a corrupt object.
        with pytest.raises(ValueError):
            await reader.read_into(given.size - 1, 2 * given.size, given.buffers[0])
    await reader.close()


class Discarding(Client):
    """A client that reads slowly and keeps only the count and a hash of what it read."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.hash = hashlib.sha256()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        while chunk := await reader.read(64 * 1024):
            self.count += len(chunk)
            self.hash.update(chunk)
            await asyncio.sleep(0.001)
        writer.close()
        self.done.set()


async def test_sixteen_concurrent_sends_hold_at_most_the_budget_in_buffers(
    tmp_path: Path,
) -> None:
    # What bounds the mirror's RSS at 16 concurrent warm pulls (benchmark scenario 6): the
    # buffers of every send together stay within the process's budget, past it by at most one
    # chunk per buffer for the sends that came when it was spent; each send gets its bytes.
    data = os.urandom(SIZE)
    store, first_reader = await open_reader(tmp_path, data)
    await first_reader.close()
    budget = PieceBudget(total=4 * PIECE)
    store.pieces = budget
    sends, buffers = 16, 2
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()

        async def one() -> tuple[int, Discarding]:
            opened = await store.open(Digest.of(data))
            assert opened is not None
            reader = opened[0]
            assert isinstance(reader, ChunkReader)
            client = Discarding()
            server, transport, fd = await connect(client)
            try:
                span = SealedSpan(b"", reader, 0, SIZE, lambda _n: None)
                sent = await send_sealed_range(transport, fd, span, buffers - 1)
            finally:
                await reader.close()
            transport.close()
            await client.done.wait()
            server.close()
            return sent, client

        async with asyncio.timeout(60):
            results = await asyncio.gather(*(one() for _ in range(sends)))
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()

    digest = hashlib.sha256(data).hexdigest()
    assert all(sent == c.count == SIZE and c.hash.hexdigest() == digest for sent, c in results)
    least = buffers * (CHUNK + TAG_SIZE)
    bound = 4 * PIECE + sends * least
    # Besides the buffers, each connection's own objects (the clients' reads above all: the
    # loop reads up to 256 KiB at a time) stay under 512 KiB; two 4 MiB pieces per send
    # would be 128 MiB.
    assert peak <= bound + sends * 512 * 1024
    assert peak > 4 * PIECE  # the measure saw the buffers (it is not vacuous)
    assert budget.taken == 0


@pytest.mark.parametrize("depth", [1, 3], ids=["depth-1", "depth-3"])
async def test_a_cancelled_deep_send_frees_its_buffers_once_its_threads_are_done(
    tmp_path: Path, depth: int
) -> None:
    pool = CountingExecutor()
    asyncio.get_running_loop().set_default_executor(pool)
    data = os.urandom(SIZE)
    store, reader = await open_reader(tmp_path, data)
    for attempt in range(10):
        client = Client(pause=0.01)
        server, transport, fd = await connect(client)
        span = SealedSpan(b"", reader, 0, SIZE, lambda _n: None)
        task = asyncio.ensure_future(send_sealed_range(transport, fd, span, depth))
        await asyncio.sleep(0.003 * attempt)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.in_flight == 0  # no thread still decrypting into a buffer
        assert store.pieces.taken == 0  # and every buffer is back in the budget
        transport.abort()
        server.close()
    await reader.close()


@pytest.mark.parametrize("stop_after", [64 * 1024, 1024 * 1024, PIECE + 1], ids=str)
async def test_a_send_cut_short_counts_every_byte_the_client_got(
    tmp_path: Path, stop_after: int
) -> None:
    # The count follows each write, not each piece: the part of a piece that went out before
    # the client left is counted too (the access line and the served-bytes metric).
    data = os.urandom(SIZE)
    _, reader = await open_reader(tmp_path, data)
    client = Client(stop_after=stop_after)
    server, transport, fd = await connect(client)
    counted: list[int] = []
    span = SealedSpan(b"", reader, 0, SIZE, counted.append)
    async with asyncio.timeout(10):
        with pytest.raises(ConnectionResetError):
            await send_sealed_range(transport, fd, span)
        await client.done.wait()
    await reader.close()
    server.close()

    assert len(client.received) <= sum(counted) < SIZE
    assert bytes(client.received) == data[: len(client.received)]
