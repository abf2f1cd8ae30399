"""What the encrypted store adds to the ``BlobStore`` contract: no plaintext on disk, tamper
detection with eviction, range reads that cross chunks, and key checks at start-up."""

from __future__ import annotations

import base64
import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from mirror.app.stores import open_store
from mirror.blobstore.encrypted import EncryptedBlobStore
from mirror.blobstore.filesystem import FilesystemBlobStore
from mirror.blobstore.interface import iter_range
from mirror.blobstore.keyring import CacheKeys
from mirror.config import load_config
from mirror.crypto.envelope import AES_256_GCM, HEADER_SIZE, TAG_SIZE
from mirror.crypto.keys import Kek, Keyring, KeyringError
from mirror.crypto.sources import KeyEnv, KeyFile
from mirror.errors import CorruptObject, KeyUnavailable
from mirror.oci.digest import Digest

CHUNK = 4096
NOW = 1_700_000_000.0


def make_store(
    root: Path, reports: list[CorruptObject] | None = None, key_file: Path | None = None
) -> EncryptedBlobStore:
    keys = CacheKeys.open(
        KeyFile(key_file or root.parent / "kek"), root, random_bytes=os.urandom, now=NOW
    )
    return EncryptedBlobStore(
        root,
        keys,
        cipher=AES_256_GCM,
        chunk_size=CHUNK,
        on_corrupt=reports.append if reports is not None else None,
    )


@pytest.fixture
def reports() -> list[CorruptObject]:
    return []


@pytest.fixture
def store(tmp_path: Path, reports: list[CorruptObject]) -> EncryptedBlobStore:
    return make_store(tmp_path / "cache", reports)


@pytest.fixture
def data(rng: random.Random) -> bytes:
    return rng.randbytes(3 * CHUNK + 100)


async def put(store: EncryptedBlobStore, data: bytes) -> Digest:
    digest = Digest.of(data)
    await store.put(digest, data)
    return digest


async def read(store: EncryptedBlobStore, digest: Digest, first: int, last: int) -> bytes:
    opened = await store.open(digest)
    assert opened is not None
    reader, _ = opened
    try:
        return b"".join([c async for c in iter_range(reader, first, last, 1000)])
    finally:
        await reader.close()


def all_bytes_under(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())


async def test_no_plaintext_reaches_the_disk(store: EncryptedBlobStore) -> None:
    marker = b"PLANTED-MARKER-" * 20
    digest = await put(store, marker * 50)

    assert marker[:32] not in all_bytes_under(store.root)
    assert await store.get(digest) == marker * 50
    # 15000 bytes in four 4 KiB chunks, each with its tag, after the header.
    assert store.path(digest).stat().st_size == HEADER_SIZE + 15000 + 4 * TAG_SIZE


@pytest.mark.parametrize(
    ("first", "last"),
    [
        pytest.param(0, 0, id="first-byte"),
        pytest.param(3 * CHUNK + 99, 3 * CHUNK + 99, id="last-byte"),
        pytest.param(CHUNK - 1, CHUNK, id="one-byte-each-side-of-a-boundary"),
        pytest.param(CHUNK - 10, 3 * CHUNK + 5, id="spanning-four-chunks"),
        pytest.param(2 * CHUNK, 3 * CHUNK + 99, id="from-a-boundary-to-the-end"),
    ],
)
async def test_range_reads_across_chunk_boundaries(
    store: EncryptedBlobStore, data: bytes, first: int, last: int
) -> None:
    digest = await put(store, data)

    assert await read(store, digest, first, last) == data[first : last + 1]


# Tampering -----------------------------------------------------------------------------------


def flip(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x01
    path.write_bytes(bytes(raw))


async def test_flipped_byte_in_a_chunk_fails_the_read_and_evicts(
    store: EncryptedBlobStore, data: bytes, reports: list[CorruptObject]
) -> None:
    digest = await put(store, data)
    flip(store.path(digest), HEADER_SIZE + CHUNK + TAG_SIZE + 7)  # inside chunk 1

    assert await read(store, digest, 0, 100) == data[:101]  # chunk 0 is still authentic
    opened = await store.open(digest)
    assert opened is not None
    reader, _ = opened
    with pytest.raises(CorruptObject, match="chunk 1 failed its tag check"):
        await reader.read(CHUNK, 10)
    await reader.close()

    assert not store.path(digest).exists()
    assert [r.digest for r in reports] == [str(digest)]
    assert await store.stat(digest) is None


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        pytest.param(lambda p: flip(p, 3), "bad magic", id="magic"),
        pytest.param(lambda p: flip(p, 20), "its header says", id="plain-size-field"),
        pytest.param(lambda p: flip(p, 14), "its header says", id="chunk-size-field"),
        pytest.param(lambda p: flip(p, 32 + 6), "no key slot unwraps", id="kek-id"),
        pytest.param(lambda p: flip(p, 32 + 70), "no key slot unwraps", id="wrapped-key"),
        pytest.param(lambda p: os.truncate(p, p.stat().st_size - 1), "bytes, its header", id="cut"),
        pytest.param(lambda p: p.write_bytes(p.read_bytes() + b"x"), "its header", id="appended"),
        pytest.param(lambda p: os.truncate(p, 100), "header is 100 bytes", id="cut-in-header"),
    ],
)
async def test_damaged_objects_look_absent_and_are_evicted(
    store: EncryptedBlobStore,
    data: bytes,
    reports: list[CorruptObject],
    damage: Callable[[Path], object],
    reason: str,
) -> None:
    digest = await put(store, data)
    damage(store.path(digest))

    assert await store.stat(digest) is None
    assert not store.path(digest).exists()
    assert await store.open(digest) is None
    assert len(reports) == 1 and reason in reports[0].reason


