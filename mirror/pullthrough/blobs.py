"""Blobs pulled through: warm from the store, cold streamed from one shared, verified fill."""

from __future__ import annotations

import asyncio
import errno
import logging
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from mirror.blobstore.interface import BlobStore, BlobWriter, RangeReader, iter_range
from mirror.errors import CorruptObject, DigestMismatch, RegistryError, UpstreamUnavailable
from mirror.metrics import Metrics
from mirror.oci.digest import Digest
from mirror.oci.ranges import ByteRange, resolve_range
from mirror.pullthrough.fill import Fill, FillFailed
from mirror.pullthrough.guard import Guarded
from mirror.pullthrough.singleflight import SingleFlight
from mirror.upstream.client import UpstreamClient
from mirror.upstream.routing import Target
from mirror.verify import Verifier

log = logging.getLogger(__name__)


def _reason(exc: OSError) -> str:
    """A metric label for why the disk refused: the errno name (``ENOSPC``)."""
    return errno.errorcode.get(exc.errno or 0, "OSError")


# Looks up the client of an upstream by its canonical host.
Upstreams = Callable[[str], UpstreamClient]


@dataclass(frozen=True, slots=True)
class BlobBody:
    """A blob ready to send: its size, the range answered (``None`` for all), and the bytes."""

    size: int
    range: ByteRange | None
    chunks: AsyncGenerator[bytes, None]
    from_cache: bool


