"""Writing and reading the chunks of one encrypted object (format: ``mirror.crypto.envelope``).

A writer seals each chunk once it is full and a byte of the next one has arrived, so the
last chunk, sealed with its last-chunk flag at commit, always holds 0..chunk_size bytes. A
fill's joiners read through ``SealedWriter.reader()``: sealed chunks are decrypted from the
temp file, the unsealed tail is served from memory.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import Executor
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path

from mirror.blobstore.install import Installer, install, publish
from mirror.blobstore.pending import EarlyEntry, PendingSync
from mirror.blobstore.piece_budget import PieceBudget, Pieces
from mirror.crypto.envelope import (
    AEAD,
    DATA_KEY_SIZE,
    NONCE_SIZE,
    TAG_SIZE,
    VERSION,
    Header,
    Layout,
    aead,
    open_chunk,
    open_chunk_into,
    seal_chunk,
    seal_chunk_into,
    wrap_key,
)
from mirror.crypto.keys import Kek
from mirror.errors import CorruptObject
from mirror.oci.digest import Digest


@dataclass(frozen=True, slots=True)
class ChunkView:
    """What a reader may read: total bytes, chunks on disk, whether the last of them is the
    final chunk, and the unsealed tail (in memory) that follows them."""

    size: int
    sealed: int
    final: bool
    tail: tuple[bytes | memoryview, ...] = ()


def pwrite_all(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
    """``os.pwrite`` until every byte is written."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def _whole_chunks(
    held: list[bytes | memoryview], chunk: bytes, count: int, chunk_size: int
) -> tuple[list[bytes | memoryview], memoryview]:
    """The first ``count`` whole chunks of ``held`` followed by ``chunk``, and the rest. When
    ``held`` is empty or one whole chunk (a fill's pieces are whole chunks), the chunks are views
    of the pieces themselves: nothing is joined or copied."""
    view = memoryview(chunk)
    if all(len(piece) == chunk_size for piece in held):
        own = count - len(held)
        chunks = [view[j * chunk_size : (j + 1) * chunk_size] for j in range(own)]
        return [*held, *chunks], view[own * chunk_size :]
    data = memoryview(b"".join([*held, chunk]))
    chunks = [data[j * chunk_size : (j + 1) * chunk_size] for j in range(count)]
    return list(chunks), data[count * chunk_size :]


