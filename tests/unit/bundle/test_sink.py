"""Resumable bundle tars: an interrupted export keeps its verified blobs and continues."""

from __future__ import annotations

import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mirror.bundle.sink import TarSink
from mirror.errors import DigestMismatch
from mirror.oci.digest import Digest


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 1000):
        yield data[start : start + 1000]


async def test_an_interrupted_tar_resumes_keeping_whole_verified_blobs(tmp_path: Path) -> None:
    first, second = b"a" * 5000, b"b" * 7000
    bundle = tmp_path / "bundle.tar"
    sink = TarSink(bundle).open()
    await sink.write(Digest.of(first), len(first), chunks(first))
    sink.close()
    # Interrupted mid-way through a second blob: its member is cut short.
    with (tmp_path / "bundle.tar.part").open("ab") as part:
        part.write(tarfile.TarInfo("blobs/sha256/" + "0" * 64).tobuf() + b"b" * 100)

    resumed = TarSink(bundle).open()
    assert resumed.has(Digest.of(first)) and not resumed.has(Digest.of(second))
    await resumed.write(Digest.of(second), len(second), chunks(second))
    resumed.finish([])

    with tarfile.open(bundle) as archive:
        names = archive.getnames()
    assert names.count(f"blobs/sha256/{Digest.of(first).encoded}") == 1
    assert f"blobs/sha256/{Digest.of(second).encoded}" in names
    assert names[0] == "oci-layout" and names[-1] == "index.json"


async def test_a_blob_that_does_not_match_leaves_nothing_in_the_tar(tmp_path: Path) -> None:
    TarSink(tmp_path / "bundle.tar").open().close()
    sink = TarSink(tmp_path / "bundle.tar").open()
    before = sink.partial.stat().st_size
    with pytest.raises(DigestMismatch):
        await sink.write(Digest.of(b"expected"), 8, chunks(b"tampered"))
    sink.close()
    assert sink.partial.stat().st_size == before


@pytest.mark.parametrize("wrong", [b"x" * 4999, b"x" * 5001], ids=["short", "long"])
async def test_an_authenticated_blob_of_the_wrong_size_leaves_nothing(
    tmp_path: Path, wrong: bytes
) -> None:
    # Authenticated chunks (the encrypted store's, each checked by its tag) skip the re-hash,
    # never the size check against the manifest's descriptor.
    right = b"a" * 5000
    TarSink(tmp_path / "bundle.tar").open().close()
    sink = TarSink(tmp_path / "bundle.tar").open()
    before = sink.partial.stat().st_size
    with pytest.raises(DigestMismatch):
        await sink.write(Digest.of(right), len(right), chunks(wrong), authenticated=True)
    sink.close()
    assert sink.partial.stat().st_size == before


async def test_an_authenticated_blob_is_kept_whole_and_found_on_resume(tmp_path: Path) -> None:
    body = bytes(range(256)) * 40
    bundle = tmp_path / "bundle.tar"
    sink = TarSink(bundle).open()
    await sink.write(Digest.of(body), len(body), chunks(body), authenticated=True)
    sink.close()
    # Resuming hashes every member it keeps, so a member written unhashed is checked there.
    resumed = TarSink(bundle).open()
    assert resumed.has(Digest.of(body))
    resumed.finish([])
    with tarfile.open(bundle) as archive:
        member = archive.extractfile(f"blobs/sha256/{Digest.of(body).encoded}")
        assert member is not None and member.read() == body
