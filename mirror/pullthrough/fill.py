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

from mirror.blobstore.interface import BlobWriter, Publishing, RangeReader
from mirror.oci.digest import Digest
from mirror.pullthrough.guard import Guarded
from mirror.pullthrough.relay import Tail
from mirror.verify import hold_last

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
    """One blob fill: the producer (the fill task) appends verified-so-far bytes and ends it;
    any number of readers stream ranges of it as it grows.

    ``on_spill`` is called once, with the disk's refusal, when the fill stops caching.
    """

    def __init__(
        self,
        digest: Digest,
        writer: BlobWriter | None,
        reopen: Callable[[], Awaitable[tuple[RangeReader, int] | None]] | None = None,
        *,
        on_spill: Callable[[OSError], None] | None = None,
        relay_limit: int = RELAY_LIMIT,
        recent_limit: int = RECENT_LIMIT,
    ) -> None:
        self.digest = digest
        # ``None`` once the fill stopped caching (or when it never could start).
        self._writer = writer
        # How to read the object once committed (its temp file is gone by then).
        self._reopen = reopen
        self._on_spill = on_spill
        self._size: int | None = None
        self._written = 0
        self._committed = False
        # Another fill installed the object first; this one's temp file is gone.
        self._superseded = False
        # The content verified: committed, or relayed without caching.
        self._verified = False
        self._error: BaseException | None = None
        # Why the fill stopped caching, if it did.
        self._spilled: OSError | None = None
        self._readers = 0
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

    # What anyone may observe --------------------------------------------------------------

    @property
    def done(self) -> bool:
        """The fill ended: verified, or failed."""
        return self._verified or self._error is not None

    @property
    def caching(self) -> bool:
        """The bytes still go to the cache (not relayed from memory)."""
        return self._writer is not None

    @property
    def verified(self) -> bool:
        """The content verified (committed, or relayed uncached)."""
        return self._verified

    @property
    def committed(self) -> bool:
        """The verified content is in the cache."""
        return self._committed

    @property
    def written(self) -> int:
        """Bytes appended so far."""
        return self._written

    @property
    def spilled(self) -> OSError | None:
        """Why the fill stopped caching, if it did."""
        return self._spilled

    @property
    def readers(self) -> int:
        """Readers attached now."""
        return self._readers

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
        self._size = size
        self._notify()

    async def reserve(self, size: int) -> None:
        """Claim room for the whole blob if the writer can; stop caching if there is none."""
        if isinstance(self._writer, Reserving):
            try:
                await self._writer.reserve(size)
            except OSError as exc:
                await self._stop_caching(exc)

    async def append(self, chunk: bytes) -> None:
        """Publish ``chunk`` to the readers, then write it to the cache (or relay it once the
        disk refused). The caller appends one chunk at a time.

        Readers get the chunk from memory while it is sealed and written (the newest chunk is
        always among the remembered ones), so a client's bytes never wait for the disk. Waits
        while a relaying fill's slowest reader lags more than the relay limit.
        """
        self._remember(chunk)
        self._written += len(chunk)
        self._notify()
        if self._writer is not None:
            try:
                await self._writer.write(chunk)
            except OSError as exc:
                await self._stop_caching(exc, unstored=chunk)
        else:
            self._tail.append(chunk)
        while self._writer is None and len(self._tail) > self._relay_limit and self._tail.readers:
            await asyncio.shield(self._consumed)

    def _remember(self, chunk: bytes) -> None:
        """Keep the newest chunks in memory: readers at the head (every joiner of a cold
        blob, most of the time) send them without reading back (or decrypting) the file."""
        self._recent.append((self._written, chunk))
        self._recent_bytes += len(chunk)
        while self._recent_bytes > self._recent_limit and len(self._recent) > 1:
            _, dropped = self._recent.popleft()
            self._recent_bytes -= len(dropped)

    def _recalled(self, offset: int, length: int) -> bytes | None:
        """Up to ``length`` bytes at ``offset`` from the newest chunks (to the end of the one
        holding ``offset``; the chunk itself when asked for all of it), or ``None``."""
        for start, data in reversed(self._recent):
            if start <= offset < start + len(data):
                if offset == start and length >= len(data):
                    return data
                return data[offset - start : offset - start + length]
        return None

    async def _stop_caching(self, reason: OSError, unstored: bytes = b"") -> None:
        """Drop the temp file; from now on the blob is relayed from memory, starting with
        ``unstored`` (the published chunk the disk refused)."""
        writer, self._writer = self._writer, None
        self._spilled = reason
        self._disk_end = self._written - len(unstored)
        self._tail.reset(self._disk_end)
        if unstored:
            self._tail.append(unstored)
        if writer is not None:
            await writer.abort()
        if self._on_spill is not None:
            self._on_spill(reason)

    async def complete(self, *, superseded: bool = False) -> bool:
        """The content verified: commit it (``True``), or, if the disk refuses the commit or the
        fill stopped caching earlier, let the readers finish uncached (``False``).

        ``superseded``: the store already holds the object (another fill installed it first);
        this copy is discarded and readers finish from the installed one (``False``).
        """
        if self._writer is not None and superseded:
            writer, self._writer = self._writer, None
            await writer.abort()
            self._superseded = True
            self._committed = True
            self._verified = True
            self._notify()
            return False
        if self._writer is not None:
            try:
                # Visible at once, fsynced in the background: the last piece of a response is
                # released at the digest match, not after a whole blob's fsync.
                if isinstance(self._writer, Publishing):
                    await self._writer.publish()
                else:
                    await self._writer.commit()
            except OSError as exc:
                await self._stop_caching(exc)
            else:
                self._committed = True
        self._verified = True
        self._notify()
        return self._committed

    async def fail(self, error: BaseException) -> None:
        """The fill ended without verifying (upstream error, mismatch, timeout): throw away
        what was written and fail every reader with ``error``."""
        self._error = error
        writer, self._writer = self._writer, None
        if writer is not None:
            await writer.abort()
        self._notify()

    # Consumer side ----------------------------------------------------------------------

    async def wait_started(self) -> int:
        """The blob's size, once upstream answered; raises the fill's error if it failed first."""
        while self._size is None:
            if self._error is not None:
                raise self._error
            await asyncio.shield(self._progress)
        return self._size

    def can_serve(self, first: int) -> bool:
        """Whether a reader attaching now at ``first`` will get its bytes from this fill (not
        so once a fill that stopped caching dropped them, or ended uncached)."""
        if self.caching or self._committed or self._error is not None:
            return True
        return not self._verified and first >= self._tail.start

    async def _wait_beyond(self, offset: int) -> int:
        """Wait until more than ``offset`` bytes are written; return how many are. Raises
        ``FillFailed`` once the fill failed (its temp file is gone by then)."""
        while self._error is not None or self._written <= offset:
            if self._error is not None:
                raise FillFailed(self.digest, self._error)
            if self._verified:
                raise EOFError(f"read at {offset} past the end of {self.digest}")
            await asyncio.shield(self._progress)
        return self._written

    async def _until_verified(self) -> None:
        """Return once the whole blob verified; raise ``FillFailed`` if the fill fails."""
        while not self._verified:
            if self._error is not None:
                raise FillFailed(self.digest, self._error)
            await asyncio.shield(self._progress)

    def stream(self, first: int, last: int, chunk_size: int) -> AsyncGenerator[bytes, None]:
        """Attach a reader now and yield bytes ``first..last`` as they are written.

        Raises ``FillFailed`` if the fill fails before the last byte was verified, even when
        every requested byte had already been written: unverified content never completes.
        """
        cursor = self._tail.attach(first)
        self._readers += 1
        reader: list[RangeReader] = []
        if self._writer is not None:
            try:
                reader.append(self._writer.reader())
            except FileNotFoundError:
                pass  # committed (or failed) already: reopened when first read
        # Whether ``reader`` holds a reader of the temp file (dropped if the fill is superseded).
        temp = [bool(reader)]

        async def release() -> None:
            self._readers -= 1
            self._tail.detach(cursor)
            self._notify_consumed()
            for opened in reader:
                await opened.close()

        pieces = self._pieces(cursor, first, last, chunk_size, reader, temp)
        return Guarded(hold_last(pieces, last + 1 - first, self._until_verified), release)

    async def _pieces(
        self,
        cursor: int,
        first: int,
        last: int,
        chunk_size: int,
        reader: list[RangeReader],
        temp: list[bool],
    ) -> AsyncGenerator[bytes, None]:
        offset = first
        while offset <= last:
            available = min(await self._wait_beyond(offset), last + 1)
            # What is still in memory goes out as it was received (a whole piece, no copy).
            data = self._recalled(offset, available - offset)
            if data is None:
                length = min(chunk_size, available - offset)
                data = await self._read(reader, temp, offset, length)
            if not data:
                raise FillFailed(self.digest, EOFError("temp file shorter than written"))
            offset += len(data)
            self._tail.move(cursor, offset)
            self._notify_consumed()
            yield data

    async def _read(
        self, reader: list[RangeReader], temp: list[bool], offset: int, length: int
    ) -> bytes:
        if self._superseded and temp[0]:
            # The same verified bytes are installed: read them from there instead.
            temp[0] = False
            await reader.pop().close()
        if not self.caching and offset >= self._disk_end and not self._committed:
            try:
                return self._tail.read(offset, length)
            except LookupError as exc:
                raise FillFailed(self.digest, exc) from None
        if not self.caching and not self._committed:
            length = min(length, self._disk_end - offset)
        if not reader:
            reader.append(await self._reopened())
        return await reader[0].read(offset, length)

    async def _reopened(self) -> RangeReader:
        """A reader of the committed object (the temp file is gone by then)."""
        if self._committed and self._reopen is not None:
            opened = await self._reopen()
            if opened is not None:
                return opened[0]
        raise FillFailed(self.digest, self._error or FileNotFoundError("fill ended"))
