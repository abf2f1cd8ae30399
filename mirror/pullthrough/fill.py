"""One in-progress cache fill of a blob, readable by any number of clients as it grows.

The fill's task owns the upstream download; clients only read what has been written. So a
client that goes away cancels nothing, and every joiner of a cold blob shares one upstream GET.

When the disk refuses the bytes (``ENOSPC``, or the cache size limit) the fill stops caching
but not serving: its temp file is dropped and the rest of the blob is relayed from memory to
the readers already attached (see :mod:`mirror.pullthrough.relay`). A pull never fails
because the disk is full.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Protocol, runtime_checkable

from mirror.blobstore.interface import BlobWriter, RangeReader
from mirror.oci.digest import Digest
from mirror.pullthrough.guard import Guarded
from mirror.pullthrough.relay import Tail

# How far (bytes) the slowest attached reader may lag behind a relaying fill before the
# download waits for it.
RELAY_LIMIT = 64 * 1024 * 1024
# Bytes of the newest chunks a fill keeps in memory for the readers at its head.
RECENT_LIMIT = 8 * 1024 * 1024


@runtime_checkable
class Reserving(Protocol):
    """A writer that can claim room for the whole object before it is written."""

    async def reserve(self, size: int) -> None:
        """Claim ``size`` bytes; raises ``OSError`` (``ENOSPC``) if there is no room."""
        ...


class FillFailed(Exception):
    """The fill ended without verifying; the bytes a client got so far must not complete."""

    def __init__(self, digest: Digest, cause: BaseException) -> None:
        self.digest = digest
        self.cause = cause
        super().__init__(f"fill of {digest} failed: {cause!r}")


class Fill:
    """Progress of one blob fill: size once known, bytes written, and how it ended."""

    def __init__(
        self,
        digest: Digest,
        writer: BlobWriter | None,
        reopen: Callable[[], Awaitable[tuple[RangeReader, int] | None]] | None = None,
        *,
        relay_limit: int = RELAY_LIMIT,
        recent_limit: int = RECENT_LIMIT,
    ) -> None:
        self.digest = digest
        # ``None`` once the fill stopped caching (or when it never could start).
        self.writer = writer
        # How to read the object once committed (its temp file is gone by then).
        self._reopen = reopen
        self.size: int | None = None
        self.written = 0
        self.committed = False
        # The content verified: committed, or relayed without caching.
        self.verified = False
        self.error: BaseException | None = None
        # Why the fill stopped caching, if it did.
        self.spilled: OSError | None = None
        self.readers = 0
        # Bytes below ``_disk_end`` are in the temp file (for readers that opened it).
        self._disk_end = 0
        self._tail = Tail(0)
        self._relay_limit = relay_limit
        self._recent: deque[tuple[int, bytes]] = deque()
        self._recent_bytes = 0
        self._recent_limit = recent_limit
        loop = asyncio.get_running_loop()
        self._progress: asyncio.Future[None] = loop.create_future()
        self._consumed: asyncio.Future[None] = loop.create_future()

    @property
    def done(self) -> bool:
        return self.verified or self.error is not None

    @property
    def caching(self) -> bool:
        return self.writer is not None

    def _notify(self) -> None:
        if not self._progress.done():
            self._progress.set_result(None)
        self._progress = asyncio.get_running_loop().create_future()

    def _notify_consumed(self) -> None:
        if not self._consumed.done():
            self._consumed.set_result(None)
        self._consumed = asyncio.get_running_loop().create_future()

    # Producer side ----------------------------------------------------------------------

    def started(self, size: int) -> None:
        """Upstream answered and announced ``size`` bytes."""
        self.size = size
        self._notify()

    async def reserve(self, size: int) -> None:
        """Claim room for the whole blob if the writer can; stop caching if there is none."""
        if isinstance(self.writer, Reserving):
            try:
                await self.writer.reserve(size)
            except OSError as exc:
                await self.stop_caching(exc)

    async def append(self, chunk: bytes) -> None:
        """Write ``chunk`` to the cache, or relay it once the disk refused; then publish it.

        Waits while a relaying fill's slowest reader lags more than the relay limit.
        """
        if self.writer is not None:
            try:
                await self.writer.write(chunk)
            except OSError as exc:
                await self.stop_caching(exc)
        if self.writer is None:
            self._tail.append(chunk)
        self._remember(chunk)
        self.advanced(len(chunk))
        while self.writer is None and len(self._tail) > self._relay_limit and self._tail.readers:
            await asyncio.shield(self._consumed)

    def _remember(self, chunk: bytes) -> None:
        """Keep the newest chunks in memory: readers at the head (every joiner of a cold
        blob, most of the time) send them without reading back (or decrypting) the file."""
        self._recent.append((self.written, chunk))
        self._recent_bytes += len(chunk)
        while self._recent_bytes > self._recent_limit and len(self._recent) > 1:
            _, dropped = self._recent.popleft()
            self._recent_bytes -= len(dropped)

    def _recalled(self, offset: int, length: int) -> bytes | None:
        for start, data in reversed(self._recent):
            if start <= offset < start + len(data):
                return data[offset - start : offset - start + length]
        return None

    async def stop_caching(self, reason: OSError) -> None:
        """Drop the temp file; from now on the blob is relayed from memory."""
        writer, self.writer = self.writer, None
        self.spilled = reason
        self._disk_end = self.written
        self._tail.reset(self.written)
        if writer is not None:
            await writer.abort()

    def advanced(self, count: int) -> None:
        """``count`` more bytes were written to the writer (or the relay tail)."""
        self.written += count
        self._notify()

    async def complete(self) -> bool:
        """The content verified: commit it (``True``), or, if the disk refuses the commit or the
        fill stopped caching earlier, let the readers finish uncached (``False``)."""
        if self.writer is not None:
            try:
                await self.writer.commit()
            except OSError as exc:
                await self.stop_caching(exc)
            else:
                self.committed = True
        self.verified = True
        self._notify()
        return self.committed

    async def discard(self) -> None:
        """Throw away what was written (the fill is failing)."""
        writer, self.writer = self.writer, None
        if writer is not None:
            await writer.abort()

    def finished(self) -> None:
        """The content was verified and committed."""
        self.committed = True
        self.verified = True
        self._notify()

    def failed(self, error: BaseException) -> None:
        """The fill ended without verifying (upstream error, mismatch, timeout)."""
        self.error = error
        self._notify()

    # Consumer side ----------------------------------------------------------------------

    async def wait_started(self) -> int:
        """The blob's size, once upstream answered; raises the fill's error if it failed first."""
        while self.size is None:
            if self.error is not None:
                raise self.error
            await asyncio.shield(self._progress)
        return self.size

    def can_serve(self, first: int) -> bool:
        """Whether a reader attaching now at ``first`` will get its bytes from this fill (not
        so once a fill that stopped caching dropped them, or ended uncached)."""
        if self.caching or self.committed or self.error is not None:
            return True
        return not self.verified and first >= self._tail.start

    async def _wait_beyond(self, offset: int) -> int:
        """Wait until more than ``offset`` bytes are written; return how many are."""
        while self.written <= offset:
            if self.error is not None:
                raise FillFailed(self.digest, self.error)
            if self.verified:
                raise EOFError(f"read at {offset} past the end of {self.digest}")
            await asyncio.shield(self._progress)
        return self.written

    def stream(self, first: int, last: int, chunk_size: int) -> AsyncGenerator[bytes, None]:
        """Attach a reader now and yield bytes ``first..last`` as they are written.

        Raises ``FillFailed`` if the fill fails before the last byte was verified, even when
        every requested byte had already been written: unverified content never completes.
        """
        cursor = self._tail.attach(first)
        self.readers += 1
        reader: list[RangeReader] = []
        if self.writer is not None:
            try:
                reader.append(self.writer.reader())
            except FileNotFoundError:
                pass  # committed (or failed) already: reopened when first read

        async def release() -> None:
            self.readers -= 1
            self._tail.detach(cursor)
            self._notify_consumed()
            for opened in reader:
                await opened.close()

        return Guarded(self._stream(cursor, first, last, chunk_size, reader), release)

    async def _stream(
        self, cursor: int, first: int, last: int, chunk_size: int, reader: list[RangeReader]
    ) -> AsyncGenerator[bytes, None]:
        offset = first
        while offset <= last:
            available = await self._wait_beyond(offset)
            length = min(chunk_size, available - offset, last - offset + 1)
            data = await self._read(reader, offset, length)
            if not data:
                raise FillFailed(self.digest, EOFError("temp file shorter than written"))
            offset += len(data)
            self._tail.move(cursor, offset)
            self._notify_consumed()
            if offset > last:
                # Hold the last chunk until the whole blob verified.
                while not self.verified:
                    if self.error is not None:
                        raise FillFailed(self.digest, self.error)
                    await asyncio.shield(self._progress)
            yield data

    async def _read(self, reader: list[RangeReader], offset: int, length: int) -> bytes:
        recent = self._recalled(offset, length)
        if recent is not None:
            return recent
        if not self.caching and offset >= self._disk_end and not self.committed:
            try:
                return self._tail.read(offset, length)
            except LookupError as exc:
                raise FillFailed(self.digest, exc) from None
        if not self.caching and not self.committed:
            length = min(length, self._disk_end - offset)
        if not reader:
            reader.append(await self._reopened())
        return await reader[0].read(offset, length)

    async def _reopened(self) -> RangeReader:
        """A reader of the committed object (the temp file is gone by then)."""
        if self.committed and self._reopen is not None:
            opened = await self._reopen()
            if opened is not None:
                return opened[0]
        raise FillFailed(self.digest, self.error or FileNotFoundError("fill ended"))
