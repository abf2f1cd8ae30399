"""Upload sessions on disk: offsets, ownership, expiry and the sweep (with a hand-moved clock)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mirror.blobstore.filesystem import FilesystemBlobStore
from mirror.clock import ManualClock
from mirror.errors import ErrorCode, RegistryError
from mirror.hosted.uploads import UploadStore
from mirror.oci.digest import Digest


async def chunks(*pieces: bytes) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


def store_of(tmp_path: Path, clock: ManualClock) -> UploadStore:
    return UploadStore(tmp_path / "uploads", clock, timeout=10.0, chunk_size=4)


async def test_append_commit_and_reopen(tmp_path: Path) -> None:
    clock = ManualClock()
    uploads = store_of(tmp_path, clock)
    session = uploads.start("acme", "app")
    assert await uploads.append(session, chunks(b"hello ", b"world")) == 11
    # Another store over the same directory (a restart) sees the same session and offset.
    again = store_of(tmp_path, clock).get(session.uuid, "acme", "app")
    assert again.offset() == 11
    blobs = FilesystemBlobStore(tmp_path / "blobs")
    digest = Digest("sha256", hashlib.sha256(b"hello world").hexdigest())
    assert await uploads.commit(again, digest, blobs) == 11
    assert await blobs.get(digest) == b"hello world"
    assert list(uploads.root.iterdir()) == []


async def test_out_of_order_chunk_is_416_with_the_range(tmp_path: Path) -> None:
    uploads = store_of(tmp_path, ManualClock())
    session = uploads.start("acme", "app")
    await uploads.append(session, chunks(b"abcd"), start=0)
    with pytest.raises(RegistryError) as caught:
        await uploads.append(session, chunks(b"efgh"), start=2)
    assert caught.value.code is ErrorCode.RANGE_INVALID
    assert caught.value.headers["Range"] == "0-3"


def test_other_repository_and_malformed_ids_are_unknown(tmp_path: Path) -> None:
    uploads = store_of(tmp_path, ManualClock())
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
    uploads = store_of(tmp_path, clock)
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
