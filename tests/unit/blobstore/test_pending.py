"""The durability journal: a cache fill's object is visible as soon as it verified and durable
shortly after; a crash in between never leaves a torn object that is served.

A "crash" here is what a restart finds on disk: the journal entry written, the object renamed
into place with some of its bytes never reaching the disk (a torn file). The restart is a new
store over the same directory, swept as ``mirror serve`` does at start-up.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mirror.blobstore.encrypted import EncryptedBlobStore
from mirror.blobstore.filesystem import FilesystemBlobStore
from mirror.blobstore.interface import Publishing
from mirror.blobstore.keyring import CacheKeys
from mirror.blobstore.pending import PendingSync
from mirror.crypto.envelope import AES_256_GCM
from mirror.crypto.sources import KeyFile
from mirror.oci.digest import Digest
from mirror.pullthrough.fill import Fill

CHUNK = 4096
NOW = 1_700_000_000.0
Store = FilesystemBlobStore | EncryptedBlobStore


def plain(root: Path) -> FilesystemBlobStore:
    return FilesystemBlobStore(root)


def sealed(root: Path) -> EncryptedBlobStore:
    keys = CacheKeys.open(KeyFile(root.parent / "kek"), root, random_bytes=os.urandom, now=NOW)
    return EncryptedBlobStore(root, keys, cipher=AES_256_GCM, chunk_size=CHUNK)


@pytest.fixture(params=[plain, sealed], ids=["plaintext", "encrypted"])
def open_store(request: pytest.FixtureRequest) -> Callable[[Path], Store]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def data(rng: random.Random) -> bytes:
    return rng.randbytes(5 * CHUNK + 123)


class HeldThread:
    """The journal's thread, held busy until ``release``: what a slow disk's fsync looks like
    to everything else."""

    def __init__(self) -> None:
        self.executor = ThreadPoolExecutor(1)
        self._gate = threading.Event()
        self.executor.submit(self._gate.wait)

    def release(self) -> None:
        self._gate.set()


@pytest.fixture
def held() -> Iterator[HeldThread]:
    thread = HeldThread()
    yield thread
    thread.release()
    thread.executor.shutdown(wait=True)


def journal(store: Store) -> PendingSync:
    return store.files.pending if isinstance(store, EncryptedBlobStore) else store.pending


def hold_journal(store: Store, held: HeldThread) -> None:
    """Make ``store``'s journal run its fsyncs on ``held`` (before any writer is created)."""
    pending = PendingSync(journal(store).directory, held.executor)
    if isinstance(store, EncryptedBlobStore):
        store.files.pending = pending
    else:
        store.pending = pending


def listed(store: Store) -> list[Digest]:
    return [digest for digest, _ in journal(store).entries()]


async def publish(store: Store, data: bytes) -> Digest:
    digest = Digest.of(data)
    writer = store.create(digest)
    for offset in range(0, len(data), 1000):
        await writer.write(data[offset : offset + 1000])
    assert isinstance(writer, Publishing)
    await writer.publish()
    return digest


async def read_whole(store: Store, digest: Digest) -> bytes | None:
    opened = await store.open(digest)
    if opened is None:
        return None
    reader, size = opened
    try:
        return await reader.read(0, size)
    finally:
        await reader.close()


async def test_a_published_object_is_readable_before_its_fsync_and_unlisted_after(
    tmp_path: Path, open_store: Callable[[Path], Store], data: bytes, held: HeldThread
) -> None:
    store = open_store(tmp_path / "cache")
    hold_journal(store, held)

    digest = await publish(store, data)

    # The fsync has not run (its thread is held), yet the object is there, whole.
    assert await read_whole(store, digest) == data
    assert listed(store) == [digest]
    held.release()
    journal(store).drain()
    assert listed(store) == []
    assert await read_whole(store, digest) == data


async def test_a_fill_completes_its_readers_without_waiting_for_the_fsync(
    tmp_path: Path, open_store: Callable[[Path], Store], data: bytes, held: HeldThread
) -> None:
    store = open_store(tmp_path / "cache")
    hold_journal(store, held)
    digest = Digest.of(data)
    fill = Fill(digest, store.create(digest), lambda: store.open(digest))
    fill.started(len(data))
    stream = fill.stream(0, len(data) - 1, 1000)

    async def read() -> bytes:
        return b"".join([piece async for piece in stream])

    reading = asyncio.create_task(read())
    for offset in range(0, len(data), CHUNK):
        await fill.append(data[offset : offset + CHUNK])
    assert await fill.complete() is True

    # The response completed, verified, while the fsync still waits on its thread; the
    # object is in the cache right away.
    assert await asyncio.wait_for(reading, 5) == data
    assert listed(store) == [digest]
    assert await read_whole(store, digest) == data