class ChunkReader:
    """A ``RangeReader`` that decrypts only the chunks a read covers (one chunk cached)."""

    def __init__(
        self,
        fd: int,
        cipher: AEAD,
        digest: str,
        layout: Layout,
        view: Callable[[], ChunkView],
        executor: Executor | None,
        on_corrupt: Callable[[int, CorruptObject], None],
        version: int = VERSION,
        budget: PieceBudget | None = None,
    ) -> None:
        self._fd = fd
        self._budget = budget or PieceBudget()
        self._version = version
        self._cipher = cipher
        self._digest = digest
        self._layout = layout
        self._view = view
        self._executor = executor
        self._on_corrupt = on_corrupt
        self._cached: tuple[int, bytes] | None = None

    async def read(self, offset: int, length: int) -> bytes:
        """Up to ``length`` plaintext bytes at ``offset``, decrypting (and authenticating) whole
        chunks; a chunk that fails its tag is reported as corrupt."""
        view = self._view()
        end = min(view.size, offset + length)
        if offset >= end:
            return b""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._read, view, offset, end)
        except CorruptObject as exc:
            self._on_corrupt(self._fd, exc)
            raise

    def _read(self, view: ChunkView, offset: int, end: int) -> bytes:
        size = self._layout.chunk_size
        parts = []
        for index in range(offset // size, (end - 1) // size + 1):
            plain = self._chunk(view, index)
            start = index * size
            parts.append(plain[max(offset - start, 0) : min(end - start, size)])
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _chunk(self, view: ChunkView, index: int) -> bytes:
        if index >= view.sealed:
            return b"".join(view.tail)
        if self._cached is not None and self._cached[0] == index:
            return self._cached[1]
        last = view.final and index == view.sealed - 1
        size = self._layout.chunk_size
        length = (view.size - index * size if last else size) + TAG_SIZE
        sealed = os.pread(self._fd, length, self._layout.offset(index))
        if len(sealed) != length:
            raise CorruptObject(self._digest, f"chunk {index} is truncated")
        plain = open_chunk(self._cipher, self._digest, index, last, sealed, self._version)
        self._cached = (index, plain)
        return plain

    def pieces(self, length: int, count: int) -> AbstractContextManager[Pieces]:
        """Up to ``count`` reused buffers for a ``read_into`` of ``length`` bytes piece by piece
        (``pieces`` cut at multiples of the piece size), from the process's budget."""
        return self._budget.pieces(self._layout.chunk_size, length, count)

    def read_into(self, offset: int, end: int, buf: bytearray) -> asyncio.Future[list[memoryview]]:
        """The plaintext bytes ``offset..end`` (exclusive) of a committed object, as views of
        ``buf``: each chunk is read into ``buf`` and decrypted in place, in a worker thread
        started at once (no task per call: a send keeps several going), and only a chunk whose
        tag verified is returned; one that fails is reported as corrupt. The future is never
        to be cancelled: the thread would go on writing into ``buf``."""
        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(self._executor, self._read_into, offset, end, buf)
        job.add_done_callback(self._report)
        return job

    def _report(self, job: asyncio.Future[list[memoryview]]) -> None:
        error = None if job.cancelled() else job.exception()
        if isinstance(error, CorruptObject):
            self._on_corrupt(self._fd, error)

    def _read_into(self, offset: int, end: int, buf: bytearray) -> list[memoryview]:
        view = self._view()
        if not view.final or end > view.size:
            raise ValueError(f"read_into needs committed bytes; {end} > {view.size} or filling")
        size = self._layout.chunk_size
        first, final = offset // size, (end - 1) // size
        if (final - first + 1) * (size + TAG_SIZE) > len(buf):
            raise ValueError(f"read_into of {offset}..{end} needs a larger buffer than {len(buf)}")
        room = memoryview(buf)
        plains = []
        for index in range(first, final + 1):
            last = index == view.sealed - 1
            length = view.size - index * size if last else size
            sealed = room[: length + TAG_SIZE]
            if os.preadv(self._fd, [sealed], self._layout.offset(index)) != len(sealed):
                raise CorruptObject(self._digest, f"chunk {index} is truncated")
            plain = sealed[:length]
            open_chunk_into(self._cipher, self._digest, index, last, sealed, plain, self._version)
            start = index * size
            plains.append(plain[max(offset - start, 0) : min(end - start, length)])
            room = room[len(sealed) :]
        return plains

    async def close(self) -> None:
        """Close the file descriptor (a second call does nothing)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class SealedWriter:
    """A ``BlobWriter`` that encrypts into a temp file, renamed into place on commit."""

    def __init__(
        self,
        temp_path: Path,
        final_path: Path,
        digest: str,
        *,
        cipher: int,
        chunk_size: int,
        current_kek: Callable[[], Kek],
        random_bytes: Callable[[int], bytes],
        executor: Executor | None,
        on_corrupt: Callable[[int, CorruptObject], None],
        pending: PendingSync | None = None,
    ) -> None:
        self.temp_path = temp_path
        self._pending = pending
        self._final_path = final_path
        self._digest = digest
        self._cipher_id = cipher
        self._layout = Layout(chunk_size)
        self._current_kek = current_kek
        self._random_bytes = random_bytes
        self._executor = executor
        self._on_corrupt = on_corrupt
        self._data_key = random_bytes(DATA_KEY_SIZE)
        self._cipher = aead(cipher, self._data_key)
        self._fd = os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._sealed = 0
        self._tail: list[bytes | memoryview] = []
        self._tail_length = 0
        # The sealed chunks of one write, reused from write to write.
        self._out = bytearray()
        self._size: int | None = None
        self._done = False
        self._early: EarlyEntry | None = None

    def view(self) -> ChunkView:
        """A consistent snapshot of what is readable (taken on the event loop)."""
        if self._size is not None:
            return ChunkView(self._size, self._sealed, True)
        size = self._sealed * self._layout.chunk_size + self._tail_length
        return ChunkView(size, self._sealed, False, tuple(self._tail))

    async def write(self, chunk: bytes) -> None:
        """Append ``chunk``: whole chunks are sealed and written, the rest held (by reference:
        the caller never changes a chunk it handed over); ``OSError`` when the disk refuses."""
        chunk_size = self._layout.chunk_size
        if self._tail_length + len(chunk) <= chunk_size:
            if chunk:
                self._tail.append(chunk)
                self._tail_length += len(chunk)
            return
        # Every chunk completed except the newest (a byte of the next one may never come: the
        # last chunk is sealed, flagged last, at commit) is sealed and written in one job.
        count = (self._tail_length + len(chunk) - 1) // chunk_size
        plains, rest = _whole_chunks(self._tail, chunk, count, chunk_size)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._seal, plains, self._sealed)
        # Only now, on the loop, do readers see the new chunks.
        self._sealed += count
        self._tail, self._tail_length = [rest], len(rest)

    def _seal(self, plains: list[bytes | memoryview], first: int) -> None:
        """Seal ``plains`` (chunks ``first``, ``first + 1``, ...) into one reused buffer and
        write it with one call: consecutive chunks are consecutive in the file."""
        step = self._layout.chunk_size + TAG_SIZE
        if len(self._out) != step * len(plains):
            self._out = bytearray(step * len(plains))
        out = memoryview(self._out)
        for j, plain in enumerate(plains):
            sealed = out[j * step : (j + 1) * step]
            seal_chunk_into(self._cipher, self._digest, first + j, False, plain, sealed)
        pwrite_all(self._fd, out, self._layout.offset(first))

    def reader(self) -> ChunkReader:
        """A reader of the chunks sealed so far (held bytes included), under the data key."""
        fd = os.open(self.temp_path, os.O_RDONLY)
        return ChunkReader(
            fd,
            self._cipher,
            self._digest,
            self._layout,
            self.view,
            self._executor,
            self._on_corrupt,
        )

    async def commit(self) -> None:
        """Seal the last chunk, write the header and install the file durably under the digest."""
        if self._early is not None:
            self._early.drop()  # a durable commit needs no journal entry
        await self._finish(install)

    def prepare(self) -> None:
        """Record the journal entry of the coming :meth:`publish` now, in the background."""
        if self._early is None and self._pending is not None:
            self._early = EarlyEntry(self._pending, Digest.parse(self._digest), self._executor)

    async def publish(self) -> None:
        """Seal the last chunk, write the header and install the file under the digest now;
        it is fsynced in the background (listed in the durability journal ``pending`` until
        then). A writer given no journal commits durably instead."""
        pending, digest = self._pending, Digest.parse(self._digest)
        if pending is None:
            await self.commit()
            return
        entry = await self._early.entry() if self._early is not None else None

        def published(fd: int, temp_path: Path, final_path: Path) -> None:
            publish(fd, temp_path, final_path, pending, digest, entry)

        await self._finish(published)

    async def _finish(self, installer: Installer) -> None:
        loop = asyncio.get_running_loop()
        kek = await loop.run_in_executor(self._executor, self._current_kek)
        final = b"".join(self._tail)
        size = self._sealed * self._layout.chunk_size + len(final)
        await loop.run_in_executor(self._executor, self._commit, final, size, kek, installer)
        self._sealed += 1
        self._size = size
        self._tail, self._tail_length = [], 0

    def _commit(self, final: bytes, size: int, kek: Kek, installer: Installer) -> None:
        sealed = seal_chunk(self._cipher, self._digest, self._sealed, True, final)
        pwrite_all(self._fd, sealed, self._layout.offset(self._sealed))
        header = Header(self._cipher_id, self._layout.chunk_size, size, (None, None))
        slot = wrap_key(
            kek, self._data_key, header, self._digest, 1, self._random_bytes(NONCE_SIZE)
        )
        pwrite_all(self._fd, replace(header, slots=(slot, None)).pack(), 0)
        self._done = True  # the installer consumes the fd (and the temp file on failure)
        installer(self._fd, self.temp_path, self._final_path)

    async def abort(self) -> None:
        """Discard the temp file; nothing becomes visible."""
        if not self._done:
            self._done = True
            os.close(self._fd)
            self.temp_path.unlink(missing_ok=True)
            if self._early is not None:
                self._early.drop()