class BlobService:
    """Serves blobs by digest, filling the cache from upstream exactly once per digest."""

    def __init__(
        self,
        store: BlobStore,
        upstreams: Upstreams,
        metrics: Metrics,
        *,
        chunk_size: int,
        fill_timeout: float,
        resume_attempts: int = 3,
    ) -> None:
        self._store = store
        self._upstreams = upstreams
        self._metrics = metrics
        self._chunk_size = chunk_size
        self._fill_timeout = fill_timeout
        self._resume_attempts = resume_attempts
        self._fills: dict[Digest, Fill] = {}
        # Blobs being served, by digest: retention leaves them alone.
        self._leases: Counter[str] = Counter()
        self._spills_reported: set[Digest] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._heads: SingleFlight[int] = SingleFlight()

    async def stat(self, target: Target, digest: Digest) -> int:
        """The blob's size: from the cache, a running fill, or an upstream ``HEAD``."""
        size = await self._store.stat(digest)
        if size is not None:
            self._metrics.cache_hits.labels("blob_head").inc()
            return size
        fill = self._fills.get(digest)
        if fill is not None:
            return await fill.wait_started()
        self._metrics.cache_misses.labels("blob_head").inc()
        client = self._upstreams(target.upstream)
        return await self._heads.do(
            (target.upstream, digest), lambda: client.head_blob(target.repo, digest)
        )

    def in_use(self, digest: str) -> bool:
        """Whether a blob is being filled or served now (retention must not delete it)."""
        return self._leases[digest] > 0 or any(str(d) == digest for d in self._fills)

    def _lease(self, digest: Digest) -> Callable[[], None]:
        """Hold ``digest`` in use until the returned release is called (once)."""
        key = str(digest)
        self._leases[key] += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._leases[key] -= 1
                if self._leases[key] <= 0:
                    del self._leases[key]

        return release

    async def open(
        self, target: Target, digest: Digest, range_spec: tuple[int | None, int | None] | None
    ) -> BlobBody:
        """Open the blob for sending, the whole of it or one range.

        The body holds a lease on the blob until it is exhausted or closed.
        """
        release = self._lease(digest)
        try:
            return await self._open(target, digest, range_spec, release)
        except BaseException:
            release()
            raise

    async def _open(
        self,
        target: Target,
        digest: Digest,
        range_spec: tuple[int | None, int | None] | None,
        release: Callable[[], None],
    ) -> BlobBody:
        opened = await self._store.open(digest)
        if opened is not None:
            reader, size = opened
            try:
                byte_range = resolve_range(range_spec, size) if range_spec else None
                first, last = (byte_range.first, byte_range.last) if byte_range else (0, size - 1)
                # Read the first piece before any header is sent: if it fails its check, the
                # store has evicted the object and this request refetches it instead.
                head = await reader.read(first, min(self._chunk_size, last - first + 1))
            except CorruptObject:
                await reader.close()
            except BaseException:
                await reader.close()
                raise
            else:
                self._metrics.cache_hits.labels("blob").inc()

                async def close_warm() -> None:
                    release()
                    await reader.close()

                chunks = Guarded(self._warm(reader, head, first + len(head), last), close_warm)
                return BlobBody(size, byte_range, chunks, True)
        fill = self._fills.get(digest)
        if fill is None:
            self._metrics.cache_misses.labels("blob").inc()
            fill = self._start_fill(target, digest)
        else:
            self._metrics.singleflight_joins.labels("blob").inc()
        size = await fill.wait_started()
        byte_range = resolve_range(range_spec, size) if range_spec else None
        first, last = (byte_range.first, byte_range.last) if byte_range else (0, size - 1)
        if not fill.can_serve(first):
            # The fill stopped caching and no longer holds these bytes: go to upstream alone.
            self._metrics.uncached_streams.labels("late_joiner").inc()
            inner = self._direct(target, digest, size, first, last)
        else:
            inner = fill.stream(first, last, self._chunk_size)

        async def close_fill() -> None:
            release()
            await inner.aclose()

        return BlobBody(size, byte_range, Guarded(inner, close_fill), False)

    async def _warm(
        self, reader: RangeReader, head: bytes, first: int, last: int
    ) -> AsyncGenerator[bytes, None]:
        """The rest of a cached blob after ``head``; a chunk that fails its check raises
        ``CorruptObject`` (the store evicted it; the route cuts the connection)."""
        if head:
            self._metrics.bytes_from_cache.inc(len(head))
            yield head
        async for chunk in iter_range(reader, first, last, self._chunk_size):
            self._metrics.bytes_from_cache.inc(len(chunk))
            yield chunk

    async def _direct(
        self, target: Target, digest: Digest, size: int, first: int, last: int
    ) -> AsyncGenerator[bytes, None]:
        """Bytes ``first..last`` straight from upstream, uncached but verified: the whole blob
        is hashed and the last chunk held until it matched."""
        client = self._upstreams(target.upstream)
        verifier = Verifier(digest, size)
        held = b""
        offset = 0
        try:
            async with client.open_blob(target.repo, digest) as blob:
                async for chunk in blob.iter_chunks(self._chunk_size):
                    verifier.update(chunk)
                    self._metrics.bytes_from_upstream.inc(len(chunk))
                    part = chunk[max(first - offset, 0) : max(last + 1 - offset, 0)]
                    offset += len(chunk)
                    if part:
                        if held:
                            yield held
                        held = part
            verifier.verify()
        except (RegistryError, DigestMismatch) as exc:
            raise FillFailed(digest, exc) from exc
        if held:
            yield held

    def _start_fill(self, target: Target, digest: Digest) -> Fill:
        try:
            writer: BlobWriter | None = self._store.create(digest)
        except OSError as exc:
            # Not even a temp file: relay this blob to its readers from memory.
            log.warning("cannot cache %s (%s); streaming it uncached", digest, exc)
            self._metrics.uncached_streams.labels(_reason(exc)).inc()
            writer = None
        fill = Fill(digest, writer, lambda: self._store.open(digest))
        self._fills[digest] = fill
        task = asyncio.create_task(self._run_fill(fill, target))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return fill

    async def _run_fill(self, fill: Fill, target: Target) -> None:
        """Download, verify and commit one blob; runs on its own, whatever its clients do."""
        self._metrics.fills_started.inc()
        self._metrics.fills_in_progress.inc()
        try:
            async with asyncio.timeout(self._fill_timeout):
                await self._download(fill, target)
            committed = await fill.complete()
            self._note_spill(fill)
        except BaseException as exc:
            await fill.discard()
            reason = type(exc).__name__
            if isinstance(exc, DigestMismatch):
                self._metrics.digest_mismatches.labels("blob").inc()
                log.error(
                    "upstream %s sent bad content for %s: %s", target.upstream, fill.digest, exc
                )
            elif isinstance(exc, TimeoutError):
                log.error("fill of %s timed out after %ss", fill.digest, self._fill_timeout)
            elif isinstance(exc, RegistryError) and exc.status < 500:
                log.info("fill of %s from %s refused: %s", fill.digest, target.upstream, exc)
            else:
                log.warning("fill of %s from %s failed: %r", fill.digest, target.upstream, exc)
            self._metrics.fills_aborted.labels(reason).inc()
            fill.failed(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            if committed:
                self._metrics.fills_committed.inc()
        finally:
            self._metrics.fills_in_progress.dec()
            self._fills.pop(fill.digest, None)
            self._spills_reported.discard(fill.digest)

    def _note_spill(self, fill: Fill) -> None:
        """Report, once, that a fill stopped caching."""
        if fill.spilled is not None and fill.digest not in self._spills_reported:
            self._spills_reported.add(fill.digest)
            log.warning("cannot cache %s (%s); relaying it uncached", fill.digest, fill.spilled)
            self._metrics.uncached_streams.labels(_reason(fill.spilled)).inc()

    async def _download(self, fill: Fill, target: Target) -> None:
        """Fetch the whole blob into the fill's writer and verify it.

        A transfer that breaks mid-blob is resumed with ``Range`` from the last byte absorbed,
        up to ``resume_attempts`` times; the hash carries on over the resumed bytes.
        """
        client = self._upstreams(target.upstream)
        verifier: Verifier | None = None
        attempt = 0
        while True:
            try:
                async with client.open_blob(target.repo, fill.digest, fill.written) as blob:
                    size = blob.size
                    if size is None:
                        # A chunked answer (some blob CDNs): the registry's HEAD names the size,
                        # and the verifier holds the content to it.
                        size = fill.size
                        if size is None:
                            size = await client.head_blob(target.repo, fill.digest)
                    if verifier is None:
                        fill.started(size)
                        await fill.reserve(size)
                        self._note_spill(fill)
                        verifier = Verifier(fill.digest, size)
                    elif size != fill.size:
                        raise DigestMismatch(
                            str(fill.digest),
                            "(size changed on resume)",
                            expected_size=fill.size,
                            actual_size=size,
                        )
                    await self._copy(blob.iter_chunks(self._chunk_size), verifier, fill)
                verifier.verify()
                return
            except UpstreamUnavailable as exc:
                attempt += 1
                if verifier is None or attempt > self._resume_attempts:
                    raise
                self._metrics.fills_resumed.inc()
                log.warning(
                    "resuming fill of %s at byte %d (attempt %d): %s",
                    fill.digest,
                    fill.written,
                    attempt,
                    exc,
                )

    async def _copy(self, chunks: AsyncIterator[bytes], verifier: Verifier, fill: Fill) -> None:
        """Hash and write each chunk off the event loop, in order, while the next one arrives.

        Hashing and writing of chunk N run in worker threads (both release the GIL) in
        parallel with each other and with the network read of chunk N+1. When the transfer
        breaks, the chunk in flight is still absorbed, so ``fill.written`` is exactly what the
        writer (or the memory relay, once the disk refused) and the hash have seen.
        """
        loop = asyncio.get_running_loop()
        pending: asyncio.Future[Any] | None = None

        async def drain() -> None:
            nonlocal pending
            if pending is not None:
                job, pending = pending, None
                await job
                self._note_spill(fill)

        try:
            async for chunk in chunks:
                await drain()
                pending = asyncio.gather(
                    loop.run_in_executor(None, verifier.update, chunk), fill.append(chunk)
                )
                self._metrics.bytes_from_upstream.inc(len(chunk))
        finally:
            await drain()

    async def close(self) -> None:
        """Cancel fills still running (at shutdown); their temp files are discarded."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
