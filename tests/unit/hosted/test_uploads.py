"""Upload sessions on disk: offsets, ownership, expiry and the sweep (with a hand-moved clock),
and the staged object: in the store's final format as it arrives (sealed when encryption is
on), hashed as it is written, installed by rename, resumable after a restart."""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from mirror.blobstore.capacity import CapacityLimit
from mirror.blobstore.encrypted import EncryptedBlobStore
from mirror.blobstore.filesystem import FilesystemBlobStore
from mirror.blobstore.keyring import CacheKeys
from mirror.clock import ManualClock
from mirror.crypto.envelope import AES_256_GCM
from mirror.crypto.sources import KeyFile
from mirror.errors import ErrorCode, RegistryError
from mirror.hosted.uploads import UploadStore
from mirror.metrics import Metrics
from mirror.oci.digest import Digest

CHUNK = 4096
Store = FilesystemBlobStore | EncryptedBlobStore


def plain(root: Path) -> Store:
    return FilesystemBlobStore(root / "cache")


def encrypted(root: Path) -> Store:
    keys = CacheKeys.open(KeyFile(root / "kek"), root / "cache", random_bytes=os.urandom, now=1.0)
    return EncryptedBlobStore(root / "cache", keys, cipher=AES_256_GCM, chunk_size=CHUNK)


STORES = pytest.mark.parametrize("make", [plain, encrypted], ids=["plaintext", "encrypted"])


async def chunks(*pieces: bytes) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


def digest_of(data: bytes) -> Digest:
    return Digest("sha256", hashlib.sha256(data).hexdigest())


def uploads_of(tmp_path: Path, clock: ManualClock, store: Store | None = None) -> UploadStore:
    stager = store if store is not None else plain(tmp_path)
    return UploadStore(tmp_path / "uploads", clock, timeout=10.0, chunk_size=4, stager=stager)


