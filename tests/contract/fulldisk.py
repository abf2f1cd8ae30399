"""A real filesystem blob store on a "disk" with little room: writes past ``room`` bytes fail
with ``OSError(ENOSPC)`` exactly where a full disk would fail them (mid-write, or at commit)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from mirror.blobstore.filesystem import FilesystemBlobStore, FileWriter
from mirror.blobstore.install import Installer, install
from mirror.oci.digest import Digest


def disk_full() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class FullDiskWriter(FileWriter):
    """Writes until the store's room is used up, then writes what fits and raises ENOSPC."""

    def __init__(self, store: FullDiskStore, digest: Digest) -> None:
        if store.refuse_create:
            raise disk_full()
        super().__init__(store, digest)
        self._full_store = store

    def _write_all(self, chunk: bytes) -> None:
        fits = max(self._full_store.room - self._full_store.used, 0)
        if len(chunk) > fits:
            super()._write_all(chunk[:fits])
            self._full_store.used += fits
            raise disk_full()
        super()._write_all(chunk)
        self._full_store.used += len(chunk)

    def _commit(self, installer: Installer = install) -> None:
        if self._full_store.refuse_commit:
            raise disk_full()
        super()._commit(installer)


class FullDiskStore(FilesystemBlobStore):
    """``FilesystemBlobStore`` with ``room`` bytes of space for new writes (``used`` counts
    them); ``refuse_create`` / ``refuse_commit`` fail those steps with ENOSPC instead."""

    def __init__(
        self,
        root: Path,
        *,
        room: int,
        refuse_create: bool = False,
        refuse_commit: bool = False,
    ) -> None:
        super().__init__(root)
        self.room = room
        self.used = 0
        self.refuse_create = refuse_create
        self.refuse_commit = refuse_commit

    def create(self, digest: Digest) -> FullDiskWriter:
        return FullDiskWriter(self, digest)