async def test_swapped_files_are_detected(
    store: EncryptedBlobStore, reports: list[CorruptObject], rng: random.Random
) -> None:
    a, b = rng.randbytes(5000), rng.randbytes(5000)
    da, db = await put(store, a), await put(store, b)
    raw_a, raw_b = store.path(da).read_bytes(), store.path(db).read_bytes()
    store.path(da).write_bytes(raw_b)
    store.path(db).write_bytes(raw_a)

    assert await store.get(da) is None
    assert await store.get(db) is None
    assert sorted(r.digest for r in reports) == sorted([str(da), str(db)])
    assert list(store.digests()) == []


async def test_swapped_chunks_within_an_object_are_detected(
    store: EncryptedBlobStore, data: bytes
) -> None:
    digest = await put(store, data)
    path = store.path(digest)
    raw = bytearray(path.read_bytes())
    size = CHUNK + TAG_SIZE
    c0 = raw[HEADER_SIZE : HEADER_SIZE + size]
    raw[HEADER_SIZE : HEADER_SIZE + size] = raw[HEADER_SIZE + size : HEADER_SIZE + 2 * size]
    raw[HEADER_SIZE + size : HEADER_SIZE + 2 * size] = c0
    path.write_bytes(bytes(raw))

    with pytest.raises(CorruptObject, match="chunk 0"):
        await read(store, digest, 0, 10)


async def test_a_fresh_copy_is_not_evicted_by_a_stale_reader(
    store: EncryptedBlobStore, data: bytes
) -> None:
    digest = await put(store, data)
    flip(store.path(digest), HEADER_SIZE + 5)
    opened = await store.open(digest)
    assert opened is not None
    reader, _ = opened
    await store.delete(digest)
    await store.put(digest, data)  # a refill committed a good copy meanwhile

    with pytest.raises(CorruptObject):
        await reader.read(0, 10)
    await reader.close()

    assert await store.get(digest) == data


async def test_get_evicts_a_manifest_whose_tags_verify_but_content_does_not_match(
    store: EncryptedBlobStore, reports: list[CorruptObject]
) -> None:
    # Written under the wrong name by a bug: authentic ciphertext, wrong content.
    wrong = Digest.of(b"what the name promises")
    await store.put(wrong, b"something else")

    assert await store.get(wrong) is None
    assert not store.path(wrong).exists()
    assert reports[0].reason == "content does not match"


async def test_a_torn_newest_key_slot_falls_back_to_the_other(
    store: EncryptedBlobStore, data: bytes, tmp_path: Path
) -> None:
    from mirror.blobstore.rotate import rewrap

    digest = await put(store, data)
    new = Kek("kek-2", os.urandom(32))
    store.keys.register(new)
    KeyFile(tmp_path / "kek").save(store.keys.ring.with_current(new))
    store.keys.refresh()
    assert rewrap(store, digest, new, os.urandom)
    flip(store.path(digest), 160 + 60)  # inside slot 1, the newest

    assert await store.get(digest) == data


# Keys at start-up ----------------------------------------------------------------------------


