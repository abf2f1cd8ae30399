"""Sending a warm encrypted blob (or range) from the handler's own buffers.

The streamed path pays per 1 MiB chunk a fresh ``bytes`` from the decryption, a hop through
the event loop, aiohttp's writer and the transport's buffer. Here, once aiohttp wrote the
headers and the transport's buffer is empty, the body goes out in pieces of whole chunks, each
decrypted in place into one of a few reused buffers (``Decrypting.read_into``, in worker
threads) and written with a non-blocking ``os.writev`` on a duplicate of the socket's
descriptor, from the loop (the GIL is released in both). While piece N is written, pieces
N+1..N+depth are decrypted (``DEPTH``). The piece size and the buffers come from the process's
budget (``mirror.blobstore.piece_budget``): 2 MiB pieces, smaller ones once many sends share
it. A piece is sent only after every chunk in it passed its tag check, and pieces go out in
order; a full socket is waited for on the loop (no thread blocks on a slow client). Nothing
else writes to the connection meanwhile: the handler owns it until it returns.
"""

from __future__ import annotations

import asyncio
import collections
import os
from collections.abc import Callable, Iterator

from mirror.blobstore.piece_budget import Pieces
from mirror.pullthrough.blobs import SealedSpan
from mirror.web.registry.sendfile import drained, emptied, settled, writable


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


# Pieces decrypted ahead of the one being written (each in its own reused buffer). One is
# enough on two cores: the loop's writes and the client take the other core (more, measured
# at 2 and 3, gave no more throughput and no less CPU); a larger machine may pass more.
DEPTH = 1


async def send_sealed_range(
    transport: asyncio.Transport, sock_fd: int, span: SealedSpan, depth: int = DEPTH
) -> int:
    """Send ``span`` (its head, then its range decrypted piece by piece, ``depth`` pieces
    ahead) on the connection; returns the bytes sent. Raises ``CorruptObject`` before sending
    any byte of a chunk that fails its tag (the caller aborts the connection) and
    ``ConnectionResetError`` if the client goes away."""
    await emptied(transport)
    with span.reader.pieces(span.length, max(1, depth) + 1) as given:
        return await _send_pieces(transport, sock_fd, span, given)


async def _send_pieces(
    transport: asyncio.Transport, sock_fd: int, span: SealedSpan, given: Pieces
) -> int:
    reader, parts = span.reader, pieces(span.first, span.first + span.length, given.size)
    # Pieces being decrypted, in the order they go out, each with its buffer.
    ahead: collections.deque[tuple[asyncio.Future[list[memoryview]], bytearray]]
    ahead = collections.deque()
    dup = os.dup(sock_fd)
    sent = 0
    try:
        if span.head:
            sent += await _send(transport, dup, [memoryview(span.head)], span.sent)
        # All buffers but one start decrypting; the last is free for the piece after them.
        free = given.buffers[-1:]
        # Buffers first: zip must not take a piece it then has no buffer for.
        for buf, (first, stop) in zip(given.buffers[:-1], parts, strict=False):
            ahead.append((reader.read_into(first, stop, buf), buf))
        while ahead:
            views = await settled(ahead[0][0])
            _, done = ahead.popleft()
            # As soon as a piece is decrypted the next one starts, into the buffer that went
            # out last (in full): the decrypting thread never waits for a write.
            following = next(parts, None) if free else None
            if following is not None:
                buf = free.pop()
                ahead.append((reader.read_into(*following, buf), buf))
            sent += await _send(transport, dup, views, span.sent)
            free.append(done)
    finally:
        await drained(job for job, _ in ahead)
        os.close(dup)
    return sent
