"""The upload writer: staged bytes installed under the digest named at the end, in exactly the
format ``create`` writes, and only when they hash to it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from mirror.blobstore.encrypted import EncryptedBlobStore
from mirror.blobstore.filesystem import FilesystemBlobStore
from mirror.blobstore.interface import BlobStore
from mirror.blobstore.keyring import CacheKeys
from mirror.blobstore.upload import install_upload
from mirror.crypto.envelope import AES_256_GCM
from mirror.crypto.sources import KeyFile
from mirror.errors import DigestMismatch
from mirror.oci.digest import Digest

DATA = os.urandom(3 * 4096 + 17)
DIGEST = Digest("sha256", hashlib.sha256(DATA).hexdigest())


def _stores(root: Path) -> list[BlobStore]:
    sealed = root / "sealed"
    keys = CacheKeys.open(KeyFile(root / "kek"), sealed, random_bytes=os.urandom, now=0.0)
    return [
        FilesystemBlobStore(root / "plain"),
        EncryptedBlobStore(sealed, keys, cipher=AES_256_GCM, chunk_size=4096),
    ]


@pytest.mark.parametrize("kind", [0, 1], ids=["plaintext", "encrypted"])
async def test_install_commits_in_the_store_format(tmp_path: Path, kind: int) -> None:
    store = _stores(tmp_path)[kind]
    staged = tmp_path / "staged"
    staged.write_bytes(DATA)
    assert await install_upload(store, DIGEST, staged, len(DATA), chunk_size=1000)
    assert await store.get(DIGEST) == DATA
    assert await store.stat(DIGEST) == len(DATA)
    # Already there: verified again, nothing new written.
    assert not await install_upload(store, DIGEST, staged, len(DATA), chunk_size=1000)


@pytest.mark.parametrize("kind", [0, 1], ids=["plaintext", "encrypted"])
async def test_a_mismatch_commits_nothing(tmp_path: Path, kind: int) -> None:
    store = _stores(tmp_path)[kind]
    staged = tmp_path / "staged"
    staged.write_bytes(DATA[:-1] + b"!")
    with pytest.raises(DigestMismatch):
        await install_upload(store, DIGEST, staged, len(DATA), chunk_size=1000)
    assert await store.stat(DIGEST) is None
    assert list(store.digests()) == []
    root = tmp_path / ("plain" if kind == 0 else "sealed")
    assert list((root / "tmp").iterdir()) == []
