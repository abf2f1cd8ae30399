"""One blob fill read by many clients as it grows, over a real ``FilesystemBlobStore``."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import pytest

from mirror.blobstore.filesystem import FilesystemBlobStore
from mirror.blobstore.interface import BlobWriter
from mirror.oci.digest import Digest
from mirror.pullthrough.fill import Fill, FillFailed

SIZE = 1000
CHUNK = 64  # the producer's chunk size: the last chunk is SIZE % CHUNK = 40 bytes


@pytest.fixture
def data(rng: random.Random) -> bytes:
    return rng.randbytes(SIZE)


@pytest.fixture
def store(tmp_path: Path) -> FilesystemBlobStore:
    return FilesystemBlobStore(tmp_path / "store")


@pytest.fixture
async def fill(store: FilesystemBlobStore, data: bytes) -> AsyncIterator[Fill]:
    digest = Digest.of(data)
    # As BlobService wires it: once committed, the object is read from the store. No memory
    # of recent chunks beyond the newest: readers read the temp file, then the stored object.
    fill = Fill(digest, store.create(digest), lambda: store.open(digest), recent_limit=0)
    yield fill
    if not fill.done:  # closes the temp file of a test that neither committed nor failed
        await fill.fail(RuntimeError("test over"))


class Producer:
    """Plays the fill task: announces the size, writes chunks, then commits or fails.

    ``pause_at`` stops it once that many bytes are written, until ``resume`` is set;
    ``reached`` tells when it got there.
    """

    def __init__(self, fill: Fill, data: bytes, *, pause_at: int | None = None) -> None:
        self.fill = fill
        self.data = data
        self.pause_at = pause_at
        self.reached = asyncio.Event()
        self.resume = asyncio.Event()

    async def _pause(self, written: int) -> None:
        if written == self.pause_at:
            self.reached.set()
            await self.resume.wait()

    async def write(self, end: int) -> None:
        self.fill.started(len(self.data))
        for offset in range(0, end, CHUNK):
            await self._pause(offset)
            await self.fill.append(self.data[offset : min(offset + CHUNK, end)])
            await asyncio.sleep(0)
        await self._pause(end)

    async def commit(self) -> None:
        await self.write(len(self.data))
        assert await self.fill.complete()

    async def fail(self, error: BaseException, *, after: int = SIZE) -> None:
        """Write the first ``after`` bytes, then fail as the fill task does."""
        await self.write(after)
        await self.fill.fail(error)


class Reader:
    """A client streaming a range of the fill; ``received`` grows as chunks arrive."""

    def __init__(self, fill: Fill, first: int, last: int, chunk_size: int) -> None:
        self.received = bytearray()
        self._progress = asyncio.Condition()
        self.task = asyncio.create_task(self._read(fill, first, last, chunk_size))

    async def _read(self, fill: Fill, first: int, last: int, chunk_size: int) -> bytes:
        async for chunk in fill.stream(first, last, chunk_size):
            self.received += chunk
            async with self._progress:
                self._progress.notify_all()
        return bytes(self.received)

    async def until_received(self, count: int) -> None:
        """Wait until ``count`` bytes arrived (store reads run in threads, so this takes time)."""
        async with asyncio.timeout(2), self._progress:
            await self._progress.wait_for(lambda: len(self.received) >= count)


RANGES = [
    pytest.param(0, SIZE - 1, 100, id="whole-blob"),
    pytest.param(0, SIZE - 1, 7, id="whole-blob-small-chunks"),
    pytest.param(0, SIZE - 1, 4096, id="whole-blob-large-chunks"),
    pytest.param(0, 0, 16, id="first-byte"),
    pytest.param(SIZE - 1, SIZE - 1, 16, id="last-byte"),
    pytest.param(137, 612, 50, id="starts-in-the-middle"),
    pytest.param(500, SIZE - 1, 64, id="second-half"),
]


@pytest.mark.parametrize("first, last, chunk_size", RANGES)
async def test_reader_gets_exactly_its_range(
    fill: Fill, data: bytes, first: int, last: int, chunk_size: int
) -> None:
    reader = Reader(fill, first, last, chunk_size)
    await Producer(fill, data).commit()

    assert await reader.task == data[first : last + 1]
    assert fill.readers == 0


async def test_concurrent_readers_share_one_fill(
    fill: Fill, store: FilesystemBlobStore, data: bytes
) -> None:
    ranges = [cast(tuple[int, int, int], p.values) for p in RANGES]
    readers = [Reader(fill, *r) for r in ranges]
    await asyncio.sleep(0)

    await Producer(fill, data).commit()
    results = await asyncio.gather(*(reader.task for reader in readers))

    assert results == [data[first : last + 1] for first, last, _ in ranges]
    assert await store.get(fill.digest) == data
    assert (fill.written, fill.committed, fill.readers) == (SIZE, True, 0)


async def test_reader_joining_late_still_gets_everything(fill: Fill, data: bytes) -> None:
    producer = Producer(fill, data, pause_at=8 * CHUNK)
    early = Reader(fill, 0, SIZE - 1, 100)
    producing = asyncio.create_task(producer.commit())
    await producer.reached.wait()

    late = Reader(fill, 0, SIZE - 1, 100)
    await late.until_received(8 * CHUNK)  # caught up with what was written
    producer.resume.set()
    await producing

    assert await early.task == data
    assert await late.task == data


@pytest.mark.parametrize(
    "first, last",
    [
        pytest.param(0, SIZE - 1, id="whole-blob"),
        pytest.param(100, 299, id="range-ending-early"),
    ],
)
async def test_failure_after_every_byte_was_written_withholds_the_last_chunk(
    fill: Fill, data: bytes, first: int, last: int
) -> None:
    producer = Producer(fill, data, pause_at=SIZE)
    producing = asyncio.create_task(producer.fail(ValueError("digest mismatch")))
    await producer.reached.wait()
    reader = Reader(fill, first, last, 50)

    # Everything was written, yet the reader waits for the verdict before its last chunk.
    await reader.until_received(last + 1 - first - 50)
    await asyncio.sleep(0.01)
    assert len(reader.received) == last + 1 - first - 50
    producer.resume.set()
    await producing

    with pytest.raises(FillFailed) as caught:
        await reader.task
    assert isinstance(caught.value.cause, ValueError)
    assert caught.value.digest == fill.digest
    assert bytes(reader.received) == data[first : last + 1 - 50]


async def test_ranges_whose_bytes_all_arrived_complete_at_the_digest_match(
    fill: Fill, data: bytes
) -> None:
    # A chunked pull's first wave: every byte of these ranges is written, but none of them is
    # verified-safe before the whole blob matched its digest; then they all complete at once.
    producer = Producer(fill, data, pause_at=SIZE)
    producing = asyncio.create_task(producer.commit())
    await producer.reached.wait()
    ranges = [(0, 99), (100, 299), (900, SIZE - 1)]
    readers = [Reader(fill, first, last, 50) for first, last in ranges]
    for reader, (first, last) in zip(readers, ranges, strict=True):
        await reader.until_received(last + 1 - first - 50)
    await asyncio.sleep(0.01)
    assert not any(reader.task.done() for reader in readers)

    producer.resume.set()
    await producing

    async with asyncio.timeout(2):
        got = await asyncio.gather(*(reader.task for reader in readers))
    assert got == [data[first : last + 1] for first, last in ranges]


async def test_every_reader_fails_when_the_fill_fails_midway(fill: Fill, data: bytes) -> None:
    error = ConnectionResetError("upstream reset")
    producer = Producer(fill, data, pause_at=4 * CHUNK)
    readers = [Reader(fill, 0, SIZE - 1, 64), Reader(fill, 600, 700, 10)]
    producing = asyncio.create_task(producer.fail(error, after=4 * CHUNK))
    await producer.reached.wait()
    await readers[0].until_received(4 * CHUNK)

    producer.resume.set()
    await producing

    for reader in readers:
        with pytest.raises(FillFailed) as caught:
            await reader.task
        assert caught.value.cause is error
    assert bytes(readers[0].received) == data[: 4 * CHUNK]
    assert readers[1].received == b""


async def test_wait_started_returns_the_announced_size(fill: Fill) -> None:
    waiter = asyncio.create_task(fill.wait_started())
    await asyncio.sleep(0)
    assert not waiter.done()

    fill.started(SIZE)

    assert await waiter == SIZE
    assert await fill.wait_started() == SIZE


async def test_wait_started_raises_the_error_when_failure_comes_first(fill: Fill) -> None:
    error = PermissionError("upstream said 401")
    waiter = asyncio.create_task(fill.wait_started())
    await asyncio.sleep(0)

    await fill.fail(error)

    with pytest.raises(PermissionError) as caught:
        await waiter
    assert caught.value is error
    with pytest.raises(PermissionError):
        await fill.wait_started()
    assert fill.done


@pytest.mark.parametrize("ending", ["commit", "failure"])
async def test_done_once_committed_or_failed(fill: Fill, data: bytes, ending: str) -> None:
    assert not fill.done

    if ending == "commit":
        await Producer(fill, data).commit()
    else:
        await Producer(fill, data).fail(ValueError("digest mismatch"))

    assert fill.done
    assert fill.committed is (ending == "commit")


@pytest.mark.parametrize(
    "first, last",
    [pytest.param(0, SIZE - 1, id="whole-blob"), pytest.param(137, 612, id="middle")],
)
async def test_stream_started_after_commit_still_yields_the_bytes(
    fill: Fill, data: bytes, first: int, last: int
) -> None:
    # BlobService.open: wait_started(), then fill.stream(...) is iterated later by the handler;
    # a small blob can commit in between, and its temp file is gone by then.
    stream = fill.stream(first, last, 100)
    await Producer(fill, data).commit()

    assert b"".join([chunk async for chunk in stream]) == data[first : last + 1]


async def test_stream_started_after_failure_raises_fill_failed(fill: Fill, data: bytes) -> None:
    error = ValueError("digest mismatch")
    stream = fill.stream(0, SIZE - 1, 100)
    await Producer(fill, data).fail(error, after=SIZE // 2)

    with pytest.raises(FillFailed) as caught:
        async for _chunk in stream:
            pass
    assert caught.value.cause is error


async def test_a_superseded_fill_discards_its_copy_and_serves_the_installed_one(
    store: FilesystemBlobStore, data: bytes
) -> None:
    digest = Digest.of(data)
    winner = store.create(digest)
    await winner.write(data)
    fill = Fill(digest, store.create(digest), lambda: store.open(digest), recent_limit=0)
    fill.started(SIZE)
    reader = fill.stream(0, SIZE - 1, CHUNK)
    await fill.append(data[:500])
    await winner.commit()  # another upstream's fill installs the object first
    await fill.append(data[500:])

    committed = await fill.complete(superseded=True)

    assert (committed, fill.committed, fill.caching) == (False, True, False)
    assert b"".join([chunk async for chunk in reader]) == data
    assert list(store.tmp_dir.iterdir()) == []
    assert await store.get(digest) == data


async def test_a_hostile_upstream_never_completes_a_range_of_wrong_bytes(
    fill: Fill, data: bytes
) -> None:
    # The upstream sends other bytes than the digest names: the ranges of the filling blob
    # stream, but none of them completes, even those whose bytes were all written.
    wrong = bytes(b ^ 0xFF for b in data)
    ranges = [(0, 99), (100, 299), (900, SIZE - 1)]
    readers = [Reader(fill, first, last, 50) for first, last in ranges]
    await Producer(fill, wrong).fail(ValueError("digest mismatch"))

    for reader, (first, last) in zip(readers, ranges, strict=True):
        with pytest.raises(FillFailed):
            await reader.task
        assert len(reader.received) < last + 1 - first  # its last piece never left


async def test_a_reader_at_the_head_gets_the_pieces_as_they_were_received(
    store: FilesystemBlobStore, data: bytes
) -> None:
    # A fill keeping its newest chunks in memory (as BlobService wires it): a reader at the head
    # sends each piece whole, as received, whatever its own read size; nothing is read back.
    digest = Digest.of(data)
    fill = Fill(digest, store.create(digest), lambda: store.open(digest))
    pieces: list[bytes] = []

    async def read() -> None:
        async for piece in fill.stream(0, SIZE - 1, 16):
            pieces.append(piece)

    reading = asyncio.create_task(read())
    await asyncio.sleep(0)
    fill.started(SIZE)
    for offset in range(0, SIZE, 300):
        await fill.append(data[offset : offset + 300])
        await asyncio.sleep(0.01)
    assert await fill.complete()
    await reading

    assert b"".join(pieces) == data
    assert [len(piece) for piece in pieces] == [300, 300, 300, 100]


class SlowDisk:
    """A real store writer whose writes wait until ``proceed`` is set: a disk slower than the
    network."""

    def __init__(self, writer: BlobWriter) -> None:
        self._writer = writer
        self.proceed = asyncio.Event()

    async def write(self, chunk: bytes) -> None:
        await self.proceed.wait()
        await self._writer.write(chunk)

    def __getattr__(self, name: str) -> object:
        return getattr(self._writer, name)


async def test_a_reader_gets_a_piece_before_the_disk_has_written_it_but_completes_after(
    store: FilesystemBlobStore, data: bytes
) -> None:
    # A client is sent each piece as it arrives from upstream, while it is still being sealed
    # and written; its response still completes only once the blob verified and was stored.
    digest = Digest.of(data)
    disk = SlowDisk(store.create(digest))
    fill = Fill(digest, cast(BlobWriter, disk), lambda: store.open(digest))
    reader = Reader(fill, 0, SIZE - 1, 64)
    fill.started(SIZE)
    writing = asyncio.create_task(fill.append(data[:600]))
    await reader.until_received(600)
    assert not writing.done()  # the disk has not taken the piece yet
    disk.proceed.set()
    await writing
    await fill.append(data[600:])
    await asyncio.sleep(0.05)
    assert not reader.task.done()  # the last piece waits for the verdict
    assert await fill.complete()
    assert await reader.task == data
    opened = await store.open(digest)
    assert opened is not None
    stored, _ = opened
    assert await stored.read(0, SIZE) == data
    await stored.close()
