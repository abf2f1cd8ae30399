"""The ``BlobStore`` contract, run against every store, then what is particular to the filesystem.

To check another store, add its factory to ``STORES``.
"""

from __future__ import annotations

import asyncio
import os
import random
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from mirror.blobstore.encrypted import EncryptedBlobStore
from mirror.blobstore.filesystem import FilesystemBlobStore
from mirror.blobstore.interface import BlobStore, RangeReader, iter_range
from mirror.blobstore.keyring import CacheKeys
from mirror.crypto.envelope import AES_256_GCM, CHACHA20_POLY1305
from mirror.crypto.sources import KeyFile
from mirror.oci.digest import Digest


def encrypted(cipher: int, chunk_size: int) -> Callable[[Path], BlobStore]:
    """An encrypted store with a fresh key file next to it; small chunks cross boundaries."""

    def make(root: Path) -> BlobStore:
        keys = CacheKeys.open(
            KeyFile(root.parent / "kek"), root, random_bytes=os.urandom, now=1_700_000_000.0
        )
        return EncryptedBlobStore(root, keys, cipher=cipher, chunk_size=chunk_size)

    return make


STORES: dict[str, Callable[[Path], BlobStore]] = {
    "filesystem": FilesystemBlobStore,
    "encrypted-aes-64": encrypted(AES_256_GCM, 64),
    "encrypted-chacha-333": encrypted(CHACHA20_POLY1305, 333),
    "encrypted-aes-4096": encrypted(AES_256_GCM, 4096),
}


