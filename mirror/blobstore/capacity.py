"""The cache size limit, as a ``BlobStore`` wrapping the real one.

Every byte that reaches the disk is claimed first (fills claim their whole size up front when
it is known), so the cache never exceeds ``max_size``. A claim that does not fit first asks
retention to evict least recently pulled images; if there is still no room it fails like a
full disk (``ENOSPC``), and the pull goes on uncached. Crossing the high watermark starts a
background eviction down to the low watermark.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

from mirror.blobstore.interface import BlobStore, BlobWriter, Publishing, RangeReader
from mirror.blobstore.staging import Staged, Stager
from mirror.metrics import Metrics
from mirror.oci.digest import Digest

log = logging.getLogger(__name__)

# Evicts until the cache holds at most the given number of bytes (or nothing is evictable).
Evictor = Callable[[int], Coroutine[Any, Any, None]]


class CapacityLimit:
    """A ``BlobStore`` that keeps ``inner`` within ``max_size`` bytes (0: no limit)."""

    def __init__(
        self, inner: BlobStore, metrics: Metrics, *, max_size: int, high: float, low: float
    ) -> None:
        self.inner = inner
        self.max_size = max_size
        self.high_bytes = int(max_size * high)
        self.low_bytes = int(max_size * low)
        self.used = 0
        self.in_flight = 0
        self.evictor: Evictor | None = None
        self._metrics = metrics
        self._background: asyncio.Task[None] | None = None

    @property
    def total(self) -> int:
        """Bytes stored plus bytes claimed by writes in progress."""
        return self.used + self.in_flight

    async def measure(self) -> int:
        """Count what is stored (at start-up); returns the bytes used."""
        used = 0
        for digest in list(self.inner.digests()):
            size = await self.inner.stat(digest)
            used += self.inner.footprint(size) if size is not None else 0
        self.used = used
        self._metrics.cache_size.set(self.total)
        return used

    def _fits(self, size: int) -> bool:
        return self.max_size == 0 or self.total + size <= self.max_size

    async def claim(self, size: int) -> None:
        """Claim ``size`` bytes, evicting first if needed; ``OSError(ENOSPC)`` if no room."""
        if self.max_size and size > self.max_size:
            # Never fits: evicting the whole cache for it would only hurt.
            raise OSError(errno.ENOSPC, f"{size} bytes exceed the cache size {self.max_size}")
        if not self._fits(size) and self.evictor is not None:
            await self.evictor(max(min(self.low_bytes, self.max_size - size), 0))
        if not self._fits(size):
            raise OSError(
                errno.ENOSPC,
                f"cache size limit reached ({self.total} + {size} > {self.max_size} bytes)",
            )
        self.in_flight += size
        self._metrics.cache_size.set(self.total)

    def settle(self, claimed: int, stored: int) -> None:
        """A write that claimed ``claimed`` bytes ended having stored ``stored`` of them."""
        self.in_flight -= claimed
        self.used += stored
        self._metrics.cache_size.set(self.total)
        if self.max_size and self.total > self.high_bytes:
            self._evict_in_background()

    def _evict_in_background(self) -> None:
        if self.evictor is None or (self._background and not self._background.done()):
            return
        log.info("cache at %d bytes, above its high watermark %d", self.total, self.high_bytes)
        self._background = asyncio.create_task(self.evictor(self.low_bytes))
        self._background.add_done_callback(_log_failure)

    async def settled(self) -> None:
        """Wait for a background eviction still running to end (its outcome is logged)."""
        if self._background is not None:
            await asyncio.gather(asyncio.shield(self._background), return_exceptions=True)

    async def close(self) -> None:
        """Cancel a background eviction still running and wait for it."""
        if self._background is not None:
            self._background.cancel()
            await asyncio.gather(self._background, return_exceptions=True)

    # BlobStore --------------------------------------------------------------------------

    async def stat(self, digest: Digest) -> int | None:
        """The inner store's size of the object, or ``None``."""
        return await self.inner.stat(digest)

    async def open(self, digest: Digest) -> tuple[RangeReader, int] | None:
        """A reader from the inner store, or ``None``."""
        return await self.inner.open(digest)

    async def get(self, digest: Digest) -> bytes | None:
        """The whole object from the inner store, or ``None``."""
        return await self.inner.get(digest)

    async def put(self, digest: Digest, data: bytes) -> None:
        """Claim room for the object's footprint, then store it (an object already there costs
        nothing)."""
        if await self.inner.stat(digest) is not None:
            return  # content-addressed: already there
        needed = self.inner.footprint(len(data))
        await self.claim(needed)
        stored = 0
        try:
            await self.inner.put(digest, data)
            stored = needed
        finally:
            self.settle(needed, stored)

    def create(self, digest: Digest) -> CappedWriter:
        """A writer that claims room as it writes."""
        return CappedWriter(self, self.inner.create(digest))

    async def delete(self, digest: Digest) -> bool:
        """Delete from the inner store and give its footprint back to the limit."""
        size = await self.inner.stat(digest)
        deleted = await self.inner.delete(digest)
        if deleted and size is not None:
            self.used -= self.inner.footprint(size)
            self._metrics.cache_size.set(self.total)
        return deleted

    def digests(self) -> Iterator[Digest]:
        """The inner store's digests."""
        return self.inner.digests()

    def footprint(self, size: int) -> int:
        """The inner store's footprint of ``size`` bytes."""
        return self.inner.footprint(size)

    async def stage(self, directory: Path) -> CappedStaged:
        """The inner store's staged upload, installed only once its footprint is claimed."""
        if not isinstance(self.inner, Stager):
            raise TypeError(f"{type(self.inner).__name__} cannot stage uploads")
        return CappedStaged(self, await self.inner.stage(directory))

    def staged_footprint(self, size: int) -> int:
        """The inner store's footprint of an installed upload."""
        return self.inner.footprint(size)


