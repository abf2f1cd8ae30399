"""Scrubbing finds and evicts every kind of damage, in either store."""

from __future__ import annotations

import os
import random
from pathlib import Path

from mirror.blobstore.encrypted import EncryptedBlobStore
from mirror.blobstore.filesystem import FilesystemBlobStore
from mirror.blobstore.keyring import CacheKeys
from mirror.blobstore.scrub import ScrubReport, scrub
from mirror.crypto.envelope import AES_256_GCM, HEADER_SIZE
from mirror.crypto.sources import KeyFile
from mirror.oci.digest import Digest


def flip(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x80
    path.write_bytes(bytes(raw))


async def test_scrub_reports_and_evicts_damaged_encrypted_objects(
    tmp_path: Path, rng: random.Random
) -> None:
    root = tmp_path / "cache"
    keys = CacheKeys.open(KeyFile(tmp_path / "kek"), root, random_bytes=os.urandom, now=0.0)
    store = EncryptedBlobStore(root, keys, cipher=AES_256_GCM, chunk_size=4096)
    blobs = [rng.randbytes(9000) for _ in range(5)]
    digests = [Digest.of(b) for b in blobs]
    for digest, blob in zip(digests, blobs, strict=True):
        await store.put(digest, blob)
    good, flipped, cut, swap_a, swap_b = digests
    flip(store.path(flipped), HEADER_SIZE + 5000)
    os.truncate(store.path(cut), store.path(cut).stat().st_size - 10)
    raw_a, raw_b = store.path(swap_a).read_bytes(), store.path(swap_b).read_bytes()
    store.path(swap_a).write_bytes(raw_b)
    store.path(swap_b).write_bytes(raw_a)
    seen: list[int] = []

    report = await scrub(store, lambda r: seen.append(r.checked))

    assert {d for d, _ in report.bad} == {flipped, cut, swap_a, swap_b}
    assert dict(report.bad)[flipped] == "chunk 1 failed its tag check"
    assert report.checked == report.total == 5
    assert seen == [1, 2, 3, 4, 5]
    assert list(store.digests()) == [good]
    assert (await scrub(store)).bad == []


async def test_scrub_of_the_plaintext_store_hashes_every_object(
    tmp_path: Path, rng: random.Random
) -> None:
    store = FilesystemBlobStore(tmp_path / "cache")
    blobs = [rng.randbytes(3000) for _ in range(2)]
    digests = [Digest.of(b) for b in blobs]
    for digest, blob in zip(digests, blobs, strict=True):
        await store.put(digest, blob)
    flip(store.path(digests[1]), 100)

    report = await scrub(store)

    assert report == ScrubReport(
        total=2, checked=2, bytes=6000, bad=[(digests[1], "content does not match its digest")]
    )
    assert list(store.digests()) == [digests[0]]
