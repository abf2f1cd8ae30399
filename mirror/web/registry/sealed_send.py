"""Sending a warm encrypted blob (or range) from the handler's own buffers.

The streamed path pays per 1 MiB chunk a fresh ``bytes`` from the decryption, a hop through
the event loop, aiohttp's writer and the transport's buffer. Here, once aiohttp wrote the
headers and the transport's buffer is empty, the body goes out in pieces of whole chunks
decrypted in place into one of two reused buffers (``Decrypting.read_into``, a worker thread)
and written with a non-blocking ``os.writev`` on a duplicate of the socket's descriptor, from
the loop (the GIL is released in both), piece N+1 decrypted while piece N is sent. A piece is
sent only after every chunk in it passed its tag check; a full socket is waited for on the
loop (no thread blocks on a slow client). Nothing else writes to the connection meanwhile: the
handler owns it until it returns.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator

from mirror.pullthrough.blobs import SealedSpan
from mirror.web.registry.sendfile import emptied, settled, writable


def pieces(first: int, end: int, step: int) -> Iterator[tuple[int, int]]:
    """``first..end`` (exclusive) cut at the multiples of ``step``."""
    while first < end:
        stop = min(end, (first // step + 1) * step)
        yield first, stop
        first = stop


def _write_some(fd: int, views: list[memoryview], on_sent: Callable[[int], None]) -> int:
    """``writev`` until everything went out or the socket is full; the bytes written, each
    write's told to ``on_sent`` as it goes (a write that fails later leaves them counted)."""
    total = 0
    while views:
        try:
            written = os.writev(fd, views)
        except BlockingIOError:
            return total
        on_sent(written)
        total += written
        views = _after(views, written)
    return total


def _after(views: list[memoryview], count: int) -> list[memoryview]:
    """``views`` without their first ``count`` bytes."""
    rest = list(views)
    while rest and count >= len(rest[0]):
        count -= len(rest.pop(0))
    if rest and count:
        rest[0] = rest[0][count:]
    return rest


async def _send(
    transport: asyncio.Transport, fd: int, views: list[memoryview], on_sent: Callable[[int], None]
) -> int:
    """Send every byte of ``views``, telling ``on_sent`` each write's count as it goes out (so
    a send cut short still counts what the kernel took); raises ``ConnectionResetError``
    (after aborting the transport) when the client went away."""
    total, sent, rest = sum(len(v) for v in views), 0, views
    while True:
        try:
            # On the loop itself: a write to a socket releases the GIL for its copy and never
            # blocks (the socket is non-blocking), and a hand-off to a thread per write (often
            # several per piece, each wait for room ending one) cost more than the copy.
            sent += _write_some(fd, rest, on_sent)
        except OSError as exc:
            transport.abort()
            raise ConnectionResetError(f"client went away: {exc}") from exc
        if sent == total:
            return total
        rest = _after(views, sent)
        await writable(fd)


async def send_sealed_range(transport: asyncio.Transport, sock_fd: int, span: SealedSpan) -> int:
    """Send ``span`` (its head, then its range decrypted piece by piece) on the connection;
    returns the bytes sent. Raises ``CorruptObject`` before sending any byte of a chunk that
    fails its tag (the caller aborts the connection) and ``ConnectionResetError`` if the client
    goes away."""
    await emptied(transport)
    reader, end = span.reader, span.first + span.length
    # Sized for what this span needs: a small blob's body is all in its head.
    room = min(reader.piece, span.length)
    buffers = (reader.buffer(room), reader.buffer(room)) if room else ()
    dup = os.dup(sock_fd)
    sent = 0
    ahead: asyncio.Future[list[memoryview]] | None = None
    try:
        if span.head:
            sent += await _send(transport, dup, [memoryview(span.head)], span.sent)
        parts = pieces(span.first, end, reader.piece)
        turn = 0

        def start() -> asyncio.Future[list[memoryview]] | None:
            part = next(parts, None)
            if part is None:
                return None
            return asyncio.ensure_future(reader.read_into(*part, buffers[turn % 2]))

        ahead = start()
        while ahead is not None:
            views = await settled(ahead)
            turn += 1
            # The other buffer was sent in full: decrypt the next piece into it meanwhile.
            ahead = start()
            sent += await _send(transport, dup, views, span.sent)
    finally:
        if ahead is not None:
            # Not cancelled: a decryption in a thread must finish before its buffer and file go.
            await asyncio.gather(ahead, return_exceptions=True)
        os.close(dup)
    return sent
