"""Replicas of a regional tier share their metadata in one PostgreSQL: each has its own data
directory for blobs, and what one learns (tags, manifests, links) the other knows."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
import pytest

from mirror.db.metadata import TagRecord
from mirror.db.roles import MetadataStore
from mirror.oci.digest import Digest
from mirror.oci.media import OCI_MANIFEST
from tests.peers.factory import ImageFactory
from tests.peers.registry import Registry

from .conftest import Mirror, MirrorFactory

pytestmark = pytest.mark.integration


async def replicas(factory: MirrorFactory, registry: Registry, dsn: str) -> tuple[Mirror, Mirror]:
    shared = {"backend": "postgres", "dsn": dsn}
    upstreams = {registry.host: registry.url}
    first = await factory(upstreams, metadata=shared)
    second = await factory(upstreams, metadata=shared)
    assert first.data_dir != second.data_dir
    return first, second


async def get_manifest(mirror: Mirror, repo: str, reference: str) -> bytes:
    async with aiohttp.ClientSession() as session:
        url = f"{mirror.url}/v2/{repo}/manifests/{reference}"
        async with session.get(url, headers={"Accept": OCI_MANIFEST}) as response:
            assert response.status == 200, await response.text()
            return await response.read()


async def eventually(check: Callable[[], bool], within: float = 5.0) -> bool:
    """Whether ``check`` holds within ``within`` seconds (notifications are asynchronous)."""
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def test_a_manifest_cached_by_one_replica_is_known_to_the_other(
    mirror_factory: MirrorFactory,
    upstream_registry: Registry,
    image_factory: ImageFactory,
    postgres_dsn: str,
) -> None:
    a, b = await replicas(mirror_factory, upstream_registry, postgres_dsn)
    pushed = image_factory.push("v1", layers=1, layer_size=2048)
    body = await get_manifest(a, pushed.repo, "v1")
    digest = Digest.of(body)
    seen_by_b: MetadataStore = b.services.metadata

    [(upstream, repo, tag, record)] = [t for t in seen_by_b.tags() if t[1] == pushed.repo]
    assert (repo, tag, record.digest) == (pushed.repo, "v1", str(digest))
    assert seen_by_b.tag(upstream, repo, "v1") == record
    known = seen_by_b.manifest(digest)
    assert known is not None and known.size == len(body)
    assert set(known.referenced()) == {Digest.parse(blob.digest) for blob in pushed.image.blobs()}
    assert (upstream, repo) in set(seen_by_b.repositories())
    # B's blob disk holds nothing of it: only the metadata is shared.
    assert b.cached_blob_files() == []


async def test_replicas_see_each_others_tag_moves_and_unlinks_through_their_memos(
    mirror_factory: MirrorFactory, upstream_registry: Registry, postgres_dsn: str
) -> None:
    a, b = await replicas(mirror_factory, upstream_registry, postgres_dsn)
    one, two = (Digest.parse("sha256:" + c * 64) for c in "12")
    writer: MetadataStore = a.services.metadata
    reader: MetadataStore = b.services.metadata
    writer.set_tag("h", "app", "latest", TagRecord(str(one), OCI_MANIFEST, 5, 1.0))
    writer.link("h", "app", [one])
    # B reads (and memoises) what A wrote.
    assert reader.tag("h", "app", "latest") == TagRecord(str(one), OCI_MANIFEST, 5, 1.0)
    assert reader.linked("h", "app", one)

    writer.set_tag("h", "app", "latest", TagRecord(str(two), OCI_MANIFEST, 6, 2.0))
    writer.touch_tag("h", "app", "latest", 3.0)
    writer.unlink("h", "app")
    moved = TagRecord(str(two), OCI_MANIFEST, 6, 3.0)
    assert await eventually(lambda: reader.tag("h", "app", "latest") == moved)
    assert await eventually(lambda: not reader.linked("h", "app", one))
    assert [m.to_digest for m in reader.tag_history("h", "app")] == [str(one), str(two)]
