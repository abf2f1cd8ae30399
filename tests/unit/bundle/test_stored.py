"""Manifests read straight from the cache answer as the serving path would from cache: a tag
only within its TTL (forever offline), a manifest only when recorded and when its stored body
hashes to its digest; anything else is left to the mirror (``NotStored``)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from mirror.blobstore.filesystem import FilesystemBlobStore
from mirror.bundle.stored import NotStored, StoredManifests
from mirror.clock import ManualClock
from mirror.db.metadata import ManifestRecord, Metadata, TagRecord
from mirror.oci.digest import Digest
from mirror.upstream.routing import Route, Router

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
BODY = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": []}).encode()
DIGEST = Digest.of(BODY)
TTL = 60.0


@pytest.fixture
def metadata(tmp_path: Path) -> Iterator[Metadata]:
    """A metadata store holding ``library/app:1.0`` → ``BODY``, checked at time 1000."""
    store = Metadata(tmp_path / "metadata")
    store.set_manifest(DIGEST, ManifestRecord(OCI_MANIFEST, len(BODY), (), 1000.0))
    store.set_tag(
        "docker.io", "library/app", "1.0", TagRecord(str(DIGEST), OCI_MANIFEST, 1, 1000.0)
    )
    yield store
    store.close()


@pytest.fixture
async def blobs(tmp_path: Path) -> FilesystemBlobStore:
    """A blob store holding ``BODY``."""
    store = FilesystemBlobStore(tmp_path / "blobs")
    await store.put(DIGEST, BODY)
    return store


def reader(
    blobs: FilesystemBlobStore, metadata: Metadata, clock: ManualClock, ttl: float = TTL
) -> StoredManifests:
    """Manifests of a mirror of docker.io (its library prefix on) with ``ttl`` for tags."""
    router = Router([Route("docker.io", ("registry-1.docker.io",), True)], "docker.io")
    return StoredManifests(blobs, metadata, router, clock, ttl)


async def test_a_tag_within_its_ttl_resolves_to_the_stored_manifest_and_counts_a_pull(
    blobs: FilesystemBlobStore, metadata: Metadata
) -> None:
    clock = ManualClock(1000.0 + TTL - 1)
    found = await reader(blobs, metadata, clock).manifest("docker.io", "app", "1.0")

    assert (found.digest, found.media_type, found.body) == (DIGEST, OCI_MANIFEST, BODY)
    assert metadata.last_pull("docker.io", "library/app", DIGEST) == clock.now()


async def test_an_alias_of_the_upstream_resolves_like_the_mirror_resolves_ns(
    blobs: FilesystemBlobStore, metadata: Metadata
) -> None:
    found = await reader(blobs, metadata, ManualClock(1001.0)).manifest(
        "registry-1.docker.io", "library/app", "1.0"
    )
    assert found.digest == DIGEST


async def test_a_tag_past_its_ttl_is_left_to_the_mirror_to_revalidate(
    blobs: FilesystemBlobStore, metadata: Metadata
) -> None:
    with pytest.raises(NotStored):
        await reader(blobs, metadata, ManualClock(1000.0 + TTL)).manifest("docker.io", "app", "1.0")
    assert metadata.last_pull("docker.io", "library/app", DIGEST) is None


async def test_offline_a_cached_tag_never_goes_stale(
    blobs: FilesystemBlobStore, metadata: Metadata
) -> None:
    stored = reader(blobs, metadata, ManualClock(1000.0 + 10**9), ttl=math.inf)
    assert (await stored.manifest("docker.io", "app", "1.0")).digest == DIGEST


async def test_a_digest_reference_needs_no_tag_and_no_ttl(
    blobs: FilesystemBlobStore, metadata: Metadata
) -> None:
    stored = reader(blobs, metadata, ManualClock(10**9))
    assert (await stored.manifest("docker.io", "app", str(DIGEST))).body == BODY


@pytest.mark.parametrize(
    ("host", "repo", "reference"),
    [
        ("docker.io", "app", "2.0"),  # a tag the cache never saw
        ("quay.io", "app", "1.0"),  # a registry no upstream serves
        ("docker.io", "app", "sha256:" + "0" * 64),  # a manifest not cached
        ("docker.io", "app", "sha256:nothex"),  # not a digest
        ("docker.io", "app", "-bad-tag"),  # not a tag
    ],
    ids=["unknown tag", "unknown registry", "uncached digest", "bad digest", "bad tag"],
)
async def test_what_the_cache_cannot_answer_is_left_to_the_mirror(
    blobs: FilesystemBlobStore, metadata: Metadata, host: str, repo: str, reference: str
) -> None:
    with pytest.raises(NotStored):
        await reader(blobs, metadata, ManualClock(1001.0)).manifest(host, repo, reference)


async def test_a_stored_body_that_no_longer_hashes_to_its_digest_is_never_returned(
    blobs: FilesystemBlobStore, metadata: Metadata
) -> None:
    path = blobs.path(DIGEST)
    path.write_bytes(BODY.replace(b"layers", b"Layers"))
    with pytest.raises(NotStored):
        await reader(blobs, metadata, ManualClock(1001.0)).manifest("docker.io", "app", "1.0")


async def test_a_recorded_manifest_whose_body_is_gone_is_left_to_the_mirror(
    blobs: FilesystemBlobStore, metadata: Metadata
) -> None:
    blobs.path(DIGEST).unlink()
    with pytest.raises(NotStored):
        await reader(blobs, metadata, ManualClock(1001.0)).manifest("docker.io", "app", "1.0")


async def test_referrers_are_always_listed_by_the_mirror(
    blobs: FilesystemBlobStore, metadata: Metadata
) -> None:
    with pytest.raises(NotStored):
        await reader(blobs, metadata, ManualClock(1001.0)).referrers("docker.io", "app", DIGEST)
