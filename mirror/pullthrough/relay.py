"""The in-memory tail of a fill that stopped caching (disk full, or over the cache limit).

Readers already attached keep receiving the blob from memory; the tail keeps only the bytes
some attached reader has yet to read, so memory is bounded by the slowest reader's lag, which
the producer caps by waiting (backpressure) once the tail exceeds its limit.
"""

from __future__ import annotations

import itertools


class Tail:
    """Bytes ``start .. start + len`` of a blob, trimmed as attached readers move past them."""

    def __init__(self, start: int) -> None:
        self.start = start
        self._data = bytearray()
        self._cursors: dict[int, int] = {}
        self._ids = itertools.count()

    def __len__(self) -> int:
        return len(self._data)

    @property
    def end(self) -> int:
        """The offset just past the bytes held."""
        return self.start + len(self._data)

    def reset(self, start: int) -> None:
        """Drop everything; the tail starts (empty) at ``start``."""
        self.start = start
        self._data.clear()

    def append(self, chunk: bytes) -> None:
        """Add ``chunk`` at the end, dropping what no reader needs any more."""
        self._data += chunk
        self._trim()

    def read(self, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes at ``offset`` (which must be within the tail)."""
        if not self.start <= offset <= self.end:
            raise LookupError(f"offset {offset} outside the relay tail {self.start}..{self.end}")
        begin = offset - self.start
        return bytes(self._data[begin : begin + length])

    def attach(self, offset: int) -> int:
        """Register a reader at ``offset``; returns its cursor id."""
        cursor = next(self._ids)
        self._cursors[cursor] = offset
        return cursor

    def move(self, cursor: int, offset: int) -> None:
        """The reader ``cursor`` needs nothing before ``offset`` any more."""
        if cursor in self._cursors:
            self._cursors[cursor] = offset
            self._trim()

    def detach(self, cursor: int) -> None:
        """Forget reader ``cursor``; the tail behind it may be dropped."""
        self._cursors.pop(cursor, None)
        self._trim()

    @property
    def readers(self) -> int:
        """How many readers are attached."""
        return len(self._cursors)

    def _trim(self) -> None:
        low = min(self._cursors.values(), default=self.end)
        cut = min(max(low, self.start), self.end) - self.start
        if cut > 0:
            del self._data[:cut]
            self.start += cut
