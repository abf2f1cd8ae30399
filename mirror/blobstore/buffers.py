"""Decryption buffers reused from one warm read to the next.

A chunked ``Range`` pull (containerd 2.1, SOCI) fetches a large blob as a hundred or more 8 MiB
ranges, each its own request; every warm range's send decrypts into buffers of a piece's
sealed chunks (2 MiB and tags each). Fresh buffers per request cost the event loop a zero-fill
and page faults of memory the allocator had just given back to the kernel (measured: 500 minor
faults per 8 MiB range, 40 times a whole-blob GET's per byte); kept here, a run of requests
reuses the same few.
"""

from __future__ import annotations

# Idle buffers kept at most (a chunked pull has 8 ranges of 3 buffers in flight: the head and
# two for the rest): 24 of 2 MiB and tags each, 48 MiB at most, held only after a burst.
KEEP = 24


class BufferPool:
    """At most ``keep`` idle buffers, lent by size (``take``) and given back (``give``). Used
    from the event loop only."""

    def __init__(self, keep: int = KEEP) -> None:
        self._keep = keep
        self._idle: dict[int, list[bytearray]] = {}
        self._count = 0

    @property
    def idle(self) -> int:
        """Buffers kept for reuse now."""
        return self._count

    def take(self, size: int) -> bytearray:
        """An idle buffer of ``size`` bytes (its old content left in it), or a new one."""
        idle = self._idle.get(size)
        if idle:
            self._count -= 1
            return idle.pop()
        return bytearray(size)

    def give(self, buffer: bytearray) -> None:
        """Keep ``buffer`` for a later ``take``, unless ``keep`` are idle already. The caller
        is done with it: no thread still writes into it."""
        if self._count < self._keep:
            self._idle.setdefault(len(buffer), []).append(buffer)
            self._count += 1
