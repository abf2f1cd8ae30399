"""A large response body received straight into whole pieces, with no copy on the way.

aiohttp hands a body over as a ``bytes`` object per socket read: uvloop copies each read out of
its receive buffer, the HTTP parser copies the body part out of that, and reading a whole piece
joins the reads (a third copy). In a cold fill of a large blob those copies were 29% of the
event loop thread's time (``perf``), aiohttp's Python work per read more (docs/benchmarks.md,
session 20). Once the response
headers are parsed, :func:`taken_over` moves the connection to a ``BufferedProtocol`` that
receives the rest of a ``Content-Length`` body into the piece being filled (the kernel copies
into it, nothing else does); the connection is closed afterwards, never pooled again.

:func:`regrouped` is the same pieces cut from any stream of chunks (the path every other body
takes).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterable, Iterator

import aiohttp

# Bodies at least this long are received by :class:`PieceReceiver` (a smaller one keeps its
# pooled connection: a fresh TLS handshake costs more than the copies it would save).
TAKEOVER_MIN = 8 * 1024 * 1024
# Bytes of whole pieces received ahead of the consumer before the reading pauses (as aiohttp's
# buffer before: the upstream keeps sending while a piece is hashed and sealed).
AHEAD = 8 * 1024 * 1024


def grown(first: int, largest: int) -> Iterator[int]:
    """Piece sizes: ``first``, then each twice the one before, up to ``largest``."""
    size = first
    while True:
        yield size
        size = min(2 * size, max(largest, first))


class PieceReceiver(asyncio.BufferedProtocol):
    """Receives the ``remaining`` bytes of a body into pieces of ``sizes``; the reading pauses
    while ``ahead`` bytes of whole pieces wait for the consumer."""

    def __init__(
        self,
        remaining: int,
        sizes: Iterator[int],
        ahead: int,
        previous: asyncio.BaseProtocol | None = None,
    ) -> None:
        self.received = 0
        # The protocol taken over: told when the connection closes, so its owner's
        # bookkeeping (aiohttp's connector waits for it) ends as it would have.
        self._previous = previous
        self._remaining = remaining
        self._sizes = sizes
        self._ahead = ahead
        self._piece = bytearray()
        self._filled = 0
        self._ready: deque[bytearray] = deque()
        self._ready_bytes = 0
        self._error: BaseException | None = None
        self._ended = remaining == 0
        self._waiter: asyncio.Future[None] | None = None
        self._transport: asyncio.Transport | None = None
        self._paused = False
        # Where bytes past the body go (an upstream that sends more than it announced).
        self._scratch = bytearray(64 * 1024)
        self._next()

    def _next(self) -> None:
        if self._remaining > 0:
            self._piece = bytearray(min(next(self._sizes), self._remaining))
            self._filled = 0

    def attach(self, transport: asyncio.Transport, prefix: bytes) -> None:
        """Take over ``transport`` with ``prefix`` (body bytes received before) counted first."""
        self._transport = transport
        view = memoryview(prefix)
        while view and not self._ended:
            room = self.get_buffer(len(view))
            step = min(len(room), len(view))
            room[:step] = view[:step]
            self.buffer_updated(step)
            view = view[step:]
        if self._ended:
            transport.pause_reading()
            self._paused = True
        else:
            transport.resume_reading()

    def get_buffer(self, sizehint: int) -> memoryview:
        """The unfilled part of the piece (the socket is read straight into it)."""
        if self._ended:
            return memoryview(self._scratch)
        return memoryview(self._piece)[self._filled :]

    def buffer_updated(self, nbytes: int) -> None:
        """``nbytes`` arrived in the piece; a full piece is handed to the consumer."""
        if self._ended:
            return
        self._filled += nbytes
        self._remaining -= nbytes
        self.received += nbytes
        if self._filled == len(self._piece):
            self._ready.append(self._piece)
            self._ready_bytes += len(self._piece)
            self._ended = self._remaining == 0
            self._next()
            self._wake()
            if (self._ready_bytes >= self._ahead or self._ended) and not self._paused:
                self._pause(True)

    def _pause(self, paused: bool) -> None:
        if self._transport is not None and paused != self._paused:
            self._paused = paused
            if paused:
                self._transport.pause_reading()
            else:
                self._transport.resume_reading()

    def eof_received(self) -> bool:
        """The peer stopped sending; close (``connection_lost`` says whether it was early)."""
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        """The connection closed: an error unless the whole body had arrived."""
        if not self._ended and self._error is None:
            self._error = aiohttp.ClientPayloadError(
                f"body ended {self._remaining} bytes short" + (f": {exc!r}" if exc else "")
            )
        self._wake()
        if self._previous is not None:
            self._previous.connection_lost(exc)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def pieces(self, stall: float | None) -> AsyncGenerator[bytearray, None]:
        """Yield each whole piece (the last one shorter); ``TimeoutError`` after ``stall``
        seconds without a byte, the connection's error if it broke."""
        while True:
            if self._ready:
                piece = self._ready.popleft()
                self._ready_bytes -= len(piece)
                if not self._ended and self._ready_bytes < self._ahead:
                    self._pause(False)
                yield piece
            elif self._error is not None:
                raise self._error
            elif self._ended:
                return
            else:
                await self._wait(stall)

    async def _wait(self, stall: float | None) -> None:
        while True:
            before = self.received
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._waiter), stall)
                return
            except TimeoutError:
                if self.received == before:
                    raise
            finally:
                self._waiter = None


