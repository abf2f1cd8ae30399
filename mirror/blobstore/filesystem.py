"""The plaintext filesystem blob store: ``<root>/blobs/<alg>/<xx>/<encoded>``, temp files in
``<root>/tmp`` (swept at start-up, so a crash mid-fill leaves nothing visible)."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from pathlib import Path

from mirror.blobstore.install import Installer, install, publish
from mirror.blobstore.interface import put_whole
from mirror.blobstore.pending import EarlyEntry, PendingSync
from mirror.blobstore.staging import PlainStaged
from mirror.oci.digest import Digest

log = logging.getLogger(__name__)


def hashes_to(path: Path, digest: Digest) -> bool:
    """Whether the plaintext file at ``path`` hashes to ``digest`` (read in 1 MiB pieces)."""
    hasher = digest.hasher()
    with open(path, "rb", buffering=0) as file:
        while piece := file.read(1024 * 1024):
            hasher.update(piece)
    return hasher.hexdigest() == digest.encoded


class FileReader:
    """A ``RangeReader`` over an open file descriptor (``pread`` off the event loop)."""

    def __init__(self, fd: int, executor: Executor | None) -> None:
        self._fd = fd
        self._executor = executor

    async def read(self, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes at ``offset``, read with ``pread`` in the store's executor."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, os.pread, self._fd, length, offset)

    def fileno(self) -> int:
        """The open file's descriptor (for ``sendfile``; the reader still owns it)."""
        return self._fd

    async def close(self) -> None:
        """Close the file descriptor (a second call does nothing)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class FileWriter:
    """A ``BlobWriter`` into a temp file, renamed into place on commit."""

    def __init__(self, store: FilesystemBlobStore, digest: Digest) -> None:
        self._store = store
        self._digest = digest
        self.temp_path = store.tmp_dir / f"{digest.encoded}.{secrets.token_hex(8)}"
        self._fd = os.open(self.temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._done = False
        self._early: EarlyEntry | None = None

    async def write(self, chunk: bytes) -> None:
        """Append ``chunk`` to the temp file; raises ``OSError`` (e.g. ENOSPC) when the disk
        refuses."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._store.executor, self._write_all, chunk)

    def _write_all(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def reader(self) -> FileReader:
        """A reader of the temp file as written so far (its own descriptor)."""
        return FileReader(os.open(self.temp_path, os.O_RDONLY), self._store.executor)

    async def commit(self) -> None:
        """Durably install the temp file under the digest's path (fsync, rename, dir fsync)."""
        if self._early is not None:
            self._early.drop()  # a durable commit needs no journal entry
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._store.executor, self._commit)

    def _commit(self, installer: Installer = install) -> None:
        final = self._store.path(self._digest)
        self._done = True  # the installer consumes the fd (and the temp file on failure)
        installer(self._fd, self.temp_path, final)

    def prepare(self) -> None:
        """Record the journal entry of the coming :meth:`publish` now, in the background."""
        if self._early is None:
            self._early = EarlyEntry(self._store.pending, self._digest, self._store.executor)

    async def publish(self) -> None:
        """Install the temp file under the digest's path now; fsynced in the background (the
        store's durability journal lists it until then)."""
        pending, digest = self._store.pending, self._digest
        entry = await self._early.entry() if self._early is not None else None

        def published(fd: int, temp_path: Path, final_path: Path) -> None:
            publish(fd, temp_path, final_path, pending, digest, entry)

        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._store.executor, self._commit, published)

    async def abort(self) -> None:
        """Close and delete the temp file unless the writer already committed or aborted."""
        if not self._done:
            self._done = True
            os.close(self._fd)
            self.temp_path.unlink(missing_ok=True)
            if self._early is not None:
                self._early.drop()


class FilesystemBlobStore:
    """A ``BlobStore`` of plaintext files on a local filesystem.

    ``intact(path, digest)`` says whether a stored file still holds its object (the durability
    journal's check after a crash; by default its content hashes to the digest).
    """

    def __init__(
        self,
        root: Path,
        executor: Executor | None = None,
        intact: Callable[[Path, Digest], bool] | None = None,
    ) -> None:
        self.root = Path(root)
        self.blob_dir = self.root / "blobs"
        self.tmp_dir = self.root / "tmp"
        self.executor = executor
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.pending = PendingSync(self.root / "pending")
        self._intact = intact or hashes_to

    def sweep(self) -> int:
        """Delete temp files left by an earlier process, and re-verify the objects a crash
        may have left published but not yet durable (deleting those that fail); returns how
        many files were removed. Call at start-up."""
        count = self.pending.recover(self.path, self._intact)
        for entry in self.tmp_dir.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            count += 1
        if count:
            log.info("swept %d partial fills from %s", count, self.tmp_dir)
        return count

    def path(self, digest: Digest) -> Path:
        """Where a committed object lives."""
        return self.blob_dir / digest.algorithm / digest.encoded[:2] / digest.encoded

    async def stat(self, digest: Digest) -> int | None:
        """The file's size, or ``None`` if no object is stored under ``digest``."""
        try:
            return os.stat(self.path(digest)).st_size
        except FileNotFoundError:
            return None

    async def open(self, digest: Digest) -> tuple[FileReader, int] | None:
        """A reader of the object's file and its size, or ``None`` if it is not stored."""
        try:
            fd = os.open(self.path(digest), os.O_RDONLY)
        except FileNotFoundError:
            return None
        return FileReader(fd, self.executor), os.fstat(fd).st_size

    async def get(self, digest: Digest) -> bytes | None:
        """The whole file, or ``None`` if it is not stored (for small objects: manifests)."""
        try:
            return self.path(digest).read_bytes()
        except FileNotFoundError:
            return None

    async def put(self, digest: Digest, data: bytes) -> None:
        """Store a small, verified object through a writer (nothing left behind on failure)."""
        await put_whole(self.create(digest), data)

    def create(self, digest: Digest) -> FileWriter:
        """A writer into a new temp file for ``digest``."""
        return FileWriter(self, digest)

    async def delete(self, digest: Digest) -> bool:
        """Delete the object's file; ``False`` if it was not there."""
        try:
            self.path(digest).unlink()
        except FileNotFoundError:
            return False
        return True

    def footprint(self, size: int) -> int:
        """Plaintext files take exactly their size on disk."""
        return size

    async def stage(self, directory: Path) -> PlainStaged:
        """An upload staged in ``directory`` (new, or resumed and re-hashed)."""
        return await PlainStaged.open(directory, self.path, self.executor)

    def staged_footprint(self, size: int) -> int:
        """Bytes on disk of an installed upload of ``size`` bytes."""
        return size

    def digests(self) -> Iterator[Digest]:
        """Every stored object's digest, in path order."""
        for alg_dir in sorted(self.blob_dir.iterdir()):
            for sub in sorted(alg_dir.iterdir()):
                for entry in sorted(sub.iterdir()):
                    yield Digest(alg_dir.name, entry.name)
