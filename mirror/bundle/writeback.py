"""Write-behind for a file written once from start to end: every ``step`` new bytes, the
kernel is asked to start writing them to disk (``sync_file_range(SYNC_FILE_RANGE_WRITE)``,
which neither waits nor drops them from the page cache), so the disk works while the copy
goes on and the ``fsync`` that makes the file durable at the end has little left to do.
Where the call does not exist (not Linux, no C library), nothing is started early and the
final ``fsync`` does it all: a hint, never a change to what is durable when."""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from typing import BinaryIO

SYNC_FILE_RANGE_WRITE = 2
STEP = 32 * 1024 * 1024

# (fd, offset, length, flags) -> 0, or -1 on failure
SyncFileRange = Callable[[int, int, int, int], int]


def sync_file_range() -> SyncFileRange | None:
    """The C library's ``sync_file_range``, or ``None`` where there is none."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        call = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    call.restype = ctypes.c_int
    return call


class WriteBehind:
    """Starts the writeback of what ``out`` gained since the last call, every ``step`` bytes."""

    def __init__(self, out: BinaryIO, step: int = STEP, call: SyncFileRange | None = None) -> None:
        self._out = out
        self._step = step
        self._call = call if call is not None else sync_file_range()
        self._mark = out.tell()
        self.started = 0

    def __call__(self) -> None:
        """Start writing back the new bytes if ``step`` of them are waiting (after a flush)."""
        if self._call is None:
            return
        end = self._out.tell()
        if end < self._mark:  # the file was cut back (a member that failed): start over there
            self._mark = end
        if end - self._mark < self._step:
            return
        self._out.flush()
        if self._call(self._out.fileno(), self._mark, end - self._mark, SYNC_FILE_RANGE_WRITE):
            self._call = None  # refused (e.g. unsupported file system): leave it to fsync
            return
        self.started += end - self._mark
        self._mark = end
