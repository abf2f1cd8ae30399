"""Key rotation rewrites only headers; a retired KEK's wraps are erased."""

from __future__ import annotations

import base64
import os
import random
from pathlib import Path

import pytest

from mirror.blobstore.encrypted import EncryptedBlobStore
from mirror.blobstore.keyring import CacheKeys
from mirror.blobstore.rotate import census, clear, newest_kek, rewrap
from mirror.crypto.envelope import AES_256_GCM, HEADER_SIZE
from mirror.crypto.keys import Kek
from mirror.crypto.sources import KeyEnv, KeyFile
from mirror.errors import CorruptObject
from mirror.oci.digest import Digest


def open_store(root: Path) -> EncryptedBlobStore:
    keys = CacheKeys.open(KeyFile(root.parent / "kek"), root, random_bytes=os.urandom, now=0.0)
    return EncryptedBlobStore(root, keys, cipher=AES_256_GCM, chunk_size=4096)


def add_kek(store: EncryptedBlobStore, name: str) -> Kek:
    kek = Kek(name, os.urandom(32))
    store.keys.register(kek)
    assert isinstance(store.keys.source, KeyFile)
    store.keys.source.save(store.keys.ring.with_current(kek))
    store.keys.refresh()
    return kek


@pytest.fixture
def store(tmp_path: Path) -> EncryptedBlobStore:
    return open_store(tmp_path / "cache")


async def test_rewrap_changes_only_the_header(
    store: EncryptedBlobStore, rng: random.Random
) -> None:
    data = rng.randbytes(10_000)
    digest = Digest.of(data)
    await store.put(digest, data)
    old = store.keys.current.id
    before = store.path(digest).read_bytes()
    new = add_kek(store, "kek-two")

    assert rewrap(store, digest, new, os.urandom) is True
    assert rewrap(store, digest, new, os.urandom) is False  # already under the new KEK

    after = store.path(digest).read_bytes()
    assert after[HEADER_SIZE:] == before[HEADER_SIZE:]
    assert after[:HEADER_SIZE] != before[:HEADER_SIZE]
    assert newest_kek(store, digest) == "kek-two"
    assert census(store) == {"kek-two": 1}
    # A server that has not loaded kek-two yet still reads through the old slot.
    old_kek = store.keys.ring.get(old)
    assert old_kek is not None
    only_old = KeyEnv("K", {"K": f"{old}:{base64.b64encode(old_kek.key).decode()}"})
    stale = EncryptedBlobStore(
        store.root,
        CacheKeys(only_old, store.keys.registry, only_old.load()),
        cipher=AES_256_GCM,
        chunk_size=4096,
    )
    assert await stale.get(digest) == data


async def test_retire_erases_old_wraps_then_only_the_new_key_reads(
    store: EncryptedBlobStore, rng: random.Random
) -> None:
    data = rng.randbytes(5000)
    digest = Digest.of(data)
    await store.put(digest, data)
    old = store.keys.current.id
    new = add_kek(store, "kek-two")

    assert clear(store, digest, old) == "only"  # not rotated yet: refused
    rewrap(store, digest, new, os.urandom)
    assert clear(store, digest, old) == "cleared"
    assert clear(store, digest, old) == "absent"

    header = store.path(digest).read_bytes()[:HEADER_SIZE]
    assert old.encode() not in header
    assert await store.get(digest) == data


async def test_rewrap_refuses_an_object_whose_key_does_not_unwrap(
    store: EncryptedBlobStore, rng: random.Random
) -> None:
    data = rng.randbytes(100)
    digest = Digest.of(data)
    await store.put(digest, data)
    raw = bytearray(store.path(digest).read_bytes())
    raw[32 + 80] ^= 1  # inside the wrapped key
    store.path(digest).write_bytes(bytes(raw))
    new = add_kek(store, "kek-two")

    with pytest.raises(CorruptObject):
        rewrap(store, digest, new, os.urandom)
    with pytest.raises(FileNotFoundError):
        rewrap(store, Digest.of(b"absent"), new, os.urandom)
    assert newest_kek(store, Digest.of(b"absent")) is None
