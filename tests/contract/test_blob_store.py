"""One contract every blob store keeps (the ``BlobStore`` interface in mirror/blobstore):
the plaintext store, the encrypted store, the capacity wrapper and a store on a disk with room
to spare all answer these the same way."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from mirror.blobstore.capacity import CapacityLimit
from mirror.blobstore.encrypted import EncryptedBlobStore
from mirror.blobstore.filesystem import FilesystemBlobStore
from mirror.blobstore.interface import BlobStore, iter_range, put_whole
from mirror.blobstore.keyring import CacheKeys
from mirror.crypto.envelope import AES_256_GCM
from mirror.crypto.sources import KeyFile
from mirror.metrics import Metrics
from mirror.oci.digest import Digest
from tests.contract.fulldisk import FullDiskStore

CHUNK = 4096
MiB = 1024 * 1024


def plaintext(root: Path) -> BlobStore:
    return FilesystemBlobStore(root)


def encrypted(root: Path) -> BlobStore:
    keys = CacheKeys.open(
        KeyFile(root.parent / "kek"), root, random_bytes=os.urandom, now=1_700_000_000.0
    )
    return EncryptedBlobStore(root, keys, cipher=AES_256_GCM, chunk_size=CHUNK)


def capped(root: Path) -> BlobStore:
    return CapacityLimit(FilesystemBlobStore(root), Metrics(), max_size=64 * MiB, high=0.9, low=0.7)


def roomy_disk(root: Path) -> BlobStore:
    return FullDiskStore(root, room=64 * MiB)


STORES: dict[str, Callable[[Path], BlobStore]] = {
    "filesystem": plaintext,
    "encrypted": encrypted,
    "capacity-limit": capped,
    "disk-with-room": roomy_disk,
}


@pytest.fixture(params=list(STORES), ids=list(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    return STORES[request.param](tmp_path / "store")


@pytest.fixture
def data() -> bytes:
    # Not a whole number of encryption chunks, so the last chunk is a short one.
    return random.Random(7).randbytes(3 * CHUNK + 123)


async def test_an_absent_object_is_none_everywhere(store: BlobStore, data: bytes) -> None:
    digest = Digest.of(data)

    assert await store.stat(digest) is None
    assert await store.open(digest) is None
    assert await store.get(digest) is None
    assert await store.delete(digest) is False
    assert list(store.digests()) == []


async def test_a_committed_object_reads_back_whole_and_by_range(
    store: BlobStore, data: bytes
) -> None:
    digest = Digest.of(data)
    await put_whole(store.create(digest), data)

    assert await store.stat(digest) == len(data)
    assert await store.get(digest) == data
    opened = await store.open(digest)
    assert opened is not None
    reader, size = opened
    try:
        assert size == len(data)
        assert await reader.read(CHUNK - 10, 20) == data[CHUNK - 10 : CHUNK + 10]
        assert await reader.read(len(data) - 5, 100) == data[-5:]
        assert await reader.read(len(data), 10) == b""
        pieces = [p async for p in iter_range(reader, 100, len(data) - 1, 1000)]
        assert b"".join(pieces) == data[100:]
    finally:
        await reader.close()
    assert list(store.digests()) == [digest]
    assert store.footprint(len(data)) >= len(data)


async def test_nothing_is_visible_before_commit_and_abort_leaves_nothing(
    store: BlobStore, data: bytes
) -> None:
    digest = Digest.of(data)
    writer = store.create(digest)
    await writer.write(data[:CHUNK])
    reader = writer.reader()
    try:
        assert await reader.read(0, 10) == data[:10]  # a fill's joiners read what is written
    finally:
        await reader.close()

    assert await store.stat(digest) is None
    await writer.abort()

    assert await store.stat(digest) is None
    assert list(store.digests()) == []


async def test_put_stores_a_small_object_and_delete_removes_it(store: BlobStore) -> None:
    manifest = b'{"schemaVersion":2}'
    digest = Digest.of(manifest)
    await store.put(digest, manifest)

    assert await store.get(digest) == manifest
    assert await store.delete(digest) is True
    assert await store.stat(digest) is None
    assert await store.delete(digest) is False
