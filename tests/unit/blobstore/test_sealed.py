"""A fill's sealed writer: whatever the shape of the pieces it is given (whole chunks, several
at a time, or not aligned at all), the object reads back exactly and authenticates chunk by
chunk, and a reader of the temp file sees exactly the bytes written so far."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from mirror.blobstore.encrypted import EncryptedBlobStore
from mirror.blobstore.keyring import CacheKeys
from mirror.blobstore.sealed import SealedWriter
from mirror.crypto.envelope import AES_256_GCM, HEADER_SIZE, TAG_SIZE
from mirror.crypto.sources import KeyFile
from mirror.oci.digest import Digest

CHUNK = 4096
SIZE = 10 * CHUNK + 123
NOW = 1_700_000_000.0


@pytest.fixture
def store(tmp_path: Path) -> EncryptedBlobStore:
    keys = CacheKeys.open(
        KeyFile(tmp_path / "kek"), tmp_path / "cache", random_bytes=os.urandom, now=NOW
    )
    return EncryptedBlobStore(tmp_path / "cache", keys, cipher=AES_256_GCM, chunk_size=CHUNK)


def pieces_of(data: bytes, sizes: list[int]) -> list[bytes]:
    """``data`` cut into pieces of ``sizes`` (cycled), the last one what is left."""
    pieces, offset, turn = [], 0, 0
    while offset < len(data):
        size = sizes[turn % len(sizes)]
        pieces.append(data[offset : offset + size])
        offset, turn = offset + size, turn + 1
    return pieces


SHAPES = [
    pytest.param([4 * CHUNK], id="four-whole-chunks-at-a-time"),
    pytest.param([CHUNK], id="one-whole-chunk-at-a-time"),
    pytest.param([4 * CHUNK + 1], id="four-chunks-and-a-byte"),
    pytest.param([CHUNK // 2], id="half-chunks"),
    pytest.param([7, 3 * CHUNK, CHUNK - 7, 2 * CHUNK], id="mixed"),
    pytest.param([SIZE], id="all-at-once"),
]


@pytest.mark.parametrize("sizes", SHAPES)
async def test_any_shape_of_pieces_reads_back_exactly_and_authenticates(
    store: EncryptedBlobStore, rng: random.Random, sizes: list[int]
) -> None:
    data = rng.randbytes(SIZE)
    digest = Digest.of(data)
    writer = store.create(digest)

    for piece in pieces_of(data, sizes):
        await writer.write(piece)
    await writer.commit()

    assert await store.get(digest) == data
    assert store.intact(store.path(digest), digest)
    chunks = -(-SIZE // CHUNK)
    assert store.path(digest).stat().st_size == HEADER_SIZE + SIZE + chunks * TAG_SIZE


@pytest.mark.parametrize("sizes", SHAPES)
async def test_a_reader_of_the_temp_file_sees_exactly_what_was_written(
    store: EncryptedBlobStore, rng: random.Random, sizes: list[int]
) -> None:
    data = rng.randbytes(SIZE)
    digest = Digest.of(data)
    writer: SealedWriter = store.create(digest)
    reader = writer.reader()
    written = 0
    try:
        for piece in pieces_of(data, sizes):
            await writer.write(piece)
            written += len(piece)
            # Sealed chunks are decrypted from the file; the rest comes from memory.
            assert await reader.read(0, SIZE) == data[:written]
            assert await reader.read(written - 1, 10) == data[written - 1 : written]
    finally:
        await reader.close()
        await writer.abort()
