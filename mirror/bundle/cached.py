"""Blobs an in-process export reads straight from the mirror's own blob store: the reader the
server's warm path uses (each sealed chunk decrypted and authenticated as it is read, a
failed check evicting the object), without the HTTP hop, so a warm export copies each byte
once. A blob the store lacks, or whose first piece fails its check, is a miss: the caller
takes it through the pull-through path instead.

A blob of the encrypted store is ``authenticated``: it was hashed against its digest before
the store committed it, every chunk read back passes its AES-GCM tag under the object's own
data key (bound to the chunk's index and to whether it is the last), and that key only
unwraps for this digest. Its bytes are the verified ones, so the bundle need not hash them
again (a failed tag aborts the member). A plaintext store's file has no such check: its blobs
are hashed as they are written, like any other.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass

from mirror.blobstore.interface import BlobStore, RangeReader, iter_range
from mirror.blobstore.sealed import ChunkReader
from mirror.bundle.fetched import CHUNK, FetchFailed
from mirror.errors import CorruptObject
from mirror.oci.digest import Digest


@dataclass(frozen=True, slots=True)
class CachedBlob:
    """A stored blob's bytes, and whether each piece was authenticated as it was read."""

    chunks: AsyncGenerator[bytes, None]
    authenticated: bool


class CachedBlobs:
    """Reads committed blobs of ``store`` in ``chunk``-sized pieces, one read ahead."""

    def __init__(self, store: BlobStore, chunk: int = CHUNK) -> None:
        self._store = store
        self._chunk = chunk

    async def open(self, digest: Digest) -> CachedBlob | None:
        """The blob's bytes, or ``None`` when the store does not hold a sound copy of its first
        piece; a later piece failing its check raises ``FetchFailed`` (the store evicted the
        object, so running the export again refetches it)."""
        opened = await self._store.open(digest)
        if opened is None:
            return None
        reader, size = opened
        try:
            head = await reader.read(0, min(self._chunk, size))
        except CorruptObject:
            await reader.close()
            return None
        except BaseException:
            await reader.close()
            raise
        return CachedBlob(self._rest(reader, digest, head, size), isinstance(reader, ChunkReader))

    async def _rest(
        self, reader: RangeReader, digest: Digest, head: bytes, size: int
    ) -> AsyncGenerator[bytes, None]:
        try:
            if head:
                yield head
            async for piece in iter_range(reader, len(head), size - 1, self._chunk):
                yield piece
        except (CorruptObject, EOFError) as exc:
            raise FetchFailed(f"cached blob {digest}", str(exc)) from None
        finally:
            await reader.close()
