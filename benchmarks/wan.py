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
from dataclasses import dataclass, field

MiB = 1024 * 1024


@dataclass(frozen=True)
class LinkSpec:
    """The link: one-way delay (s), rate per direction (bytes/s, 0: unlimited), the bucket's
    burst (bytes), bytes in flight per connection and direction, and the read size."""

    delay: float = 0.020
    rate: float = 100e6
    burst: int = 128 * 1024
    window: int = 4 * MiB
    read_size: int = 256 * 1024


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


@dataclass
class _Direction:
    """One direction of one connection: a reader, the delay line, a writer."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    bucket: TokenBucket
    spec: LinkSpec
    not_before: float
    counters: Counters
    passed: int = 0
    _line: deque[tuple[float, bytes]] = field(default_factory=deque)
    _in_flight: int = 0
    _space: asyncio.Event = field(default_factory=asyncio.Event)
    _queued: asyncio.Event = field(default_factory=asyncio.Event)

    async def take_in(self) -> None:
        """Read until EOF, stamping each piece with its release time; EOF is queued as ``b""``."""
        loop = asyncio.get_running_loop()
        while True:
            while self._in_flight >= self.spec.window:
                self._space.clear()
                await self._space.wait()
            data = await self.reader.read(self.spec.read_size)
            now = loop.time()
            passed = self.bucket.book(len(data), now) if data else now
            self._line.append((max(passed + self.spec.delay, self.not_before), data))
            self._in_flight += len(data)
            self.counters.peak_in_flight = max(self.counters.peak_in_flight, self._in_flight)
            self._queued.set()
            if not data:
                return

    async def give_out(self) -> None:
        """Write each piece at its release time; at EOF half-close (or close) the writer."""
        loop = asyncio.get_running_loop()
        while True:
            while not self._line:
                self._queued.clear()
                await self._queued.wait()
            at, data = self._line.popleft()
            wait = at - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                if self.writer.can_write_eof():
                    self.writer.write_eof()
                else:
                    self.writer.close()
                return
            self.writer.write(data)
            await self.writer.drain()
            self._in_flight -= len(data)
            self.passed += len(data)
            self._space.set()


class Relay:
    """Accepts on 127.0.0.1 and relays every connection to ``target`` over one shared link."""

    def __init__(self, target: tuple[str, int], spec: LinkSpec | None = None) -> None:
        self.target = target
        self.spec = spec or LinkSpec()
        self.counters = Counters()
        self._up = TokenBucket(self.spec.rate, self.spec.burst)
        self._down = TokenBucket(self.spec.rate, self.spec.burst)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, port: int = 0) -> int:
        """Listen on 127.0.0.1:``port`` (0: any free port); returns the port."""
        self._server = await asyncio.start_server(self._accepted, "127.0.0.1", port)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening and cut every relayed connection."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._relay(reader, writer)
        finally:
            self._tasks.discard(task)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Connect to the target after the SYN's delay, then pump both ways until both ended."""
        loop = asyncio.get_running_loop()
        accepted = loop.time()
        self.counters.connections += 1
        delay = self.spec.delay
        target: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            await asyncio.sleep(delay)
            try:
                target = await asyncio.open_connection(*self.target)
            except OSError:
                self.counters.failed_connects += 1
                return
            up = _Direction(
                reader, target[1], self._up, self.spec, accepted + 3 * delay, self.counters
            )
            down = _Direction(
                target[0], writer, self._down, self.spec, accepted + 2 * delay, self.counters
            )
            try:
                async with asyncio.TaskGroup() as pumps:
                    for step in (up.take_in, up.give_out, down.take_in, down.give_out):
                        pumps.create_task(step())
            finally:
                self.counters.bytes_up += up.passed
                self.counters.bytes_down += down.passed
        except* OSError:
            pass  # a reset on either side: both are cut below
        finally:
            for w in (writer, *([target[1]] if target else [])):
                w.transport.abort()


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
