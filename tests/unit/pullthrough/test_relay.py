"""A fill on a full disk keeps serving: ENOSPC mid-write or at commit relays from memory.

The store is a real ``FilesystemBlobStore`` subclass whose disk has little room
(``tests.contract.fulldisk``), not a mock.
"""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path

import pytest

from mirror.oci.digest import Digest
from mirror.pullthrough.fill import Fill, FillFailed
from tests.contract.fulldisk import FullDiskStore

SIZE = 1000
CHUNK = 64


@pytest.fixture
def data(rng: random.Random) -> bytes:
    return rng.randbytes(SIZE)


def full_store(tmp_path: Path, **kwargs: object) -> FullDiskStore:
    return FullDiskStore(tmp_path / "store", **kwargs)  # type: ignore[arg-type]


async def make_fill(store: FullDiskStore, data: bytes, relay_limit: int = 1 << 20) -> Fill:
    digest = Digest.of(data)
    try:
        writer = store.create(digest)
    except OSError:
        writer = None
    return Fill(digest, writer, lambda: store.open(digest), relay_limit=relay_limit)


async def produce(fill: Fill, data: bytes, *, fail_at: int | None = None) -> bool:
    """Play the fill task with ``append`` and ``complete`` (or fail at ``fail_at`` bytes)."""
    fill.started(len(data))
    await fill.reserve(len(data))
    for offset in range(0, len(data), CHUNK):
        if fail_at is not None and offset >= fail_at:
            await fill.fail(ConnectionResetError("upstream reset"))
            return False
        await fill.append(data[offset : offset + CHUNK])
        await asyncio.sleep(0)
    return await fill.complete()


async def read_all(fill: Fill, first: int = 0, last: int = SIZE - 1, chunk: int = 100) -> bytes:
    stream = fill.stream(first, last, chunk)
    try:
        return b"".join([c async for c in stream])
    finally:
        await stream.aclose()


def nothing_cached(store: FullDiskStore) -> bool:
    return list(store.digests()) == [] and os.listdir(store.tmp_dir) == []


@pytest.mark.parametrize(
    ("room", "refuse"),
    [
        pytest.param(0, {}, id="disk-full-before-first-byte"),
        pytest.param(300, {}, id="disk-full-mid-blob"),
        pytest.param(SIZE, {"refuse_commit": True}, id="disk-full-at-commit"),
        pytest.param(SIZE, {"refuse_create": True}, id="no-room-for-a-temp-file"),
    ],
)
async def test_readers_get_every_byte_when_the_disk_fills(
    tmp_path: Path, data: bytes, room: int, refuse: dict[str, bool]
) -> None:
    store = full_store(tmp_path, room=room, **refuse)
    fill = await make_fill(store, data)
    readers = [
        asyncio.create_task(read_all(fill)),
        asyncio.create_task(read_all(fill, 137, 612, 50)),
        asyncio.create_task(read_all(fill, SIZE - 1, SIZE - 1)),
    ]
    await asyncio.sleep(0)

    committed = await produce(fill, data)

    assert await asyncio.gather(*readers) == [data, data[137:613], data[-1:]]
    assert committed is False
    assert (fill.verified, fill.committed, fill.caching) == (True, False, False)
    assert isinstance(fill.spilled, OSError) or refuse.get("refuse_create")
    assert fill.written == SIZE
    assert nothing_cached(store), "a partial or unverified object stayed on disk"
    assert fill.readers == 0


async def test_late_joiner_is_refused_only_once_its_bytes_are_gone(
    tmp_path: Path, data: bytes
) -> None:
    store = full_store(tmp_path, room=CHUNK * 2)
    fill = await make_fill(store, data)
    early = fill.stream(0, SIZE - 1, 100)
    fill.started(SIZE)
    for offset in range(0, 6 * CHUNK, CHUNK):
        await fill.append(data[offset : offset + CHUNK])

    # The early reader holds the tail from where the disk refused: bytes on the temp file
    # are gone for newcomers, the tail is kept.
    assert not fill.caching
    assert not fill.can_serve(0)
    assert fill.can_serve(2 * CHUNK)
    await early.aclose()
    # With no reader attached the tail is dropped: only bytes still to come can be served.
    assert not fill.can_serve(2 * CHUNK)
    assert fill.can_serve(6 * CHUNK)
    late = asyncio.create_task(read_all(fill, 6 * CHUNK, SIZE - 1))
    await asyncio.sleep(0)
    for offset in range(6 * CHUNK, SIZE, CHUNK):
        await fill.append(data[offset : offset + CHUNK])
    await fill.complete()

    assert await late == data[6 * CHUNK :]
    assert not fill.can_serve(6 * CHUNK), "an uncached fill that ended holds nothing"


async def test_slow_reader_bounds_the_memory_of_a_relaying_fill(
    tmp_path: Path, data: bytes
) -> None:
    limit = 3 * CHUNK
    store = full_store(tmp_path, room=0)
    fill = await make_fill(store, data, relay_limit=limit)
    stream = fill.stream(0, SIZE - 1, CHUNK)
    producing = asyncio.create_task(produce(fill, data))

    received = bytearray()
    largest_tail = 0
    async for chunk in stream:
        largest_tail = max(largest_tail, len(fill._tail))
        received += chunk
        await asyncio.sleep(0.001)
    assert await producing is False

    assert bytes(received) == data
    assert largest_tail <= limit + CHUNK


async def test_failure_after_the_disk_filled_still_cuts_readers(
    tmp_path: Path, data: bytes
) -> None:
    store = full_store(tmp_path, room=100)
    fill = await make_fill(store, data)
    reader = asyncio.create_task(read_all(fill))
    await asyncio.sleep(0)

    assert await produce(fill, data, fail_at=500) is False

    with pytest.raises(FillFailed):
        await reader
    assert nothing_cached(store)


async def test_a_stream_closed_before_it_started_releases_its_reader(
    tmp_path: Path, data: bytes
) -> None:
    store = full_store(tmp_path, room=0)
    fill = await make_fill(store, data)
    stream = fill.stream(0, SIZE - 1, 100)
    assert fill.readers == 1

    await stream.aclose()

    assert fill.readers == 0
    assert fill._tail.readers == 0


@pytest.mark.parametrize(
    ("room", "refuse", "spills"),
    [
        pytest.param(SIZE, {}, 0, id="room-enough"),
        pytest.param(0, {}, 1, id="disk-full-before-first-byte"),
        pytest.param(300, {}, 1, id="disk-full-mid-blob"),
        pytest.param(SIZE, {"refuse_commit": True}, 1, id="disk-full-at-commit"),
    ],
)
async def test_the_fill_reports_once_that_it_stopped_caching(
    tmp_path: Path, data: bytes, room: int, refuse: dict[str, bool], spills: int
) -> None:
    store = full_store(tmp_path, room=room, **refuse)
    digest = Digest.of(data)
    reported: list[OSError] = []
    fill = Fill(digest, store.create(digest), lambda: store.open(digest), on_spill=reported.append)
    reader = asyncio.create_task(read_all(fill))

    committed = await produce(fill, data)

    assert await reader == data
    assert committed is (spills == 0)
    assert len(reported) == spills
    assert reported == ([fill.spilled] if spills else [])
