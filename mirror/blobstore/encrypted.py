"""The encrypted filesystem blob store: the plaintext store's layout and commit protocol, with
every object (blobs and manifests alike) in the chunked AEAD format of
``mirror.crypto.envelope``.

An object that fails a check (header, size, key slot, chunk tag, digest) is evicted and
reported through ``on_corrupt``, then looks absent (``stat``/``open``/``get`` answer ``None``)
so callers refetch it; a read that fails mid-object raises ``CorruptObject``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from pathlib import Path

from mirror.blobstore.buffers import BufferPool
from mirror.blobstore.filesystem import FilesystemBlobStore
from mirror.blobstore.interface import put_whole
from mirror.blobstore.keyring import CacheKeys
from mirror.blobstore.piece_budget import PieceBudget
from mirror.blobstore.sealed import ChunkReader, ChunkView, SealedWriter
from mirror.blobstore.sealed_staging import KEY, SealedStaged, new_data_key
from mirror.crypto.envelope import (
    HEADER_SIZE,
    TAG_SIZE,
    Header,
    Layout,
    aead,
    open_chunk,
    unwrap_key,
)
from mirror.crypto.keys import Kek
from mirror.errors import CorruptObject, KeyUnavailable
from mirror.oci.digest import Digest

log = logging.getLogger(__name__)


class EncryptedBlobStore:
    """A ``BlobStore`` whose files are unreadable without the cache's KEKs."""

    def __init__(
        self,
        root: Path,
        keys: CacheKeys,
        *,
        cipher: int,
        chunk_size: int,
        random_bytes: Callable[[int], bytes] = os.urandom,
        executor: Executor | None = None,
        on_corrupt: Callable[[CorruptObject], None] | None = None,
    ) -> None:
        # The plaintext store's layout, temp-file sweep, listing and deletion are shared.
        self.files = FilesystemBlobStore(root, executor, intact=self.intact)
        self.root = self.files.root
        self.tmp_dir = self.files.tmp_dir
        self.executor = executor
        self.keys = keys
        self.cipher = cipher
        self.chunk_size = chunk_size
        self._random_bytes = random_bytes
        self._on_corrupt = on_corrupt
        # Decryption buffers of warm sends, reused from request to request, and the budget
        # of piece buffers this process's warm sends of sealed objects share.
        self.buffers = BufferPool()
        self.pieces = PieceBudget(pool=self.buffers)

    # Checks --------------------------------------------------------------------------------

    def data_key(self, header: Header, digest: str) -> bytes:
        """Unwrap the object's data key from the newest slot that authenticates; raises
        ``CorruptObject``, or ``KeyUnavailable`` for a registered KEK not loaded yet."""
        unknown = []
        for _, slot in header.candidates():
            kek = self.keys.ring.get(slot.kek_id)
            if kek is None:
                unknown.append(slot)
                continue
            key = unwrap_key(kek, slot, header, digest)
            if key is not None:
                return key
        for slot in unknown:
            kek = self.keys.find(slot.kek_id)
            key = unwrap_key(kek, slot, header, digest) if kek else None
            if key is not None:
                return key
        registered = [s.kek_id for s in unknown if self.keys.is_registered(s.kek_id)]
        if registered:
            raise KeyUnavailable(digest, registered)
        raise CorruptObject(digest, "no key slot unwraps under a known KEK")

    def check(self, fd: int, digest: str) -> tuple[Header, bytes]:
        """Read and authenticate the header of an open object file: its header and data key."""
        header = Header.unpack(os.pread(fd, HEADER_SIZE, 0), digest)
        expected = header.layout.file_size(header.plain_size)
        actual = os.fstat(fd).st_size
        if actual != expected:
            raise CorruptObject(digest, f"file is {actual} bytes, its header says {expected}")
        return header, self.data_key(header, digest)

    def intact(self, path: Path, digest: Digest) -> bool:
        """Whether the sealed file at ``path`` opens, authenticates chunk by chunk and hashes to
        ``digest`` (the durability journal's check after a crash; blocking)."""
        fd = os.open(path, os.O_RDONLY)
        try:
            header, key = self.check(fd, str(digest))
            cipher, layout = aead(header.cipher, key), header.layout
            count = layout.chunk_count(header.plain_size)
            hasher = digest.hasher()
            for index in range(count):
                last = index == count - 1
                plain = header.plain_size - index * layout.chunk_size if last else layout.chunk_size
                sealed = os.pread(fd, plain + TAG_SIZE, layout.offset(index))
                hasher.update(open_chunk(cipher, str(digest), index, last, sealed, header.version))
        except (CorruptObject, KeyUnavailable):
            return False
        finally:
            os.close(fd)
        return hasher.hexdigest() == digest.encoded

    def evict(self, digest: Digest, fd: int, error: CorruptObject) -> None:
        """Remove a corrupt object (unless a fresh copy already replaced it) and report it."""
        path = self.path(digest)
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                path.unlink()
        except FileNotFoundError:
            pass
        self._report(error)

    def sweep(self) -> int:
        """Delete temp files left by an earlier process and re-verify objects published but
        not yet durable at a crash (call at start-up, once the keys are loaded)."""
        return self.files.sweep()

    def path(self, digest: Digest) -> Path:
        """Where a committed object lives."""
        return self.files.path(digest)

    # BlobStore ------------------------------------------------------------------------------

    async def _open_checked(self, digest: Digest) -> tuple[int, Header, bytes] | None:
        try:
            fd = os.open(self.path(digest), os.O_RDONLY)
        except FileNotFoundError:
            return None
        loop = asyncio.get_running_loop()
        try:
            header, key = await loop.run_in_executor(self.executor, self.check, fd, str(digest))
        except CorruptObject as exc:
            self.evict(digest, fd, exc)
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        return fd, header, key

    async def stat(self, digest: Digest) -> int | None:
        """The object's plaintext size from its header, or ``None`` if absent or unreadable."""
        opened = await self._open_checked(digest)
        if opened is None:
            return None
        os.close(opened[0])
        return opened[1].plain_size

    async def open(self, digest: Digest) -> tuple[ChunkReader, int] | None:
        """A decrypting reader and the plaintext size, or ``None`` if absent or unreadable."""
        opened = await self._open_checked(digest)
        if opened is None:
            return None
        fd, header, key = opened
        view = ChunkView(header.plain_size, header.layout.chunk_count(header.plain_size), True)
        reader = ChunkReader(
            fd,
            aead(header.cipher, key),
            str(digest),
            header.layout,
            lambda: view,
            self.executor,
            lambda bad_fd, exc: self.evict(digest, bad_fd, exc),
            header.version,
            self.pieces,
        )
        return reader, header.plain_size

    async def get(self, digest: Digest) -> bytes | None:
        """The whole decrypted, verified object, or ``None`` (a corrupt one is reported and
        evicted)."""
        opened = await self.open(digest)
        if opened is None:
            return None
        reader, size = opened
        try:
            data = await reader.read(0, size)
        except CorruptObject:
            return None
        finally:
            await reader.close()
        if Digest.of(data, digest.algorithm) != digest:
            fd = os.open(self.path(digest), os.O_RDONLY)
            try:
                self.evict(digest, fd, CorruptObject(str(digest), "content does not match"))
            finally:
                os.close(fd)
            return None
        return data

    async def put(self, digest: Digest, data: bytes) -> None:
        """Seal and store a small, verified object."""
        await put_whole(self.create(digest), data)

    def create(self, digest: Digest) -> SealedWriter:
        """A writer that seals chunks under a new data key wrapped by the current KEK."""
        return SealedWriter(
            self.tmp_dir / f"{digest.encoded}.{self._random_bytes(8).hex()}",
            self.path(digest),
            str(digest),
            cipher=self.cipher,
            chunk_size=self.chunk_size,
            current_kek=self._current_kek,
            random_bytes=self._random_bytes,
            executor=self.executor,
            on_corrupt=lambda _fd, exc: self._report(exc),
            pending=self.files.pending,
        )

    async def delete(self, digest: Digest) -> bool:
        """Delete the sealed file; ``False`` if it was not there."""
        return await self.files.delete(digest)

    def digests(self) -> Iterator[Digest]:
        """Every stored object's digest."""
        return self.files.digests()

    def footprint(self, size: int) -> int:
        """Bytes on disk of a sealed ``size``-byte object: header, chunks and their tags."""
        # Objects written under an earlier chunk size differ by a few tag bytes at most.
        return Layout(self.chunk_size).file_size(size)

    async def stage(self, directory: Path) -> SealedStaged:
        """An upload staged in ``directory`` in this store's sealed format: a new one (a fresh
        data key, wrapped by the current KEK), or one resumed after a restart."""
        loop = asyncio.get_running_loop()
        if (directory / KEY).exists():
            key, cipher, chunk_size = await loop.run_in_executor(
                self.executor, SealedStaged.read_key, directory, self._find_kek
            )
        else:
            key, cipher, chunk_size = new_data_key(self._random_bytes), self.cipher, self.chunk_size
            kek = await loop.run_in_executor(self.executor, self._current_kek)
            SealedStaged.new_key(directory, kek, cipher, chunk_size, key)
        staged = SealedStaged(
            directory,
            key,
            cipher=cipher,
            chunk_size=chunk_size,
            random_bytes=self._random_bytes,
            executor=self.executor,
            current_kek=self._current_kek,
            final=self.path,
        )
        try:
            await loop.run_in_executor(self.executor, staged.resume)
        except BaseException:
            staged.close()
            raise
        return staged

    def staged_footprint(self, size: int) -> int:
        """Bytes on disk of an installed upload of ``size`` bytes."""
        return self.footprint(size)

    def _find_kek(self, kek_id: str) -> Kek | None:
        return self.keys.ring.get(kek_id) or self.keys.find(kek_id)

    def _current_kek(self) -> Kek:
        self.keys.refresh()
        return self.keys.current

    def _report(self, error: CorruptObject) -> None:
        log.error("corrupt object %s: %s", error.digest, error.reason)
        if self._on_corrupt is not None:
            self._on_corrupt(error)