def tear(path: Path) -> None:
    """What a crash before the fsync may leave: the tail of the file never written."""
    size = path.stat().st_size
    with open(path, "r+b") as file:
        file.truncate(size // 2)
        file.seek(size // 2)
        file.write(b"\0" * (size - size // 2))


async def test_a_torn_object_listed_at_a_crash_is_discarded_at_start_up(
    tmp_path: Path, open_store: Callable[[Path], Store], data: bytes, held: HeldThread
) -> None:
    store = open_store(tmp_path / "cache")
    hold_journal(store, held)
    digest = await publish(store, data)
    kept = await publish(store, data[::-1])
    tear(store.path(digest))  # the crash: one object torn, the other whole, both listed

    restarted = open_store(tmp_path / "cache")
    assert sorted(map(str, listed(restarted))) == sorted(map(str, [digest, kept]))
    assert restarted.sweep() == 1

    assert await restarted.stat(digest) is None
    assert await read_whole(restarted, digest) is None
    assert not restarted.path(digest).exists()
    assert await read_whole(restarted, kept) == data[::-1]
    assert listed(restarted) == []


async def test_an_object_truncated_at_a_crash_is_discarded_at_start_up(
    tmp_path: Path, open_store: Callable[[Path], Store], data: bytes, held: HeldThread
) -> None:
    store = open_store(tmp_path / "cache")
    hold_journal(store, held)
    digest = await publish(store, data)
    os.truncate(store.path(digest), 0)  # the rename reached the disk, none of the data did

    restarted = open_store(tmp_path / "cache")
    restarted.sweep()

    assert await read_whole(restarted, digest) is None
    assert list(restarted.digests()) == []


async def test_a_listed_object_gone_by_the_restart_only_drops_its_entry(
    tmp_path: Path, open_store: Callable[[Path], Store], data: bytes, held: HeldThread
) -> None:
    store = open_store(tmp_path / "cache")
    hold_journal(store, held)
    digest = await publish(store, data)
    await store.delete(digest)  # evicted by retention before the crash

    restarted = open_store(tmp_path / "cache")
    assert restarted.sweep() == 0
    assert listed(restarted) == []


async def test_a_durable_commit_is_never_listed(
    tmp_path: Path, open_store: Callable[[Path], Store], data: bytes
) -> None:
    store = open_store(tmp_path / "cache")
    digest = Digest.of(data)
    await store.put(digest, data)  # manifests and other objects that cannot be refetched

    assert listed(store) == []
    assert await read_whole(store, digest) == data


async def eventually_listed(store: Store, digests: list[Digest]) -> None:
    """Wait (at most 10 s: a loaded disk's fsync) until the journal lists exactly ``digests``."""
    want = sorted(map(str, digests))
    for _ in range(1000):
        if sorted(map(str, listed(store))) == want:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the journal lists {listed(store)}, not {digests}")


async def test_a_prepared_writer_lists_its_object_while_the_bytes_arrive(
    tmp_path: Path, open_store: Callable[[Path], Store], data: bytes, held: HeldThread
) -> None:
    store = open_store(tmp_path / "cache")
    hold_journal(store, held)
    digest = Digest.of(data)
    writer = store.create(digest)
    assert isinstance(writer, Publishing)
    writer.prepare()  # what a cache fill does when it starts
    await writer.write(data[:1000])

    # Listed before the publication (the entry must be durable before the rename) while the
    # object is not visible yet: the entry's fsync ran beside the download, so the
    # publication itself costs a rename.
    await eventually_listed(store, [digest])
    assert await store.stat(digest) is None
    await writer.write(data[1000:])
    await writer.publish()
    assert await read_whole(store, digest) == data
    assert listed(store) == [digest]  # one entry, until the background fsync ran
    held.release()
    journal(store).drain()
    assert listed(store) == []


async def test_an_aborted_or_committed_prepared_writer_leaves_no_entry(
    tmp_path: Path, open_store: Callable[[Path], Store], data: bytes
) -> None:
    store = open_store(tmp_path / "cache")
    good, bad = Digest.of(data[::-1]), Digest.of(data)
    aborted, committed = store.create(bad), store.create(good)
    for writer, body in ((aborted, data), (committed, data[::-1])):
        assert isinstance(writer, Publishing)
        writer.prepare()
        await writer.write(body)
    await eventually_listed(store, [bad, good])

    await aborted.abort()  # the upstream's bytes did not match
    await committed.commit()  # durable at once: the journal is not needed
    await eventually_listed(store, [])
    assert await store.stat(bad) is None
    assert await read_whole(store, good) == data[::-1]
