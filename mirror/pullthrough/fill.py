"""One in-progress cache fill of a blob, readable by any number of clients as it grows.

The fill's task owns the upstream download; clients only read what has been written. So a
client that goes away cancels nothing, and every joiner of a cold blob shares one upstream GET.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable

from mirror.oci.digest import Digest
from mirror.store.blobs import BlobWriter, RangeReader


class FillFailed(Exception):
    """The fill ended without committing; the bytes a client got so far must not complete."""

    def __init__(self, digest: Digest, cause: BaseException) -> None:
        self.digest = digest
        self.cause = cause
        super().__init__(f"fill of {digest} failed: {cause!r}")


class Fill:
    """Progress of one blob fill: size once known, bytes written, and how it ended."""

    def __init__(
        self,
        digest: Digest,
        writer: BlobWriter,
        reopen: Callable[[], Awaitable[tuple[RangeReader, int] | None]] | None = None,
    ) -> None:
        self.digest = digest
        self.writer = writer
        # How to read the object once committed (its temp file is gone by then).
        self._reopen = reopen
        self.size: int | None = None
        self.written = 0
        self.committed = False
        self.error: BaseException | None = None
        self.readers = 0
        self._progress: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def done(self) -> bool:
        return self.committed or self.error is not None

    def _notify(self) -> None:
        if not self._progress.done():
            self._progress.set_result(None)
        self._progress = asyncio.get_running_loop().create_future()

    # Producer side ----------------------------------------------------------------------

    def started(self, size: int) -> None:
        """Upstream answered and announced ``size`` bytes."""
        self.size = size
        self._notify()

    def advanced(self, count: int) -> None:
        """``count`` more bytes were written to the writer."""
        self.written += count
        self._notify()

    def finished(self) -> None:
        """The content was verified and committed."""
        self.committed = True
        self._notify()

    def failed(self, error: BaseException) -> None:
        """The fill ended without committing (upstream error, mismatch, timeout)."""
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

    async def _wait_beyond(self, offset: int) -> int:
        """Wait until more than ``offset`` bytes are written; return how many are."""
        while self.written <= offset:
            if self.error is not None:
                raise FillFailed(self.digest, self.error)
            if self.committed:
                raise EOFError(f"read at {offset} past the end of {self.digest}")
            await asyncio.shield(self._progress)
        return self.written

    async def _reader(self) -> RangeReader:
        """A reader of the temp file, or of the committed object if the fill already ended."""
        try:
            return self.writer.reader()
        except FileNotFoundError:
            if self.committed and self._reopen is not None:
                opened = await self._reopen()
                if opened is not None:
                    return opened[0]
            raise FillFailed(self.digest, self.error or FileNotFoundError("fill ended")) from None

    async def stream(self, first: int, last: int, chunk_size: int) -> AsyncGenerator[bytes, None]:
        """Yield bytes ``first..last`` as they are written.

        Raises ``FillFailed`` if the fill fails before the last byte was verified, even when
        every requested byte had already been written: unverified content never completes.
        """
        reader = await self._reader()
        self.readers += 1
        try:
            offset = first
            while offset <= last:
                available = await self._wait_beyond(offset)
                length = min(chunk_size, available - offset, last - offset + 1)
                data = await reader.read(offset, length)
                if not data:
                    raise FillFailed(self.digest, EOFError("temp file shorter than written"))
                offset += len(data)
                if offset > last:
                    # Hold the last chunk until the whole blob verified.
                    while not self.committed:
                        if self.error is not None:
                            raise FillFailed(self.digest, self.error)
                        await asyncio.shield(self._progress)
                yield data
        finally:
            self.readers -= 1
            await reader.close()