def bytes_read() -> int:
    """Bytes this process has read through read(2)/pread(2) so far (the kernel's counter)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


@STORES
async def test_append_commit_and_reopen(tmp_path: Path, make: Callable[[Path], Store]) -> None:
    clock = ManualClock()
    store = make(tmp_path)
    uploads = uploads_of(tmp_path, clock, store)
    session = uploads.start("acme", "app")
    assert await uploads.append(session, chunks(b"hello ", b"world")) == 11
    # Another store over the same directory (a restart) sees the same session and offset.
    restarted = uploads_of(tmp_path, clock, make(tmp_path))
    again = restarted.get(session.uuid, "acme", "app")
    assert again.offset() == 11
    assert await restarted.append(again, chunks(b"!"), start=11) == 12
    digest = digest_of(b"hello world!")
    assert await restarted.commit(again, digest) == 12
    assert await store.get(digest) == b"hello world!"
    assert list(uploads.root.iterdir()) == []


@STORES
async def test_resume_after_a_restart_across_many_chunks(
    tmp_path: Path, make: Callable[[Path], Store], rng: random.Random
) -> None:
    data = rng.randbytes(5 * CHUNK + 123)
    clock = ManualClock()
    first = uploads_of(tmp_path, clock, make(tmp_path))
    session = first.start("acme", "app")
    cut = 2 * CHUNK + 7
    await first.append(session, chunks(data[:1000], data[1000:cut]))
    for _ in range(2):  # two restarts, the second before any new byte
        uploads = uploads_of(tmp_path, clock, make(tmp_path))
        session = uploads.get(session.uuid, "acme", "app")
    assert await uploads.append(session, chunks(data[cut:]), start=cut) == len(data)
    store = make(tmp_path)
    await uploads.commit(session, digest_of(data))
    assert await store.get(digest_of(data)) == data


async def test_a_crash_mid_request_keeps_the_chunks_sealed_so_far(
    tmp_path: Path, rng: random.Random
) -> None:
    data = rng.randbytes(4 * CHUNK)
    clock = ManualClock()
    uploads = uploads_of(tmp_path, clock, encrypted(tmp_path))
    session = uploads.start("acme", "app")
    await uploads.append(session, chunks(data[:100]))
    staged = await uploads.staged(session)
    await staged.write(data[100 : 3 * CHUNK + 5])  # no flush: the process dies here
    staged.close()
    restarted = uploads_of(tmp_path, clock, encrypted(tmp_path))
    resumed = await restarted.staged(restarted.get(session.uuid, "acme", "app"))
    # Chunks 0 to 2 were sealed (a byte of the next had arrived); the unsealed tail is lost.
    assert resumed.size == 3 * CHUNK
    await restarted.append(session, chunks(data[3 * CHUNK :]), start=3 * CHUNK)
    await restarted.commit(session, digest_of(data))
    assert await encrypted(tmp_path).get(digest_of(data)) == data


async def test_an_encrypted_upload_stages_no_plaintext(tmp_path: Path, rng: random.Random) -> None:
    # Distinct 64-byte runs: any of them on disk would be a plaintext leak.
    data = rng.randbytes(3 * CHUNK + 500)
    uploads = uploads_of(tmp_path, ManualClock(), encrypted(tmp_path))
    session = uploads.start("acme", "app")
    await uploads.append(session, chunks(data[: CHUNK + 10]))
    await uploads.append(session, chunks(data[CHUNK + 10 :]))
    staged = b"".join(p.read_bytes() for p in session.path.iterdir())
    for offset in range(0, len(data) - 64, 64):
        assert data[offset : offset + 64] not in staged, f"plaintext at blob offset {offset}"
    assert data[-100:] not in staged  # the tail of the last chunk is sealed too


@STORES
async def test_the_final_put_renames_without_reading_the_blob_back(
    tmp_path: Path, make: Callable[[Path], Store], rng: random.Random
) -> None:
    size = 8 << 20
    data = rng.randbytes(size)
    store = make(tmp_path)
    uploads = uploads_of(tmp_path, ManualClock(), store)
    session = uploads.start("acme", "app")
    await uploads.append(session, chunks(*(data[i : i + CHUNK] for i in range(0, size, CHUNK))))
    staged_inode = (session.path / "object").stat().st_ino
    before = bytes_read()
    await uploads.commit(session, digest_of(data))
    read = bytes_read() - before
    assert read < size // 16, f"the commit read {read} bytes of a {size}-byte upload"
    installed = tmp_path / "cache" / "blobs" / "sha256" / digest_of(data).encoded[:2]
    assert (installed / digest_of(data).encoded).stat().st_ino == staged_inode  # a rename
    assert await store.stat(digest_of(data)) == size


@STORES
async def test_a_wrong_digest_discards_the_staged_object(
    tmp_path: Path, make: Callable[[Path], Store]
) -> None:
    store = make(tmp_path)
    uploads = uploads_of(tmp_path, ManualClock(), store)
    session = uploads.start("acme", "app")
    await uploads.append(session, chunks(b"pushed bytes"))
    with pytest.raises(RegistryError) as caught:
        await uploads.commit(session, digest_of(b"other bytes"))
    assert caught.value.code is ErrorCode.DIGEST_INVALID
    assert not session.path.exists()
    assert list(store.digests()) == []
    with pytest.raises(RegistryError) as unknown:
        uploads.get(session.uuid, "acme", "app")
    assert unknown.value.code is ErrorCode.BLOB_UPLOAD_UNKNOWN


@STORES
async def test_a_refused_chunk_is_rolled_back(
    tmp_path: Path, make: Callable[[Path], Store]
) -> None:
    uploads = uploads_of(tmp_path, ManualClock(), make(tmp_path))
    session = uploads.start("acme", "app")
    await uploads.append(session, chunks(b"abc"))
    await uploads.append(session, chunks(b"xyz"), start=3)
    uploads.truncate(session, 3)
    assert session.offset() == 3
    await uploads.append(session, chunks(b"def"), start=3)
    await uploads.commit(session, digest_of(b"abcdef"))


async def test_a_refused_chunk_that_sealed_a_chunk_ends_the_session(
    tmp_path: Path, rng: random.Random
) -> None:
    uploads = uploads_of(tmp_path, ManualClock(), encrypted(tmp_path))
    session = uploads.start("acme", "app")
    await uploads.append(session, chunks(b"abc"))
    await uploads.append(session, chunks(rng.randbytes(CHUNK + 1)), start=3)
    uploads.truncate(session, 3)  # chunk 0 is sealed: never sealed twice under one key
    with pytest.raises(RegistryError) as caught:
        uploads.get(session.uuid, "acme", "app")
    assert caught.value.code is ErrorCode.BLOB_UPLOAD_UNKNOWN


async def test_an_installed_upload_is_claimed_under_the_capacity_limit(tmp_path: Path) -> None:
    limit = CapacityLimit(plain(tmp_path), Metrics(), max_size=1000, high=0.9, low=0.5)
    uploads = UploadStore(
        tmp_path / "uploads", ManualClock(), timeout=10.0, chunk_size=4, stager=limit
    )
    session = uploads.start("acme", "app")
    await uploads.append(session, chunks(b"x" * 300))
    await uploads.commit(session, digest_of(b"x" * 300))
    assert limit.used == 300 and limit.in_flight == 0
    again = uploads.start("acme", "app")
    await uploads.append(again, chunks(b"x" * 300))
    await uploads.commit(again, digest_of(b"x" * 300))  # already stored: costs nothing
    assert limit.used == 300
    big = uploads.start("acme", "app")
    await uploads.append(big, chunks(b"y" * 800))
    with pytest.raises(OSError):
        await uploads.commit(big, digest_of(b"y" * 800))
    assert limit.used == 300 and await limit.stat(digest_of(b"y" * 800)) is None


async def test_out_of_order_chunk_is_416_with_the_range(tmp_path: Path) -> None:
    uploads = uploads_of(tmp_path, ManualClock())
    session = uploads.start("acme", "app")
    await uploads.append(session, chunks(b"abcd"), start=0)
    with pytest.raises(RegistryError) as caught:
        await uploads.append(session, chunks(b"efgh"), start=2)
    assert caught.value.code is ErrorCode.RANGE_INVALID
    assert caught.value.headers["Range"] == "0-3"


def test_other_repository_and_malformed_ids_are_unknown(tmp_path: Path) -> None:
    uploads = uploads_of(tmp_path, ManualClock())
    session = uploads.start("acme", "app")
    for upload, tenancy, repo in (
        (session.uuid, "acme", "other"),
        (session.uuid, "other", "app"),
        ("../../etc", "acme", "app"),
    ):
        with pytest.raises(RegistryError) as caught:
            uploads.get(upload, tenancy, repo)
        assert caught.value.code is ErrorCode.BLOB_UPLOAD_UNKNOWN


async def test_idle_sessions_expire_and_the_sweep_removes_them(tmp_path: Path) -> None:
    clock = ManualClock()
    uploads = uploads_of(tmp_path, clock)
    old = uploads.start("acme", "app")
    clock.advance(6)
    fresh = uploads.start("acme", "app")
    clock.advance(5)
    await uploads.append(fresh, chunks(b"x"))  # activity keeps it alive
    assert uploads.sweep() == 1
    assert not old.path.exists() and fresh.path.exists()
    with pytest.raises(RegistryError):
        uploads.get(old.uuid, "acme", "app")
    clock.advance(11)
    assert uploads.sweep() == 1
    assert list(uploads.root.iterdir()) == []
