"""Warm sends reuse their decryption buffers from request to request (a chunked ``Range`` pull
is a hundred requests), and never lend a buffer a decryption thread may still write into."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mirror.blobstore.buffers import BufferPool
from mirror.blobstore.encrypted import EncryptedBlobStore
from mirror.blobstore.keyring import CacheKeys
from mirror.blobstore.sealed import ChunkReader
from mirror.crypto.envelope import AES_256_GCM
from mirror.crypto.sources import KeyFile
from mirror.oci.digest import Digest

CHUNK = 4096


def make_store(root: Path, executor: ThreadPoolExecutor | None = None) -> EncryptedBlobStore:
    keys = CacheKeys.open(KeyFile(root.parent / "kek"), root, random_bytes=os.urandom, now=0.0)
    return EncryptedBlobStore(root, keys, cipher=AES_256_GCM, chunk_size=CHUNK, executor=executor)


async def opened(store: EncryptedBlobStore, data: bytes) -> ChunkReader:
    digest = Digest.of(data)
    await store.put(digest, data)
    found = await store.open(digest)
    assert found is not None
    return found[0]


def test_a_buffer_given_back_is_lent_again_for_the_same_size() -> None:
    pool = BufferPool(keep=2)
    first = pool.take(100)
    pool.give(first)

    assert pool.take(100) is first
    assert pool.take(100) is not first  # lent already: a new one
    assert len(pool.take(200)) == 200


def test_the_pool_keeps_at_most_its_limit() -> None:
    pool = BufferPool(keep=2)
    for buffer in [bytearray(10) for _ in range(5)]:
        pool.give(buffer)

    assert pool.idle == 2


async def test_the_next_warm_read_reuses_the_buffers_of_the_last_and_reads_its_own_bytes(
    tmp_path: Path,
) -> None:
    store = make_store(tmp_path / "cache")
    one, other = os.urandom(5 * CHUNK), os.urandom(5 * CHUNK)
    reader = await opened(store, one)
    with reader.pieces(2 * CHUNK, 1) as given:
        lent = given.buffers[0]
        views = await reader.read_into(0, 2 * CHUNK, lent)
        assert b"".join(views) == one[: 2 * CHUNK]
    await reader.close()

    again = await opened(store, other)
    with again.pieces(2 * CHUNK, 1) as given:
        reused = given.buffers[0]
        views = await again.read_into(CHUNK, 3 * CHUNK, reused)
        read = b"".join(views)
    await again.close()

    assert reused is lent
    assert read == other[CHUNK : 3 * CHUNK]  # nothing of the last read shows


async def test_a_buffer_goes_back_only_once_its_send_ends_and_is_not_lent_meanwhile(
    tmp_path: Path,
) -> None:
    store = make_store(tmp_path / "cache")
    reader = await opened(store, os.urandom(4 * CHUNK))
    with reader.pieces(2 * CHUNK, 1) as given:
        lent = given.buffers[0]
        await reader.read_into(0, 2 * CHUNK, lent)
        with reader.pieces(2 * CHUNK, 1) as other:
            assert other.buffers[0] is not lent  # held by the first send still
    await reader.close()

    assert store.buffers.idle == 2
    assert store.buffers.take(len(lent)) in (lent, other.buffers[0])