@pytest.fixture(params=list(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    return STORES[request.param](tmp_path / "store")


@pytest.fixture
def data(rng: random.Random) -> bytes:
    return rng.randbytes(1000)


async def read_all(reader: RangeReader, size: int) -> bytes:
    try:
        return b"".join([chunk async for chunk in iter_range(reader, 0, size - 1, 128)])
    finally:
        await reader.close()


async def write(store: BlobStore, data: bytes, chunk_size: int = 100) -> Digest:
    """Write ``data`` through a writer and commit it."""
    digest = Digest.of(data)
    writer = store.create(digest)
    for offset in range(0, len(data), chunk_size):
        await writer.write(data[offset : offset + chunk_size])
    await writer.commit()
    return digest


async def assert_absent(store: BlobStore, digest: Digest) -> None:
    assert await store.stat(digest) is None
    assert await store.open(digest) is None
    assert await store.get(digest) is None
    assert digest not in set(store.digests())


class TestBlobStoreContract:
    """What every ``BlobStore`` promises: objects appear only through commit, by digest."""

    async def test_committed_object_is_visible(self, store: BlobStore, data: bytes) -> None:
        digest = await write(store, data)

        assert await store.stat(digest) == len(data)
        assert await store.get(digest) == data
        opened = await store.open(digest)
        assert opened is not None
        reader, size = opened
        assert size == len(data)
        assert await read_all(reader, size) == data
        assert set(store.digests()) == {digest}

    @pytest.mark.parametrize(
        "piece", [64, 333, 4096, 7, 1000], ids=["64", "333", "4096", "7", "whole"]
    )
    async def test_any_piece_size_round_trips_while_written(
        self, store: BlobStore, data: bytes, piece: int
    ) -> None:
        # Pieces equal to an encrypted store's chunk size take its no-copy path.
        digest = Digest.of(data)
        writer = store.create(digest)
        seen = writer.reader()
        written = 0
        for offset in range(0, len(data), piece):
            await writer.write(data[offset : offset + piece])
            written = min(len(data), offset + piece)
            assert await seen.read(0, written) == data[:written]
        await writer.commit()
        await seen.close()
        assert await store.get(digest) == data

    async def test_put_stores_a_small_object(self, store: BlobStore) -> None:
        manifest = b'{"schemaVersion": 2}'
        digest = Digest.of(manifest)

        await store.put(digest, manifest)

        assert await store.get(digest) == manifest
        assert await store.stat(digest) == len(manifest)

    async def test_empty_object(self, store: BlobStore) -> None:
        digest = await write(store, b"")

        assert await store.stat(digest) == 0
        assert await store.get(digest) == b""

    async def test_missing_object_is_none(self, store: BlobStore) -> None:
        await assert_absent(store, Digest.of(b"never stored"))
        assert await store.delete(Digest.of(b"never stored")) is False

    async def test_nothing_is_visible_before_commit(self, store: BlobStore, data: bytes) -> None:
        digest = Digest.of(data)
        writer = store.create(digest)
        await writer.write(data)

        await assert_absent(store, digest)
        await writer.abort()

    async def test_abort_leaves_nothing(self, store: BlobStore, data: bytes) -> None:
        digest = Digest.of(data)
        writer = store.create(digest)
        await writer.write(data)

        await writer.abort()

        await assert_absent(store, digest)
        assert list(store.digests()) == []

    @pytest.mark.parametrize("ending", ["commit", "abort"])
    async def test_writer_reader_sees_what_was_written_and_outlives_the_writer(
        self, store: BlobStore, data: bytes, ending: str
    ) -> None:
        writer = store.create(Digest.of(data))
        await writer.write(data[:600])
        reader = writer.reader()
        try:
            assert await reader.read(0, 1000) == data[:600]
            await writer.write(data[600:])
            assert await reader.read(550, 100) == data[550:650]

            await (writer.commit() if ending == "commit" else writer.abort())

            assert await reader.read(900, 100) == data[900:]
            assert await reader.read(1000, 10) == b""
        finally:
            await reader.close()

    async def test_delete_removes_the_object(self, store: BlobStore, data: bytes) -> None:
        digest = await write(store, data)
        kept = await write(store, b"another object")

        assert await store.delete(digest) is True

        await assert_absent(store, digest)
        assert set(store.digests()) == {kept}
        assert await store.delete(digest) is False

    async def test_digests_lists_every_object(self, store: BlobStore) -> None:
        contents = [b"one", b"two", b"three"]
        digests = {await write(store, content) for content in contents}
        sha512 = Digest.of(b"four", "sha512")
        await store.put(sha512, b"four")

        assert set(store.digests()) == digests | {sha512}
        assert await store.get(sha512) == b"four"

    async def test_concurrent_writers_of_one_digest_both_commit(
        self, store: BlobStore, data: bytes
    ) -> None:
        digests = await asyncio.gather(write(store, data, 64), write(store, data, 100))

        assert digests[0] == digests[1]
        assert await store.get(digests[0]) == data
        assert list(store.digests()) == [digests[0]]

    @pytest.mark.parametrize(
        "first, last, chunk_size",
        [
            pytest.param(0, 0, 16, id="first-byte"),
            pytest.param(999, 999, 16, id="last-byte"),
            pytest.param(0, 999, 1000, id="whole-in-one-chunk"),
            pytest.param(0, 999, 3, id="whole-in-small-chunks"),
            pytest.param(0, 999, 4096, id="chunk-larger-than-object"),
            pytest.param(137, 612, 50, id="middle"),
            pytest.param(900, 999, 64, id="tail"),
        ],
    )
    async def test_iter_range_returns_exact_slices(
        self, store: BlobStore, data: bytes, first: int, last: int, chunk_size: int
    ) -> None:
        digest = await write(store, data)
        opened = await store.open(digest)
        assert opened is not None
        reader, _size = opened
        try:
            chunks = [chunk async for chunk in iter_range(reader, first, last, chunk_size)]
        finally:
            await reader.close()

        assert b"".join(chunks) == data[first : last + 1]
        assert all(len(chunk) <= chunk_size for chunk in chunks)

    async def test_iter_range_past_the_end_raises_eof(self, store: BlobStore, data: bytes) -> None:
        digest = await write(store, data)
        opened = await store.open(digest)
        assert opened is not None
        reader, _size = opened
        try:
            with pytest.raises(EOFError):
                async for _chunk in iter_range(reader, 990, 1010, 5):
                    pass
        finally:
            await reader.close()


# Particular to the filesystem store ------------------------------------------------------------


@pytest.fixture
def fs_store(tmp_path: Path) -> FilesystemBlobStore:
    return FilesystemBlobStore(tmp_path / "store")


async def test_objects_live_under_blobs_by_algorithm_and_prefix(
    fs_store: FilesystemBlobStore,
) -> None:
    digest = await write(fs_store, b"layout")

    path = fs_store.root / "blobs" / "sha256" / digest.encoded[:2] / digest.encoded
    assert fs_store.path(digest) == path
    assert path.read_bytes() == b"layout"
    assert list(fs_store.tmp_dir.iterdir()) == []


async def test_writes_go_to_a_temp_file_until_commit(fs_store: FilesystemBlobStore) -> None:
    digest = Digest.of(b"partial")
    writer = fs_store.create(digest)
    await writer.write(b"partial")

    (temp,) = fs_store.tmp_dir.iterdir()
    assert temp.read_bytes() == b"partial"
    assert not fs_store.path(digest).exists()
    await writer.abort()
    assert list(fs_store.tmp_dir.iterdir()) == []


async def test_sweep_removes_temp_files_left_by_an_earlier_process(
    fs_store: FilesystemBlobStore,
) -> None:
    kept = await write(fs_store, b"committed")
    crashed = fs_store.create(Digest.of(b"interrupted fill"))
    await crashed.write(b"interrupted")
    (fs_store.tmp_dir / "stray").write_bytes(b"x")

    restarted = FilesystemBlobStore(fs_store.root)
    swept = restarted.sweep()

    assert swept == 2
    assert list(restarted.tmp_dir.iterdir()) == []
    assert await restarted.get(kept) == b"committed"
    assert restarted.sweep() == 0
    await crashed.abort()  # closes its descriptor; the file is already gone


async def test_committed_objects_are_private_to_the_owner(fs_store: FilesystemBlobStore) -> None:
    digest = await write(fs_store, b"secret layer")

    mode = stat.S_IMODE(fs_store.path(digest).stat().st_mode)

    # Temp files are created 0o600 and the rename keeps the mode.
    assert mode == 0o600


def test_install_failure_closes_the_fd_and_removes_the_temp_file(tmp_path: Path) -> None:
    from mirror.blobstore.install import install

    temp = tmp_path / "temp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"content")
    blocker = tmp_path / "not-a-directory"
    blocker.write_bytes(b"")
    with pytest.raises(OSError):
        install(fd, temp, blocker / "object")
    assert not temp.exists()
    with pytest.raises(OSError):
        os.fstat(fd)  # closed


def test_install_makes_the_object_visible(tmp_path: Path) -> None:
    from mirror.blobstore.install import install

    temp = tmp_path / "temp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"content")
    install(fd, temp, tmp_path / "a" / "b" / "object")
    assert (tmp_path / "a" / "b" / "object").read_bytes() == b"content"
    assert not temp.exists()
