"""Writing a request body into a staged object on two cores: the event loop receives the next
batch of pieces while a pool thread hashes, seals and writes the previous one.

At most two batches of a body are held (one being written, one filling), so an upload's
memory is bounded by ``2 * batch`` plus the web server's read buffer, whatever its size. The
batches are written in order, one at a time: a hash is a sequence. A batch in flight always
finishes before the body's writer returns, even when the request is cancelled or the body
fails, so nothing else touches the object while a pool thread still writes it. Pieces of a batch
not yet handed over when the body fails are dropped: the staged object's size (the upload's
offset) says what was kept.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable
from typing import Protocol


class Writable(Protocol):
    """What the pipeline needs of a staged object."""

    async def write(self, *pieces: bytes) -> None:
        """Append and hash ``pieces``; ``OSError`` when the disk refuses them."""
        ...


async def write_body(staged: Writable, body: AsyncIterable[bytes], batch: int) -> None:
    """Write every piece of ``body`` to ``staged`` in batches of at least ``batch`` bytes
    (the last one smaller), the next batch received while the previous one is written."""
    pieces: list[bytes] = []
    pending = 0
    running: asyncio.Future[None] | None = None
    try:
        async for piece in body:
            pieces.append(piece)
            pending += len(piece)
            if pending >= batch:
                if running is not None:
                    await asyncio.shield(running)
                running = asyncio.ensure_future(staged.write(*pieces))
                pieces, pending = [], 0
        if running is not None:
            await asyncio.shield(running)
        if pieces:
            await staged.write(*pieces)
    finally:
        await _finished(running)


async def _finished(running: asyncio.Future[None] | None) -> None:
    """Wait until the batch in flight (if any) has ended; its error is the body's when the
    body had none (raised above), else only retrieved."""
    if running is None:
        return
    if not running.done():
        await asyncio.wait([running])
    if not running.cancelled():
        with contextlib.suppress(BaseException):
            running.exception()