class CappedStaged:
    """A staged upload whose install claims room first (an object already stored costs
    nothing and is not replaced)."""

    def __init__(self, limit: CapacityLimit, inner: Staged) -> None:
        self._limit = limit
        self._inner = inner

    @property
    def size(self) -> int:
        """The bytes received so far."""
        return self._inner.size

    async def write(self, *pieces: bytes) -> None:
        """The inner staged object's ``write`` (staged bytes are claimed at install)."""
        await self._inner.write(*pieces)

    def mark(self) -> None:
        """The inner ``mark``."""
        self._inner.mark()

    def rollback(self) -> bool:
        """The inner ``rollback``."""
        return self._inner.rollback()

    async def flush(self) -> None:
        """The inner ``flush``."""
        await self._inner.flush()

    def verify(self, digest: Digest) -> None:
        """The inner ``verify``."""
        self._inner.verify(digest)

    async def install(self, digest: Digest) -> None:
        """Verify; unless the store holds ``digest`` already, claim its footprint (evicting
        if needed, ``ENOSPC`` if there is no room) and install."""
        self._inner.verify(digest)
        if await self._limit.inner.stat(digest) is not None:
            return  # content-addressed: the stored copy is this content
        needed = self._limit.footprint(self._inner.size)
        await self._limit.claim(needed)
        stored = 0
        try:
            await self._inner.install(digest)
            stored = needed
        finally:
            self._limit.settle(needed, stored)

    def close(self) -> None:
        """The inner ``close``."""
        self._inner.close()


class CappedWriter:
    """A ``BlobWriter`` that claims room before writing (``reserve`` claims it all at once)."""

    def __init__(self, limit: CapacityLimit, inner: BlobWriter) -> None:
        self._limit = limit
        self._inner = inner
        self._claimed = 0
        self._written = 0
        self._done = False

    async def reserve(self, size: int) -> None:
        """Claim the footprint of a ``size``-byte object at once (a fill that knows its size)."""
        needed = self._limit.footprint(size)
        if needed > self._claimed:
            await self._limit.claim(needed - self._claimed)
            self._claimed = needed

    async def write(self, chunk: bytes) -> None:
        """Claim what ``chunk`` adds to the footprint, then write it; ``OSError`` as the inner
        writer."""
        short = self._limit.footprint(self._written + len(chunk)) - self._claimed
        if short > 0:
            await self._limit.claim(short)
            self._claimed += short
        await self._inner.write(chunk)
        self._written += len(chunk)

    def reader(self) -> RangeReader:
        """The inner writer's reader."""
        return self._inner.reader()

    async def commit(self) -> None:
        """Commit the inner writer and settle the claim at the stored footprint."""
        await self._inner.commit()
        self._end(self._limit.footprint(self._written))

    def prepare(self) -> None:
        """Prepare the inner writer's publication (nothing, if it cannot publish)."""
        if isinstance(self._inner, Publishing):
            self._inner.prepare()

    async def publish(self) -> None:
        """Publish the inner writer (commit it, if it cannot publish) and settle the claim."""
        if isinstance(self._inner, Publishing):
            await self._inner.publish()
        else:
            await self._inner.commit()
        self._end(self._limit.footprint(self._written))

    async def abort(self) -> None:
        """Abort the inner writer and give the whole claim back."""
        try:
            await self._inner.abort()
        finally:
            self._end(0)

    def _end(self, stored: int) -> None:
        if not self._done:
            self._done = True
            self._limit.settle(self._claimed, stored)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background eviction failed", exc_info=task.exception())