def taken_over(
    response: aiohttp.ClientResponse, first: int, largest: int, ahead: int
) -> AsyncGenerator[bytearray, None] | None:
    """The rest of ``response``'s body as whole pieces (``first`` bytes, doubling up to
    ``largest``), received by a :class:`PieceReceiver`; ``None`` when the body is not one to
    take over (shorter than ``TAKEOVER_MIN``, without a ``Content-Length``, or already read).
    The caller must close ``response`` when done: its connection is not reusable."""
    length = response.content_length
    connection = response.connection
    if (
        length is None
        or length < TAKEOVER_MIN
        or "Transfer-Encoding" in response.headers
        or connection is None
        or connection.transport is None
        or connection.protocol is None
        or response.content.at_eof()
    ):
        return None
    transport = connection.transport
    old = connection.protocol
    # Everything runs on the loop without a pause: no read can slip between these steps.
    prefix = response.content.read_nowait()
    stall = old.read_timeout
    old.read_timeout = None
    old.force_close()  # however the response ends, its connection goes back to no pool
    old.pause_reading()  # also drops aiohttp's read timer, which would close the connection
    remaining = length - response.content.total_bytes + len(prefix)
    receiver = PieceReceiver(remaining, grown(first, largest), ahead, old)
    transport.set_protocol(receiver)
    receiver.attach(transport, prefix)
    return receiver.pieces(stall)


async def regrouped(
    chunks: AsyncIterable[bytes], size: int, largest: int | None = None
) -> AsyncGenerator[bytes, None]:
    """``chunks`` regrouped into pieces of exactly ``size`` bytes (the last one shorter); with
    ``largest``, each piece twice the size of the one before, up to ``largest`` (a multiple of
    ``size`` by a power of two keeps every piece a whole number of ``size`` chunks).

    A socket hands over whatever arrived (often 64-256 KiB); every piece costs a hash job,
    a sealed-chunk write and a wake-up of each reader, so whole pieces cut that overhead by
    the ratio, and pieces of whole sealed chunks take the writer's no-copy path. Growing from
    ``size`` keeps the first byte as early as pieces of ``size`` would (a small blob, or a slow
    upstream, is not held back for a large piece). Each byte is copied once (the join of a
    piece; a chunk that straddles two pieces is cut by views). Bytes not yet in a whole piece
    are dropped if the stream breaks (a resume refetches them).
    """
    held: list[bytes | memoryview] = []
    length = 0
    async for chunk in chunks:
        if not held and len(chunk) == size:
            yield chunk
            size = min(2 * size, largest or size)
            continue
        view = memoryview(chunk)
        while length + len(view) >= size:
            need = size - length
            yield b"".join([*held, view[:need]])
            held, length, view = [], 0, view[need:]
            size = min(2 * size, largest or size)
        if view:
            held.append(view)
            length += len(view)
    if length:
        yield b"".join(held)
