"""The data directory's lock: one process owns a data directory at a time.

A server holds it for as long as it runs, and an offline ``mirror retention run`` while it
runs, so a run never collects under a live server and two unrelated servers never share one
cache: single-flight fills, leases and batched last-pull times live in one process's memory.

The lock is an ``flock`` on ``<data_dir>/mirror.lock``; its holder writes who it is (PID and
role) into the file, so a refused process can name it. ``flock`` belongs to the open file
description, not the process: a future multi-process server can take the lock in its parent
and hand the descriptor to the workers it starts, which then hold it with it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path


class DataDirLocked(Exception):
    """Another process holds the data directory's lock in a conflicting mode; the message
    names the directory and, where it said, the holder and its PID."""


class DataDirLock:
    """``<data_dir>/mirror.lock`` (``flock``; released when the process exits, too)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / "mirror.lock"
        self._fd: int | None = None

    def acquire(self, *, exclusive: bool = True, holder: str = "an offline mirror command") -> None:
        """Take the lock without waiting, as ``holder`` (how a refused process names this one);
        raises ``DataDirLocked`` if another process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            found = _holder(fd)
            os.close(fd)
            raise DataDirLocked(f"{self.path.parent} is in use by {found}") from None
        if exclusive:
            record = json.dumps({"pid": os.getpid(), "holder": holder}).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, record, 0)
        self._fd = fd

    def release(self) -> None:
        """Give the lock up (and forget the holder written into the file)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None


def _holder(fd: int) -> str:
    """Who holds the lock, as its holder wrote it: ``a running mirror server (PID 42)``."""
    try:
        record = json.loads(os.pread(fd, 4096, 0))
        return f"{record['holder']} (PID {int(record['pid'])})"
    except (OSError, ValueError, TypeError, KeyError):
        # Not written yet, or by a version that did not say.
        return "another mirror process"
