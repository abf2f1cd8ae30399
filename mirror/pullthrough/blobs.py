"""Blobs pulled through: warm from the store, cold streamed from one shared, verified fill.

A fill is shared by the clients of one upstream only (it is keyed by the upstream's endpoint
and the digest): a slow or hostile upstream of one tenancy's rule never stalls, or sets the
``Content-Length`` of, another upstream's pull of the same digest. Fills of one digest from two
upstreams may run at once; the first to verify installs the object, the other discards its copy
and finishes its readers from the installed one.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass

from mirror.blobstore.interface import (
    BlobStore,
    BlobWriter,
    Decrypting,
    FileBacked,
    Publishing,
    RangeReader,
    iter_range,
)
from mirror.errors import CorruptObject, DigestMismatch, RegistryError
from mirror.metrics import Metrics
from mirror.oci.digest import Digest
from mirror.oci.ranges import ByteRange, resolve_range
from mirror.pullthrough.download import Download
from mirror.pullthrough.fill import Fill, FillFailed
from mirror.pullthrough.guard import Guarded
from mirror.pullthrough.leases import Leases
from mirror.pullthrough.singleflight import SingleFlight
from mirror.pullthrough.source import BlobSource
from mirror.upstream.client import UpstreamClient
from mirror.upstream.endpoint import UpstreamEndpoint
from mirror.upstream.routing import Target
from mirror.verify import Verifier, hold_last, verified

log = logging.getLogger(__name__)


def _reason(exc: OSError) -> str:
    """A metric label for why the disk refused: the errno name (``ENOSPC``)."""
    return errno.errorcode.get(exc.errno or 0, "OSError")


# The most bytes a fill takes from upstream at a time (its pieces grow from one chunk to this):
# each piece costs a hash job, a seal-and-write job and a wake-up of every reader, so per MiB
# the fill's CPU falls with the piece's size; but on a loaded 2-core machine too large a piece
# leaves the client's socket idle between pieces (4 MiB: 0.26-0.33x the proxy against
# 0.45-0.57x with 1 MiB, session 19). 2 MiB won on quiet machines of both CPU kinds (cold_ab,
# 1 MiB against 2 MiB: Intel 3.60 -> 3.37 CPU-s/GiB and 340 -> 363 MB/s over 6 pairs; AMD
# 2.68 -> 2.27 CPU-s/GiB and 428 -> 503 MB/s over 4 pairs) and tied under load (71-82 against
# 79-85 MB/s at load 13-14, session 20): docs/benchmarks.md.
FILL_PIECE = 2 * 1024 * 1024


def fill_piece(chunk_size: int) -> int:
    """The fill's largest piece: ``chunk_size`` doubled until it is at least ``FILL_PIECE``."""
    piece = chunk_size
    while piece < FILL_PIECE:
        piece *= 2
    return piece


# Looks up the client of an upstream by its canonical host.
Upstreams = Callable[[str], UpstreamClient]
# Looks up where the blobs of an upstream are read from (its client, or a tier's placement).
BlobSources = Callable[[str], BlobSource]
# A fill's key: the upstream's endpoint (its host or rule key, URL and credentials) and digest.
FillKey = tuple[UpstreamEndpoint, Digest]


@dataclass(frozen=True, slots=True)
class FileSpan:
    """Where a warm plaintext body lies in an open file (the body's reader owns ``fd``), so the
    route may send it with ``sendfile`` instead of iterating ``chunks``; ``sent`` counts it."""

    fd: int
    first: int
    length: int
    sent: Callable[[int], None]


@dataclass(frozen=True, slots=True)
class SealedSpan:
    """A warm encrypted body as the route may send it from its own buffers instead of
    iterating ``chunks``: ``head`` (decrypted and checked already), then ``length`` bytes from
    ``first`` decrypted by ``reader`` (the body owns it); ``sent`` counts them."""

    head: bytes
    reader: Decrypting
    first: int
    length: int
    sent: Callable[[int], None]


