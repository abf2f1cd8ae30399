"""``python -m benchmarks.wan``: a WAN-like link in userspace, a TCP relay on 127.0.0.1.

Each direction of the link holds every byte ``delay`` seconds after it was read (order kept,
so the round trip is ``2 * delay``) and passes it through one token bucket of ``rate`` bytes/s
shared by every connection of that direction (one WAN pipe, not one per connection). A new
connection pays the TCP handshake: the relay connects to the target ``delay`` after it accepted
(the SYN's way out), and nothing the client sent reaches the target before ``3 * delay`` (SYN-ACK
back, then the first segment out). Memory is bounded: a direction stops reading once ``window``
bytes are in flight, as a TCP window would (``window / delay`` must exceed ``rate`` for the rate
to be what limits one connection; the default 4 MiB allows 210 MB/s at 20 ms). A half-close
(EOF) travels the same delay line behind the data; a reset closes both sides at once.

Not modelled: loss, TCP slow start and congestion control (a new connection is at full speed
after its handshake), so the link is kinder to a client that opens many connections than a
real WAN would be.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import signal
import sys
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import cast

MiB = 1024 * 1024


# The most one read hands over (uvloop's and asyncio's socket read size): how far past the
# window one direction may be before it stops reading.
READ_CHUNK = 256 * 1024


@dataclass(frozen=True)
class LinkSpec:
    """The link: one-way delay (s), rate per direction (bytes/s, 0: unlimited), the bucket's
    burst (bytes), and the bytes in flight per connection and direction."""

    delay: float = 0.020
    rate: float = 100e6
    burst: int = 128 * 1024
    window: int = 4 * MiB


class TokenBucket:
    """``rate`` bytes/s with ``burst`` bytes of credit: :meth:`book` says when bytes read now
    have passed (FIFO over every caller, so connections share the rate)."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._free_at = -math.inf

    def book(self, size: int, now: float) -> float:
        """The time at which the last of ``size`` bytes offered at ``now`` has passed."""
        if self.rate <= 0:
            return now
        start = max(self._free_at, now - self.burst / self.rate)
        self._free_at = start + size / self.rate
        return max(self._free_at, now)


@dataclass
class Counters:
    """What went through the link: connections accepted, bytes each way, connections whose
    target refused, and the most bytes one direction of one connection held at once."""

    connections: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    failed_connects: int = 0
    peak_in_flight: int = 0