def files_under(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


async def test_missing_key_file_is_refused_and_not_recreated(
    store: EncryptedBlobStore, data: bytes, tmp_path: Path
) -> None:
    await put(store, data)
    (tmp_path / "kek").unlink()
    before = files_under(store.root)

    with pytest.raises(KeyringError, match=r"does not exist, but the cache .* restore the key"):
        make_store(store.root)

    assert not (tmp_path / "kek").exists()
    assert files_under(store.root) == before


async def test_wrong_key_is_refused_and_nothing_is_deleted(
    store: EncryptedBlobStore, data: bytes, tmp_path: Path
) -> None:
    await put(store, data)
    current = store.keys.current.id
    KeyFile(tmp_path / "kek").save(Keyring((Kek(current, os.urandom(32)),)))
    before = files_under(store.root)

    with pytest.raises(KeyringError, match=f"KEK {current} is not the key this cache"):
        make_store(store.root)

    assert files_under(store.root) == before


async def test_a_keyring_without_a_registered_kek_is_refused(
    store: EncryptedBlobStore, data: bytes, tmp_path: Path
) -> None:
    await put(store, data)
    KeyFile(tmp_path / "kek").save(Keyring((Kek("other", os.urandom(32)),)))

    with pytest.raises(KeyringError, match="lacks KEK kek-"):
        make_store(store.root)


async def test_loose_key_file_permissions_stop_the_start(
    store: EncryptedBlobStore, tmp_path: Path
) -> None:
    (tmp_path / "kek").chmod(0o644)

    with pytest.raises(KeyringError, match="chmod 600"):
        make_store(store.root)


async def test_plaintext_cache_cannot_be_opened_encrypted_and_vice_versa(tmp_path: Path) -> None:
    plain = FilesystemBlobStore(tmp_path / "plain")
    await plain.put(Digest.of(b"x"), b"x")
    base = {"storage": {"data_dir": str(tmp_path / "plain")}}

    with pytest.raises(KeyringError, match="written without encryption"):
        open_store(load_config(overrides=base, environ={}), environ={})

    encrypted_dir = tmp_path / "enc"
    config = load_config(
        overrides={
            "storage": {"data_dir": str(encrypted_dir)},
            "encryption": {"kek_file": str(tmp_path / "enc.kek")},
        },
        environ={},
    )
    assert isinstance(open_store(config, environ={}), EncryptedBlobStore)
    disabled = load_config(
        overrides={"storage": {"data_dir": str(encrypted_dir)}, "encryption": {"enabled": False}},
        environ={},
    )
    with pytest.raises(KeyringError, match=r"is encrypted but encryption\.enabled = false"):
        open_store(disabled, environ={})


async def test_env_keys_open_the_store_and_a_missing_variable_is_clear(tmp_path: Path) -> None:
    key = base64.b64encode(os.urandom(32)).decode()
    config = load_config(
        overrides={
            "storage": {"data_dir": str(tmp_path / "cache")},
            "encryption": {"kek_source": "env", "kek_env": "TEST_KEKS"},
        },
        environ={},
    )

    store = open_store(config, environ={"TEST_KEKS": f"envkey:{key}"})
    assert isinstance(store, EncryptedBlobStore) and store.keys.current.id == "envkey"
    with pytest.raises(KeyringError, match="TEST_KEKS is not set"):
        open_store(config, environ={})


# Keys at run time ----------------------------------------------------------------------------


async def test_registered_kek_missing_from_the_loaded_keyring_is_unavailable_not_corrupt(
    tmp_path: Path, data: bytes, reports: list[CorruptObject]
) -> None:
    old, new = Kek("old", os.urandom(32)), Kek("new", os.urandom(32))
    root = tmp_path / "cache"

    def env(*keks: Kek) -> KeyEnv:
        value = ",".join(f"{k.id}:{base64.b64encode(k.key).decode()}" for k in keks)
        return KeyEnv("K", {"K": value})

    writer = EncryptedBlobStore(
        root,
        CacheKeys.open(env(new, old), root, random_bytes=os.urandom, now=NOW),
        cipher=AES_256_GCM,
        chunk_size=CHUNK,
    )
    digest = await put(writer, data)
    stale = EncryptedBlobStore(
        root,
        CacheKeys(env(old), writer.keys.registry, Keyring((old,))),
        cipher=AES_256_GCM,
        chunk_size=CHUNK,
        on_corrupt=reports.append,
    )

    with pytest.raises(KeyUnavailable) as caught:
        await stale.stat(digest)
    assert caught.value.status == 503 and caught.value.kek_ids == ["new"]
    assert writer.path(digest).exists() and reports == []


async def test_a_rotated_key_file_is_picked_up_for_new_objects(
    store: EncryptedBlobStore, tmp_path: Path, rng: random.Random
) -> None:
    from mirror.blobstore.rotate import newest_kek

    first = await put(store, rng.randbytes(10))
    new = Kek("kek-next", os.urandom(32))
    # Another process (mirror keys rotate) registers the KEK and rewrites the key file.
    other = make_store(store.root)
    other.keys.register(new)
    KeyFile(tmp_path / "kek").save(other.keys.ring.with_current(new))

    second = await put(store, rng.randbytes(10))

    assert newest_kek(store, first) != "kek-next"
    assert newest_kek(store, second) == "kek-next"
    assert store.keys.current.id == "kek-next"


async def test_a_bad_reload_keeps_the_loaded_keyring(
    store: EncryptedBlobStore, tmp_path: Path, rng: random.Random, caplog: pytest.LogCaptureFixture
) -> None:
    current = store.keys.current
    KeyFile(tmp_path / "kek").save(Keyring((Kek(current.id, os.urandom(32)),)))

    digest = await put(store, rng.randbytes(10))

    assert store.keys.current == current
    assert "keeping the loaded keyring" in caplog.text
    assert await store.get(digest) is not None