@dataclass(frozen=True, slots=True)
class BlobBody:
    """A blob ready to send: its size, the range answered (``None`` for all), and the bytes
    (``file``: the same bytes as a file span, for a zero-copy send; ``sealed``: as a sealed
    span, for a send without the stream's copies)."""

    size: int
    range: ByteRange | None
    chunks: AsyncGenerator[bytes, None]
    from_cache: bool
    file: FileSpan | None = None
    sealed: SealedSpan | None = None


class BlobService:
    """Serves blobs by digest, filling the cache from each upstream at most once at a time per
    digest (one upstream GET for any number of concurrent clients of that upstream)."""

    def __init__(
        self,
        store: BlobStore,
        upstreams: BlobSources,
        metrics: Metrics,
        *,
        chunk_size: int,
        fill_timeout: float,
        leases: Leases,
        resume_attempts: int = 3,
        keep: Callable[[Digest], bool] | None = None,
    ) -> None:
        self._store = store
        # Whether a blob missing here is filled into the cache (``None``: always) or relayed to
        # its client uncached: a tier replica relays what it reads from the blob's owner.
        self._keep = keep
        self._upstreams = upstreams
        self._metrics = metrics
        self._chunk_size = chunk_size
        self._fill_timeout = fill_timeout
        self._resume_attempts = resume_attempts
        self._fills: dict[FillKey, Fill] = {}
        # Blobs being filled or served: retention leaves them alone.
        self._leases = leases
        self._tasks: set[asyncio.Task[None]] = set()
        self._heads: SingleFlight[int] = SingleFlight()
        # Told the digest of each blob a fill installed (retention hooks in here: a blob its
        # run deleted and a client pulled again).
        self.on_filled: Callable[[Digest], None] | None = None

    async def stat(self, target: Target, digest: Digest) -> int:
        """The blob's size: from the cache, a running fill, or an upstream ``HEAD``."""
        size = await self._store.stat(digest)
        if size is not None:
            self._metrics.cache_hits.labels("blob_head").inc()
            return size
        fill = self._fills.get(self._key(target, digest))
        if fill is not None:
            return await fill.wait_started()
        self._metrics.cache_misses.labels("blob_head").inc()
        client = self._upstreams(target.upstream)
        return await self._heads.do(
            (target.upstream, digest), lambda: client.head_blob(target.repo, digest)
        )

    async def open(
        self, target: Target, digest: Digest, range_spec: tuple[int | None, int | None] | None
    ) -> BlobBody:
        """Open the blob for sending, the whole of it or one range.

        The body holds a lease on the blob until it is exhausted or closed.
        """
        release = self._leases.hold(digest)
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
        cached = await self._open_cached(digest, range_spec, release)
        if cached is not None:
            return cached
        return await self._open_missing(target, digest, range_spec, release)

    async def _open_cached(
        self,
        digest: Digest,
        range_spec: tuple[int | None, int | None] | None,
        release: Callable[[], None],
    ) -> BlobBody | None:
        """The cached blob's body, or ``None`` when it is not cached (or failed its check,
        which evicted it)."""
        opened = await self._store.open(digest)
        if opened is None:
            return None
        reader, size = opened
        try:
            byte_range = resolve_range(range_spec, size) if range_spec else None
            first, last = (byte_range.first, byte_range.last) if byte_range else (0, size - 1)
            # Read the first piece before any header is sent: if it fails its check, the
            # store has evicted the object and this request refetches it instead. (A
            # plaintext file has no check to fail: it may go out with sendfile instead.)
            plain = isinstance(reader, FileBacked)
            length = 0 if plain else min(self._chunk_size, last - first + 1)
            head = await _head(reader, first, length) if length else b""
        except CorruptObject:
            await reader.close()
            return None
        except BaseException:
            await reader.close()
            raise
        self._metrics.cache_hits.labels("blob").inc()

        async def close_warm() -> None:
            release()
            await reader.close()

        chunks = Guarded(self._warm(reader, head, first + len(head), last), close_warm)
        span, sealed, count = None, None, self._metrics.bytes_from_cache.inc
        if isinstance(reader, FileBacked):
            span = FileSpan(reader.fileno(), first, last + 1 - first, count)
        elif isinstance(reader, Decrypting):
            rest = first + len(head)
            sealed = SealedSpan(head, reader, rest, last + 1 - rest, count)
        return BlobBody(size, byte_range, chunks, True, span, sealed)

    async def _open_missing(
        self,
        target: Target,
        digest: Digest,
        range_spec: tuple[int | None, int | None] | None,
        release: Callable[[], None],
    ) -> BlobBody:
        """A blob not cached: joined to its fill (started if none runs), or relayed uncached
        when this replica does not keep it."""
        fill = self._fills.get(self._key(target, digest))
        if fill is None and self._keep is not None and not self._keep(digest):
            self._metrics.cache_misses.labels("blob").inc()
            return await self._relay(target, digest, range_spec, release)
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

    async def ensure(self, target: Target, digest: Digest) -> tuple[int, bool]:
        """Have the blob in the cache (pre-warming): its size, and whether it was fetched now
        (False when it was cached already). Joins a running fill rather than starting one."""
        size = await self._store.stat(digest)
        if size is not None:
            return size, False
        body = await self.open(target, digest, None)
        async with aclosing(body.chunks) as chunks:
            async for _ in chunks:
                pass
        return body.size, not body.from_cache

    def _key(self, target: Target, digest: Digest) -> FillKey:
        """The fill ``target``'s clients share: its upstream's endpoint and the digest."""
        return (self._upstreams(target.upstream).endpoint, digest)

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
        is hashed and the last piece held until it matched."""
        client = self._upstreams(target.upstream)
        try:
            async with client.open_blob(target.repo, digest) as blob:
                upstream = self._counted(blob.iter_chunks(self._chunk_size))
                whole = verified(upstream, Verifier(digest, size))
                pieces = hold_last(_window(whole, first, last), last + 1 - first)
                async with aclosing(pieces):
                    async for piece in pieces:
                        yield piece
        except (RegistryError, DigestMismatch) as exc:
            raise FillFailed(digest, exc) from exc

    async def _relay(
        self,
        target: Target,
        digest: Digest,
        range_spec: tuple[int | None, int | None] | None,
        release: Callable[[], None],
    ) -> BlobBody:
        """A blob this server does not keep (``keep`` said no): streamed from its source to
        this client alone, verified (the whole blob hashed, the last piece held until it
        matched), and never cached."""
        self._metrics.uncached_streams.labels("relay").inc()
        client = self._upstreams(target.upstream)
        opened = contextlib.AsyncExitStack()
        try:
            blob = await opened.enter_async_context(client.open_blob(target.repo, digest))
            size = (
                blob.size if blob.size is not None else await client.head_blob(target.repo, digest)
            )
            byte_range = resolve_range(range_spec, size) if range_spec else None
        except BaseException:
            await opened.aclose()
            raise
        first, last = (byte_range.first, byte_range.last) if byte_range else (0, size - 1)

        async def relayed() -> AsyncGenerator[bytes, None]:
            whole = verified(
                self._counted(blob.iter_chunks(self._chunk_size)), Verifier(digest, size)
            )
            pieces = hold_last(_window(whole, first, last), last + 1 - first)
            try:
                async with aclosing(pieces):
                    async for piece in pieces:
                        yield piece
            except (RegistryError, DigestMismatch) as exc:
                raise FillFailed(digest, exc) from exc

        async def close() -> None:
            release()
            await opened.aclose()

        return BlobBody(size, byte_range, Guarded(relayed(), close), False)

    async def _counted(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            self._metrics.bytes_from_upstream.inc(len(chunk))
            yield chunk

    def _start_fill(self, target: Target, digest: Digest) -> Fill:
        try:
            writer: BlobWriter | None = self._store.create(digest)
        except OSError as exc:
            # Not even a temp file: relay this blob to its readers from memory.
            log.warning("cannot cache %s (%s); streaming it uncached", digest, exc)
            self._metrics.uncached_streams.labels(_reason(exc)).inc()
            writer = None
        if isinstance(writer, Publishing):
            # Its journal entry is made durable while the bytes arrive, not at the digest match.
            writer.prepare()

        def spilled(exc: OSError) -> None:
            log.warning("cannot cache %s (%s); relaying it uncached", digest, exc)
            self._metrics.uncached_streams.labels(_reason(exc)).inc()

        fill = Fill(digest, writer, lambda: self._store.open(digest), on_spill=spilled)
        key = self._key(target, digest)
        self._fills[key] = fill
        release = self._leases.hold(digest)
        task = asyncio.create_task(self._run_fill(fill, target, key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _task: release())
        return fill

    async def _run_fill(self, fill: Fill, target: Target, key: FillKey) -> None:
        """Download, verify and commit one blob; runs on its own, whatever its clients do."""
        self._metrics.fills_started.inc()
        self._metrics.fills_in_progress.inc()
        client = self._upstreams(target.upstream)
        download = Download(
            client,
            target.repo,
            fill.digest,
            chunk_size=self._chunk_size,
            piece_size=fill_piece(self._chunk_size),
            resume_attempts=self._resume_attempts,
            on_resume=self._metrics.fills_resumed.inc,
        )
        try:
            async with asyncio.timeout(self._fill_timeout):
                await self._copy(download, fill)
            # Another upstream's fill of this digest may have installed it first: keep that
            # copy (the content is the same, verified both times) and discard this one.
            committed = await fill.complete(
                superseded=await self._store.stat(fill.digest) is not None
            )
        except BaseException as exc:
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
            await fill.fail(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            if committed:
                self._metrics.fills_committed.inc()
                if self.on_filled is not None:
                    self.on_filled(fill.digest)
        finally:
            self._metrics.fills_in_progress.dec()
            if self._fills.get(key) is fill:
                del self._fills[key]

    async def _copy(self, download: Download, fill: Fill) -> None:
        """Append the download to the fill, chunk N written while chunk N+1 arrives (and is
        hashed); the chunk in flight is written before this returns or raises."""

        async def started(size: int) -> None:
            fill.started(size)
            await fill.reserve(size)

        writing: asyncio.Task[None] | None = None
        try:
            async with aclosing(download.chunks(started)) as chunks:
                async for chunk in chunks:
                    if writing is not None:
                        await writing
                    writing = asyncio.ensure_future(fill.append(chunk))
                    self._metrics.bytes_from_upstream.inc(len(chunk))
        finally:
            if writing is not None:
                await asyncio.gather(writing, return_exceptions=True)

    async def close(self) -> None:
        """Cancel fills still running (at shutdown); their temp files are discarded."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def _head(reader: RangeReader, first: int, length: int) -> bytes:
    """The first bytes of a warm body (up to ``length``), checked before any header is sent. A
    sealed object's are decrypted into a buffer its store reuses (a chunked pull's hundred
    ranges would fault in fresh memory for each), up to the end of the piece holding ``first``
    (what one such buffer holds), and copied out: the buffer goes back when this returns."""
    if not isinstance(reader, Decrypting):
        return await reader.read(first, length)
    with reader.pieces(length, 1) as given:
        end = min(first + length, (first // given.size + 1) * given.size)
        job = reader.read_into(first, end, given.buffers[0])
        try:
            return b"".join(await asyncio.shield(job))
        finally:
            while not job.done():  # cancelled: the thread still writes into the buffer
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait([job])


async def _window(chunks: AsyncIterator[bytes], first: int, last: int) -> AsyncIterator[bytes]:
    """The parts of ``chunks`` (a whole blob) at bytes ``first..last``; reads to the end."""
    offset = 0
    async for chunk in chunks:
        part = chunk[max(first - offset, 0) : max(last + 1 - offset, 0)]
        offset += len(chunk)
        if part:
            yield part
