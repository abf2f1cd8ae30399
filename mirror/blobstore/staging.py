"""Staged objects: a blob pushed in pieces, written in its store's final object format as the
bytes arrive and hashed as they go, installed under its digest by a rename.

An upload has no digest until its final ``PUT``, so a staged object lives in the upload
session's directory, not in the store's temp dir (swept at start-up): it survives a restart.
The final ``PUT`` only compares the running hash and size with the digest it names, then
renames the file into place (fsync, rename, directory fsync): no byte is read back or copied.

The running hash is in memory (``hashlib`` state cannot be saved), so a session resumed after
a restart re-hashes its staged bytes once, when it is first used again; measured at 0.22 GB/s
plaintext and 0.23 GB/s encrypted (256 MiB staged, on a shared 2-core machine), that is about
5 s per GiB once per restart, against a saved-hash-state scheme that would need a SHA-256
implementation of our own.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from mirror.blobstore.install import install
from mirror.errors import DigestMismatch
from mirror.oci.digest import Digest

# The staged object's file in the session directory (its final format).
OBJECT = "object"
# What the running hash is (the digest algorithm pushes use; others are re-hashed at PUT).
HASH = "sha256"


class Staged(Protocol):
    """One upload's object being written; ``install`` or the session's removal ends it."""

    @property
    def size(self) -> int:
        """The bytes received so far."""
        ...

    async def write(self, *pieces: bytes) -> None:
        """Append and hash ``pieces`` (in the executor: the object's state changes only
        there); ``OSError`` when the disk refuses them."""
        ...

    def mark(self) -> None:
        """Remember the current end, for ``rollback``."""
        ...

    def rollback(self) -> bool:
        """Go back to the last ``mark``, durably; ``False`` when that is impossible (then the
        session must be discarded)."""
        ...

    async def flush(self) -> None:
        """Make what was written durable, so a restart resumes from here."""
        ...

    def verify(self, digest: Digest) -> None:
        """Raise ``DigestMismatch`` unless the bytes hash to ``digest``."""
        ...

    async def install(self, digest: Digest) -> None:
        """``verify``, then rename the object into the store under ``digest``."""
        ...

    def close(self) -> None:
        """Release the file handle (the session's removal deletes the files)."""
        ...


@runtime_checkable
class Stager(Protocol):
    """A store that can stage uploads in its own object format."""

    async def stage(self, directory: Path) -> Staged:
        """The staged object in ``directory``: new, or resumed (re-hashed) after a restart."""
        ...

    def staged_footprint(self, size: int) -> int:
        """Bytes on disk of an installed object of ``size`` bytes."""
        ...


def check(digest: Digest, hasher: Any, size: int, rehash: Callable[[Any], None]) -> None:
    """Raise ``DigestMismatch`` unless ``hasher`` (or, for another algorithm, a fresh hash fed
    by ``rehash``) gives ``digest``."""
    if digest.algorithm != HASH:
        hasher = digest.hasher()
        rehash(hasher)
    actual = f"{digest.algorithm}:{hasher.hexdigest()}"
    if actual != str(digest):
        raise DigestMismatch(str(digest), actual, actual_size=size)


class PlainStaged:
    """A staged object of the plaintext store: the raw bytes, appended."""

    def __init__(self, path: Path, final: Callable[[Digest], Path], executor: Executor | None):
        self._path = path
        self._final = final
        self._executor = executor
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        self._size = os.fstat(self._fd).st_size
        self._hash = hashlib.new(HASH)
        self._mark: tuple[int, Any] = (0, self._hash.copy())

    @classmethod
    async def open(
        cls, directory: Path, final: Callable[[Digest], Path], executor: Executor | None
    ) -> PlainStaged:
        """The staged object in ``directory``, its existing bytes re-hashed."""
        staged = cls(directory / OBJECT, final, executor)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(executor, staged.feed, staged._hash)
        staged.mark()
        return staged

    @property
    def size(self) -> int:
        """The bytes received so far."""
        return self._size

    def feed(self, hasher: Any) -> None:
        """Hash every staged byte into ``hasher`` (a resume, or another digest algorithm)."""
        offset, step = 0, 1 << 20
        while offset < self._size:
            data = os.pread(self._fd, min(step, self._size - offset), offset)
            if not data:
                raise EOFError(f"{self._path} ended at {offset}")
            hasher.update(data)
            offset += len(data)

    async def write(self, *pieces: bytes) -> None:
        """Append and hash ``pieces`` off the event loop."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self._write, pieces)

    def _write(self, pieces: tuple[bytes, ...]) -> None:
        for piece in pieces:
            view = memoryview(piece)
            while view:
                view = view[os.write(self._fd, view) :]
            self._hash.update(piece)
            self._size += len(piece)

    def mark(self) -> None:
        """Remember the current end and hash state."""
        self._mark = (self._size, self._hash.copy())

    def rollback(self) -> bool:
        """Truncate back to the mark (always possible for plaintext)."""
        size, hasher = self._mark
        os.ftruncate(self._fd, size)
        self._size, self._hash = size, hasher.copy()
        return True

    async def flush(self) -> None:
        """fsync the staged bytes."""
        await asyncio.get_running_loop().run_in_executor(self._executor, os.fsync, self._fd)

    def verify(self, digest: Digest) -> None:
        """Raise ``DigestMismatch`` unless the staged bytes hash to ``digest``."""
        check(digest, self._hash, self._size, self.feed)

    async def install(self, digest: Digest) -> None:
        """Verify, then rename into the store (the fd is consumed)."""
        self.verify(digest)
        final = self._final(digest)
        fd, self._fd = self._fd, -1
        await asyncio.get_running_loop().run_in_executor(
            self._executor, install, fd, self._path, final
        )

    def close(self) -> None:
        """Close the file (the session's removal deletes it)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
