"""The memory that the warm sealed sends of one process hold in piece buffers, shared out.

A warm encrypted send decrypts its object piece by piece (whole chunks) into a few reused
buffers, so memory grows with the sends: 16 concurrent pulls holding two 4 MiB pieces each
peaked at 218 MiB RSS against a target of 200, and nothing bounded 100 pulls. So the process
has one budget: sends take pieces of up to ``LARGEST_PIECE`` while it lasts, later ones share
what is left, and a send never waits for memory (at the least it gets one chunk per buffer,
past the budget). Larger pieces cost less CPU per byte in isolation (one send of 512 MiB:
1.09-1.32 CPU-s/GiB in 4 MiB pieces, 1.22-1.53 in 2 MiB), but in the warm benchmark of the
whole server they gave nothing over 2 MiB (842-983 against 990-1,251 MB/s, 0.93-1.02 against
1.01-1.05 CPU-s/GiB), so pieces stay at 2 MiB (benchmarks/published/profiles/warm.md)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from mirror.blobstore.buffers import BufferPool
from mirror.crypto.envelope import TAG_SIZE

MiB = 1024 * 1024
# The largest piece a send takes (whole chunks, at least one).
LARGEST_PIECE = 2 * MiB
# The piece buffers of every send of the process together (past it: one chunk per buffer):
# 16 sends of two 2 MiB pieces, their tags included.
TOTAL = 65 * MiB


@dataclass(frozen=True, slots=True)
class Pieces:
    """What one send was given: its piece size (whole chunks) and its reused buffers, each
    able to hold the sealed chunks (tags included) of any one piece of the send."""

    size: int
    buffers: list[bytearray]


class PieceBudget:
    """The bytes of piece buffers the warm sealed sends of a process hold at once (used from
    the event loop only)."""

    def __init__(
        self, total: int = TOTAL, largest: int = LARGEST_PIECE, pool: BufferPool | None = None
    ) -> None:
        self._total = total
        self._largest = largest
        self._taken = 0
        # Where the buffers come from and go back to (reused from send to send), if given.
        self._pool = pool

    @property
    def taken(self) -> int:
        """Bytes of buffers the sends hold now."""
        return self._taken

    @contextmanager
    def pieces(self, chunk_size: int, length: int, count: int) -> Iterator[Pieces]:
        """Up to ``count`` buffers for a send of ``length`` bytes in ``chunk_size`` chunks,
        held until the block ends, which must be after every thread using them finished (they
        go back to the pool then, to be lent again)."""
        step = chunk_size + TAG_SIZE
        free = max(0, self._total - self._taken)
        chunks = max(1, min(self._largest // chunk_size, free // (count * step)))
        size = chunks * chunk_size
        # A short send needs fewer buffers, and fewer chunks in each (it may start mid-chunk).
        count = min(count, -(-length // size) + 1) if length else 0
        room = min(chunks, length // chunk_size + 2) * step
        taken = count * room
        self._taken += taken
        pool = self._pool
        buffers = [pool.take(room) if pool else bytearray(room) for _ in range(count)]
        try:
            yield Pieces(size, buffers)
        finally:
            self._taken -= taken
            if pool is not None:
                for buffer in buffers:
                    pool.give(buffer)
