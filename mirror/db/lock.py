"""The data directory's lock: one process owns a data directory at a time.

A server holds it for as long as it runs, and an offline ``mirror retention run`` while it
runs, so a run never collects under a live server and two unrelated servers never share one
cache: single-flight fills, leases and batched last-pull times live in one process's memory.

The lock is an ``flock`` on ``<data_dir>/mirror.lock``; its holder writes who it is (PID and
role) into the file, so a refused process can name it. ``flock`` belongs to the open file
description, not the process: a multi-process server (``server.workers``) takes the lock in
its supervisor and hands the descriptor to the workers it starts (``DataDirLock.adopt``), so
the workers of one server share the lock, and a second server or an offline run is still
refused while any of them lives.
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
        # Whether this process took the lock (and wrote the holder), not inherited it.
        self._owner = False

    @classmethod
    def adopt(cls, data_dir: Path, fd: int) -> DataDirLock:
        """The lock as held through ``fd``, a descriptor inherited from the supervisor that
        took it; ``DataDirLocked`` if ``fd`` is not that directory's lock file."""
        lock = cls(data_dir)
        try:
            held, here = os.fstat(fd), os.stat(lock.path)
        except OSError as exc:
            raise DataDirLocked(f"{lock.path}: no inherited lock ({exc.strerror})") from None
        if (held.st_dev, held.st_ino) != (here.st_dev, here.st_ino):
            raise DataDirLocked(f"{lock.path}: the inherited descriptor is another file")
        lock._fd = fd
        return lock

    @property
    def fd(self) -> int:
        """The held lock's descriptor (to hand to worker processes)."""
        if self._fd is None:
            raise RuntimeError("the data directory's lock is not held")
        return self._fd

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
        self._owner = True

    def release(self) -> None:
        """Give the lock up (and forget the holder written into the file, when this process
        wrote it; an adopted lock stays held by the supervisor and the other workers)."""
        if self._fd is not None:
            if self._owner:
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
