"""The WAN link of scenario 13 (``benchmarks/wan.py``): every byte arrives, in order, ``delay``
late each way (a round trip costs ``2 * delay``, a new connection's first exchange pays the
handshake too), no faster than ``rate`` summed over all connections, memory bounded by the
window, and a close on one side reaches the other."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from benchmarks.wan import READ_CHUNK, LinkSpec, MiB, Relay, TokenBucket

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Echo until EOF, then close."""
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


class _Link:
    """A target server on 127.0.0.1 behind a relay."""

    def __init__(self, relay: Relay, port: int) -> None:
        self.relay = relay
        self.port = port

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)


@contextlib.asynccontextmanager
async def _link(handler: Handler, spec: LinkSpec) -> AsyncIterator[_Link]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    relay = Relay(("127.0.0.1", server.sockets[0].getsockname()[1]), spec)
    port = await relay.start()
    try:
        yield _Link(relay, port)
    finally:
        await relay.close()
        server.close()
        await server.wait_closed()


def _sender(size: int) -> Handler:
    """A target that sends ``size`` bytes of zeros and closes (ignoring what it is sent)."""

    async def send(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        piece = bytes(MiB)
        left = size
        while left:
            writer.write(piece[: min(left, MiB)])
            left -= min(left, MiB)
            await writer.drain()
        writer.close()

    return send


async def _drain(reader: asyncio.StreamReader) -> int:
    got = 0
    while data := await reader.read(1 << 20):
        got += len(data)
    return got


def test_token_bucket_spends_its_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=1000.0, burst=100)
    assert bucket.book(100, now=10.0) == 10.0  # the burst passes at once
    assert bucket.book(500, now=10.0) == pytest.approx(10.5)
    # Offered later, after the queue emptied: the bucket refilled (at most ``burst``).
    assert bucket.book(100, now=20.0) == 20.0
    assert TokenBucket(rate=0, burst=0).book(10**9, now=5.0) == 5.0  # 0: unlimited


async def test_a_round_trip_costs_twice_the_delay_and_a_new_connection_the_handshake() -> None:
    delay = 0.05
    async with _link(_echo, LinkSpec(delay=delay)) as link:
        started = time.perf_counter()
        reader, writer = await link.connect()
        writer.write(b"x")
        assert await reader.readexactly(1) == b"x"
        first = time.perf_counter() - started
        rtts = []
        for _ in range(3):
            started = time.perf_counter()
            writer.write(b"y")
            assert await reader.readexactly(1) == b"y"
            rtts.append(time.perf_counter() - started)
        writer.close()
    # Handshake (one round trip) plus the exchange (another).
    assert first >= 4 * delay
    assert min(rtts) >= 2 * delay
    assert max(rtts) < 2 * delay + 1.0  # loose: the machine is shared


async def test_bytes_arrive_exactly_both_ways_and_a_half_close_travels_behind_them() -> None:
    payload = os.urandom(3 * MiB + 17)
    async with _link(_echo, LinkSpec(delay=0.005, rate=0)) as link:
        reader, writer = await link.connect()

        async def upload() -> None:
            for start in range(0, len(payload), 100_000):
                writer.write(payload[start : start + 100_000])
                await writer.drain()
            writer.write_eof()  # the echo server closes once this EOF reaches it

        echoed, _ = await asyncio.gather(reader.read(), upload())
        writer.close()
        counters = link.relay.counters
    assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()
    assert counters.bytes_up == counters.bytes_down == len(payload)
    assert counters.connections == 1


async def test_one_direction_is_no_faster_than_the_rate() -> None:
    rate, size, burst = 20e6, 4 * MiB, 128 * 1024
    async with _link(_sender(size), LinkSpec(delay=0.01, rate=rate, burst=burst)) as link:
        reader, writer = await link.connect()
        started = time.perf_counter()
        got = await _drain(reader)
        seconds = time.perf_counter() - started
        writer.close()
    assert got == size
    measured = (size - burst) / seconds
    assert measured <= rate * 1.03
    assert measured >= rate * 0.3  # the relay itself keeps up (loose: a shared machine)


async def test_connections_share_the_rate_of_their_direction() -> None:
    rate, size, burst = 20e6, 2 * MiB, 128 * 1024
    async with _link(_sender(size), LinkSpec(delay=0.01, rate=rate, burst=burst)) as link:
        conns = [await link.connect() for _ in range(3)]
        started = time.perf_counter()
        got = await asyncio.gather(*(_drain(r) for r, _ in conns))
        seconds = time.perf_counter() - started
        for _, w in conns:
            w.close()
    assert got == [size] * 3
    assert (3 * size - burst) / seconds <= rate * 1.03


async def test_a_reader_that_stops_reading_holds_at_most_the_window_in_flight() -> None:
    window = 1 * MiB
    wrote = 0

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal wrote
        piece = bytes(MiB)
        with_timeout = asyncio.timeout(1.5)
        try:
            async with with_timeout:
                while True:
                    writer.write(piece)
                    await writer.drain()
                    wrote += len(piece)
        except TimeoutError:
            writer.transport.abort()

    spec = LinkSpec(delay=0.001, rate=0, window=window)
    async with _link(flood, spec) as link:
        _reader, writer = await link.connect()  # never reads
        await asyncio.sleep(2.0)
        peak = link.relay.counters.peak_in_flight
        writer.close()
    assert peak <= window + READ_CHUNK
    # What the target got rid of: the window plus the kernel's socket buffers, not 1.5 s of
    # loopback (gigabytes).
    assert wrote < 128 * MiB


async def test_a_close_by_the_target_reaches_the_client_after_the_data() -> None:
    delay = 0.03

    async def hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello")
        await writer.drain()
        writer.close()

    async with _link(hello, LinkSpec(delay=delay)) as link:
        started = time.perf_counter()
        reader, writer = await link.connect()
        assert await reader.read() == b"hello"  # read() returns at EOF
        seconds = time.perf_counter() - started
        writer.close()
    # SYN out, the greeting back: one round trip.
    assert seconds >= 2 * delay


async def test_a_target_that_refuses_closes_the_client_connection() -> None:
    probe = await asyncio.start_server(_echo, "127.0.0.1", 0)
    dead_port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    relay = Relay(("127.0.0.1", dead_port), LinkSpec(delay=0.005))
    port = await relay.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\n\r\n")
        try:
            data = await asyncio.wait_for(reader.read(), 5.0)
        except ConnectionResetError:
            data = b""
        writer.close()
    finally:
        await relay.close()
    assert data == b""
    assert relay.counters.failed_connects == 1
