"""The content-addressed blob store interface.

Blobs and manifest bodies alike are stored by digest. An object becomes visible only through
``BlobWriter.commit`` (or ``Publishing.publish``), after the writer's content was verified
against its digest; until then it lives in a temporary file that joiners of an in-progress fill
may read as it grows.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from mirror.oci.digest import Digest

if TYPE_CHECKING:
    from mirror.blobstore.piece_budget import Pieces


class RangeReader(Protocol):
    """Random access to the bytes of one object (committed, or a fill in progress)."""

    async def read(self, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes at ``offset``; fewer only at the end of what exists."""
        ...

    async def close(self) -> None:
        """Release the reader's file handle."""
        ...


@runtime_checkable
class FileBacked(Protocol):
    """A reader whose object is a plaintext file: its bytes can go out with ``sendfile``."""

    def fileno(self) -> int:
        """The open file's descriptor (owned by the reader)."""
        ...


@runtime_checkable
class Decrypting(Protocol):
    """A reader of a committed sealed object that decrypts into the caller's buffers: a sender
    reuses a few buffers instead of a new ``bytes`` per chunk."""

    def pieces(self, length: int, count: int) -> AbstractContextManager[Pieces]:
        """A piece size and up to ``count`` buffers for sending ``length`` bytes, held until
        the block ends."""
        ...

    def read_into(self, offset: int, end: int, buf: bytearray) -> asyncio.Future[list[memoryview]]:
        """The bytes ``offset..end`` (exclusive) as views of ``buf``, every chunk's tag checked,
        decrypted in a thread started at once (never cancel it); raises ``CorruptObject`` (the
        object is evicted) and then returns nothing."""
        ...


class BlobWriter(Protocol):
    """A new object being written. Exactly one of ``commit`` or ``abort`` ends it."""

    async def write(self, chunk: bytes) -> None:
        """Append ``chunk``; raises ``OSError`` (e.g. ENOSPC) when the disk refuses it."""
        ...

    def reader(self) -> RangeReader:
        """A reader of what has been written so far; it stays valid after commit or abort."""
        ...

    async def commit(self) -> None:
        """Make the object visible under its digest (durably: fsync, then atomic rename).

        The caller has verified the content; the store trusts it.
        """
        ...

    async def abort(self) -> None:
        """Discard what was written; nothing becomes visible."""
        ...


@runtime_checkable
class Publishing(Protocol):
    """A writer that can end with ``publish``: visible now, durable shortly after."""

    def prepare(self) -> None:
        """Announce that this writer will end with ``publish``: its durability-journal entry is
        made durable in the background from now on, while the bytes arrive, so that
        ``publish`` costs a rename and not a (directory) fsync on the pull's critical path."""
        ...

    async def publish(self) -> None:
        """Make the verified object visible under its digest at once, and durable in the
        background (the store's durability journal re-verifies it after a crash)."""
        ...


class BlobStore(Protocol):
    """Content-addressed storage of verified objects."""

    async def stat(self, digest: Digest) -> int | None:
        """The object's size, or ``None`` if it is not stored."""
        ...

    async def open(self, digest: Digest) -> tuple[RangeReader, int] | None:
        """A reader of the object and its size, or ``None`` if it is not stored."""
        ...

    async def get(self, digest: Digest) -> bytes | None:
        """The whole (small) object, or ``None``: for manifests."""
        ...

    async def put(self, digest: Digest, data: bytes) -> None:
        """Store a small object whose content the caller has verified."""
        ...

    def create(self, digest: Digest) -> BlobWriter:
        """Start writing a new object named ``digest``."""
        ...

    async def delete(self, digest: Digest) -> bool:
        """Remove the object; ``False`` if it was not there."""
        ...

    def digests(self) -> Iterator[Digest]:
        """Every stored object's digest."""
        ...

    def footprint(self, size: int) -> int:
        """Bytes on disk of an object of ``size`` bytes (what a cache size limit counts)."""
        ...


async def put_whole(writer: BlobWriter, data: bytes) -> None:
    """Write a small object in one piece and commit it; nothing is left behind on failure."""
    try:
        await writer.write(data)
        await writer.commit()
    except BaseException:
        await writer.abort()
        raise


async def iter_range(
    reader: RangeReader, first: int, last: int, chunk_size: int
) -> AsyncIterator[bytes]:
    """Yield the bytes ``first..last`` (inclusive) of a committed object in chunks.

    The next chunk is read (and, for a sealed object, decrypted in a worker thread) while the
    consumer sends this one; the read in flight is awaited before the stream ends, however it
    ends, so the reader may be closed right after.
    """

    def start(offset: int) -> asyncio.Future[bytes] | None:
        if offset > last:
            return None
        return asyncio.ensure_future(reader.read(offset, min(chunk_size, last - offset + 1)))

    offset = first
    ahead = start(offset)
    try:
        while ahead is not None:
            data = await ahead
            ahead = None
            if len(data) != min(chunk_size, last - offset + 1):
                raise EOFError(f"object ended at {offset + len(data)}, expected up to {last}")
            offset += len(data)
            ahead = start(offset)
            yield data
    finally:
        if ahead is not None:
            # Not cancelled: a read running in a thread must finish before the file closes.
            await asyncio.gather(ahead, return_exceptions=True)
