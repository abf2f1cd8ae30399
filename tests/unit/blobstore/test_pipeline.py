"""Writing a body into a staged object on two cores (``mirror.blobstore.pipeline``): the next
batch is received while the previous one is written, at most two batches are held, batches
are written in order, and a batch in flight ends before the writer returns, whatever ended
the body. The staged object is the filesystem store's real one, behind a gate that holds
each write until the test lets it go."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mirror.blobstore.filesystem import FilesystemBlobStore
from mirror.blobstore.pipeline import write_body
from mirror.blobstore.staging import Staged
from mirror.oci.digest import Digest

PIECE = 1000
BATCH = 3 * PIECE


class Gated:
    """A real staged object whose writes each wait for ``gate`` (set: they run at once);
    counts the writes in flight and the bytes written."""

    def __init__(self, inner: Staged) -> None:
        self.inner = inner
        self.gate = asyncio.Event()
        self.gate.set()
        self.in_flight = 0
        self.most_in_flight = 0
        self.written = 0
        self.batches: list[int] = []

    async def write(self, *pieces: bytes) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.gate.wait()
            await self.inner.write(*pieces)
        finally:
            self.in_flight -= 1
        self.batches.append(sum(map(len, pieces)))
        self.written += self.batches[-1]


async def gated(tmp_path: Path) -> tuple[Gated, FilesystemBlobStore]:
    store = FilesystemBlobStore(tmp_path / "cache")
    directory = tmp_path / "upload"
    directory.mkdir()
    return Gated(await store.stage(directory)), store


def digest_of(data: bytes) -> Digest:
    return Digest("sha256", hashlib.sha256(data).hexdigest())


async def test_the_next_batch_is_received_while_the_previous_one_is_written(
    tmp_path: Path, rng: random.Random
) -> None:
    staged, store = await gated(tmp_path)
    data = rng.randbytes(10 * PIECE + 17)
    received_while_writing = []

    async def body() -> AsyncIterator[bytes]:
        for offset in range(0, len(data), PIECE):
            staged.gate.clear()
            await asyncio.sleep(0)  # the batch handed over (if any) starts, and waits
            received_while_writing.append(staged.in_flight)
            staged.gate.set()
            yield data[offset : offset + PIECE]

    await write_body(staged, body(), BATCH)
    # Each piece after a batch was handed over was received while that batch was written.
    assert received_while_writing[3::3] == [1, 1, 1]
    assert staged.most_in_flight == 1  # one batch written at a time: a hash is a sequence
    assert staged.batches == [BATCH, BATCH, BATCH, 1017]
    await staged.inner.install(digest_of(data))
    assert await store.get(digest_of(data)) == data


async def test_at_most_two_batches_are_held(tmp_path: Path, rng: random.Random) -> None:
    staged, _ = await gated(tmp_path)
    staged.gate.clear()  # no write finishes until the body stalls
    ahead = []

    async def body() -> AsyncIterator[bytes]:
        for _ in range(12):
            ahead.append(sent[0] - staged.written)
            sent[0] += PIECE
            yield rng.randbytes(PIECE)

    async def release_when_stalled() -> None:
        while True:
            await asyncio.sleep(0.01)
            staged.gate.set()
            await asyncio.sleep(0)
            staged.gate.clear()

    sent = [0]
    releaser = asyncio.ensure_future(release_when_stalled())
    try:
        await write_body(staged, body(), BATCH)
    finally:
        releaser.cancel()
    # Never more than the batch being written plus the one filling (of at most BATCH bytes).
    assert max(ahead) <= 2 * BATCH
    assert staged.written == 12 * PIECE and staged.inner.size == 12 * PIECE


async def test_a_batch_in_flight_ends_before_a_failing_body_returns(
    tmp_path: Path, rng: random.Random
) -> None:
    staged, _ = await gated(tmp_path)

    async def body() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield rng.randbytes(PIECE)
        staged.gate.clear()
        await asyncio.sleep(0)
        asyncio.get_running_loop().call_later(0.05, staged.gate.set)
        raise ConnectionResetError("the client went away")

    with pytest.raises(ConnectionResetError):
        await write_body(staged, body(), BATCH)
    # The batch handed over was written whole; the piece still filling the next is dropped
    # (the session's offset then says what was kept).
    assert staged.in_flight == 0
    assert staged.inner.size == staged.written == 3 * PIECE


async def test_a_cancelled_request_waits_for_its_batch_in_flight(
    tmp_path: Path, rng: random.Random
) -> None:
    staged, _ = await gated(tmp_path)
    stalled = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield rng.randbytes(PIECE)
        staged.gate.clear()
        yield rng.randbytes(PIECE)
        stalled.set()
        await asyncio.Event().wait()  # the client sends nothing more
        yield b""

    writer = asyncio.ensure_future(write_body(staged, body(), BATCH))
    await stalled.wait()
    assert staged.in_flight == 1
    writer.cancel()
    asyncio.get_running_loop().call_later(0.05, staged.gate.set)
    with pytest.raises(asyncio.CancelledError):
        await writer
    # The batch handed to the pool ended before the cancelled request let go of the object.
    assert staged.in_flight == 0 and staged.inner.size == 3 * PIECE