class _Pipe:
    """One direction of one connection: what ``source`` reads is written to ``sink`` at its
    release time (``None`` in the line is the EOF); ``source`` pauses while ``window`` bytes
    are in flight, the line while ``sink`` pushes back."""

    def __init__(
        self, bucket: TokenBucket, spec: LinkSpec, not_before: float, counters: Counters
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._bucket = bucket
        self._spec = spec
        self._not_before = not_before
        self._counters = counters
        self.source: asyncio.Transport | None = None
        self.sink: asyncio.Transport | None = None
        self._line: deque[tuple[float, bytes | None]] = deque()
        self._in_flight = 0
        self._timer: asyncio.TimerHandle | None = None
        self._sink_paused = False
        self._source_paused = False
        self.passed = 0
        self.done = False
        self.on_done: Callable[[], None] = lambda: None

    def feed(self, data: bytes | None) -> None:
        """Queue ``data`` (``None``: EOF) at its release time."""
        now = self._loop.time()
        passed = self._bucket.book(len(data), now) if data else now
        self._line.append((max(passed + self._spec.delay, self._not_before), data))
        if data:
            self._in_flight += len(data)
            self._counters.peak_in_flight = max(self._counters.peak_in_flight, self._in_flight)
            if self._in_flight >= self._spec.window and self.source is not None:
                self.source.pause_reading()
                self._source_paused = True
        self.schedule()

    def schedule(self) -> None:
        """Arm the timer for the head of the line (once the sink exists and takes bytes)."""
        if self._timer is None and self._line and self.sink is not None and not self._sink_paused:
            self._timer = self._loop.call_at(self._line[0][0], self._release)

    def sink_paused(self, paused: bool) -> None:
        """The sink's write buffer is full (``True``) or drained again."""
        self._sink_paused = paused
        if not paused:
            self.schedule()

    def _release(self) -> None:
        self._timer = None
        now = self._loop.time()
        assert self.sink is not None
        while self._line and self._line[0][0] <= now and not self._sink_paused:
            _, data = self._line.popleft()
            if data is None:
                if self.sink.can_write_eof():
                    self.sink.write_eof()
                self.done = True
                self.on_done()
                return
            self.sink.write(data)
            self.passed += len(data)
            self._in_flight -= len(data)
        if self._source_paused and self._in_flight < self._spec.window and self.source:
            self._source_paused = False
            self.source.resume_reading()
        self.schedule()

    def cancel(self) -> None:
        """Drop what is queued (the connection is cut)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._line.clear()


class _Side(asyncio.Protocol):
    """One socket of a relayed connection: what it reads feeds ``inbound``; its write flow
    control holds ``outbound``."""

    def __init__(self, connection: _Connection, inbound: _Pipe, outbound: _Pipe) -> None:
        self._connection = connection
        self._inbound = inbound
        self._outbound = outbound
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A TCP transport (uvloop's is not an ``asyncio.Transport`` subclass, but is one).
        self.transport = cast(asyncio.Transport, transport)
        self._inbound.source = self.transport
        self._outbound.sink = self.transport
        self._outbound.schedule()

    def data_received(self, data: bytes) -> None:
        self._inbound.feed(data)

    def eof_received(self) -> bool:
        self._inbound.feed(None)
        return True  # keep the socket open for writing: a half-close

    def pause_writing(self) -> None:
        self._outbound.sink_paused(True)

    def resume_writing(self) -> None:
        self._outbound.sink_paused(False)

    def connection_lost(self, exc: Exception | None) -> None:
        self._connection.lost(exc)


class _Connection:
    """One client connection and its connection to the target, ``delay`` after the accept."""

    def __init__(self, relay: Relay) -> None:
        loop = asyncio.get_running_loop()
        self._relay = relay
        accepted, delay = loop.time(), relay.spec.delay
        counters = relay.counters
        counters.connections += 1
        # The handshake: SYN-ACK back at 2 d, the client's first segment at the target at 3 d.
        self.up = _Pipe(relay.up, relay.spec, accepted + 3 * delay, counters)
        self.down = _Pipe(relay.down, relay.spec, accepted + 2 * delay, counters)
        self.up.on_done = self.down.on_done = self._maybe_finished
        self.client = _Side(self, inbound=self.up, outbound=self.down)
        self.target: _Side | None = None
        self._closed = False
        loop.call_later(delay, self._connect)

    def _connect(self) -> None:
        if not self._closed:
            self._relay.spawn(self._open_target())

    async def _open_target(self) -> None:
        loop = asyncio.get_running_loop()
        target = _Side(self, inbound=self.down, outbound=self.up)
        try:
            await loop.create_connection(lambda: target, *self._relay.target)
        except OSError:
            self._relay.counters.failed_connects += 1
            self.close()
            return
        self.target = target
        if self._closed:
            self.close()

    def _maybe_finished(self) -> None:
        if self.up.done and self.down.done:
            self.close(abort=False)

    def lost(self, exc: Exception | None) -> None:
        """A socket closed: a reset (or a close before both EOFs passed) cuts the other one."""
        if exc is not None or not (self.up.done and self.down.done):
            self.close()

    def close(self, abort: bool = True) -> None:
        """Close both sockets (``abort``: at once, dropping what is queued)."""
        if self._closed and not abort:
            return
        self._closed = True
        counters = self._relay.counters
        counters.bytes_up, self.up.passed = counters.bytes_up + self.up.passed, 0
        counters.bytes_down, self.down.passed = counters.bytes_down + self.down.passed, 0
        for pipe in (self.up, self.down):
            pipe.cancel()
        for side in (self.client, self.target):
            if side is not None and side.transport is not None:
                if abort:
                    side.transport.abort()
                else:
                    side.transport.close()
        self._relay.forget(self)


class Relay:
    """Accepts on 127.0.0.1 and relays every connection to ``target`` over one shared link."""

    def __init__(self, target: tuple[str, int], spec: LinkSpec | None = None) -> None:
        self.target = target
        self.spec = spec or LinkSpec()
        self.counters = Counters()
        self.up = TokenBucket(self.spec.rate, self.spec.burst)
        self.down = TokenBucket(self.spec.rate, self.spec.burst)
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, port: int = 0) -> int:
        """Listen on 127.0.0.1:``port`` (0: any free port); returns the port."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._accepted, "127.0.0.1", port)
        return int(self._server.sockets[0].getsockname()[1])

    def _accepted(self) -> _Side:
        connection = _Connection(self)
        self._connections.add(connection)
        return connection.client

    def spawn(self, work: Coroutine[object, object, None]) -> None:
        """Run ``work`` as a task the relay keeps (and cancels at :meth:`close`)."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def forget(self, connection: _Connection) -> None:
        """``connection`` closed."""
        self._connections.discard(connection)

    async def close(self) -> None:
        """Stop listening and cut every relayed connection."""
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            connection.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()


async def _serve(target: tuple[str, int], port: int, spec: LinkSpec) -> Counters:
    """Relay until SIGTERM or SIGINT; the counters at the end."""
    relay = Relay(target, spec)
    await relay.start(port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"relaying 127.0.0.1:{port} -> {target[0]}:{target[1]}", file=sys.stderr, flush=True)
    await stop.wait()
    await relay.close()
    return relay.counters


def _target(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def main(argv: list[str] | None = None) -> None:
    """Parse the link, relay until stopped, print the counters as JSON on stdout."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.wan", description=__doc__)
    p.add_argument("--port", type=int, required=True, help="listen on 127.0.0.1:PORT")
    p.add_argument("--target", type=_target, required=True, help="HOST:PORT to relay to")
    p.add_argument("--delay", type=float, default=LinkSpec.delay, help="one-way delay, seconds")
    p.add_argument("--rate", type=float, default=LinkSpec.rate, help="bytes/s each way, 0: none")
    p.add_argument("--window", type=int, default=LinkSpec.window, help="bytes in flight")
    args = p.parse_args(argv)
    spec = LinkSpec(delay=args.delay, rate=args.rate, window=args.window)
    try:
        import uvloop
    except ImportError:
        counters = asyncio.run(_serve(args.target, args.port, spec))
    else:
        counters = uvloop.run(_serve(args.target, args.port, spec))
    with contextlib.suppress(BrokenPipeError):
        json.dump(dataclasses.asdict(counters), sys.stdout)


if __name__ == "__main__":
    main()
