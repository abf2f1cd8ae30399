"""An advisory lock on a data directory: each running server holds it shared; an offline
``mirror retention run`` holds it exclusively, so it never collects under a live server."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class DataDirLocked(Exception):
    """Another process holds the data directory's lock in a conflicting mode."""


class DataDirLock:
    """``<data_dir>/mirror.lock`` (``flock``; released when the process exits, too)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / "mirror.lock"
        self._fd: int | None = None

    def acquire(self, *, exclusive: bool) -> None:
        """Take the lock without waiting; raises ``DataDirLocked`` if that is not possible."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = "a running mirror server" if exclusive else "an offline retention run"
            raise DataDirLocked(f"{self.path.parent} is in use by {holder}") from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
