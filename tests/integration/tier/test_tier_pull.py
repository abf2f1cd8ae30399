"""Issue 14, the tier's blobs: 32 clients pull one cold image through the tier and upstream
sends each blob once; with a replica killed, nginx retries the next and only its share of
blobs is fetched again."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from mirror.testing.images import BuiltImage
from tests.integration.tier.conftest import Tier, pull, push_image
from tests.peers.registry import Registry

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def upstream_gets(registry: Registry, image: BuiltImage) -> dict[str, int]:
    """How many times upstream answered a GET of each of the image's blobs."""
    return {b.digest: registry.count_requests("GET", f"/blobs/{b.digest}") for b in image.blobs()}


async def pull_from(bases: list[str], repo: str, image: BuiltImage) -> None:
    """One client per base URL at once; every body must be the blob it was asked for."""
    async with aiohttp.ClientSession() as session:
        results = await asyncio.gather(*(pull(session, base, repo, "v1") for base in bases))
    expected = {b.digest: b.digest for b in image.blobs()}
    assert all(result == expected for result in results)


async def settled(registry: Registry, image: BuiltImage, at_least: int = 1) -> dict[str, int]:
    """The upstream counts once each blob's GET has been logged (lines lag responses)."""
    for blob in image.blobs():
        await registry.wait_for_requests("GET", f"/blobs/{blob.digest}", at_least)
    await asyncio.sleep(0.3)
    return upstream_gets(registry, image)


async def test_32_clients_spread_over_the_tier_fetch_each_blob_from_upstream_once(
    tier: Tier, upstream_registry: Registry, tmp_path: Path
) -> None:
    image = await push_image(upstream_registry, tmp_path, "tier/cold", seed=1)
    # A quarter come through nginx (each blob to its owner); the rest reach a replica
    # directly, as after a failover or a retry nginx moved: those read from the owner.
    bases = [tier.url if i % 4 == 0 else tier.urls()[i % 3] for i in range(32)]
    await pull_from(bases, "tier/cold", image)
    counts = await settled(upstream_registry, image)
    assert counts == {b.digest: 1 for b in image.blobs()}
    owners = {tier.ring.owner(b.digest) for b in image.blobs()}
    assert len(owners) >= 2  # the image's blobs really are spread over the replicas


async def test_a_killed_replica_is_retried_on_the_next_and_only_its_share_is_refetched(
    tier: Tier, upstream_registry: Registry, tmp_path: Path
) -> None:
    image = await push_image(upstream_registry, tmp_path, "tier/warm", seed=2, layers=9)
    await pull_from([tier.url] * 4, "tier/warm", image)
    before = await settled(upstream_registry, image)
    assert before == {b.digest: 1 for b in image.blobs()}

    dead = max(
        tier.replicas, key=lambda s: sum(tier.ring.owner(b.digest) == s for b in image.blobs())
    )
    await tier.replicas[dead].kill()
    await pull_from([tier.url] * 8, "tier/warm", image)
    owned = {b.digest for b in image.blobs() if tier.ring.owner(b.digest) == dead}
    assert owned
    after = await settled(upstream_registry, image)
    # The dead replica's share is fetched once more (by its stand-in, for all 8 clients);
    # every other blob is still served from the replicas that hold it.
    assert after == {d: 2 if d in owned else 1 for d in before}
    log = tier.nginx.access_log.read_text()
    retried = [line for line in log.splitlines() if line.split(" -> ")[1].startswith(dead + ", ")]
    assert retried, log  # nginx tried the dead replica first, then the next


async def test_with_a_replica_gone_a_cold_image_is_still_fetched_once_for_the_tier(
    tier: Tier, upstream_registry: Registry, tmp_path: Path
) -> None:
    image = await push_image(upstream_registry, tmp_path, "tier/after", seed=3, layers=9)
    # The replica that owns one of the image's blobs goes (the ring follows the replicas'
    # ports, so a fixed pick owned none of the 10 blobs in about 2 % of runs).
    dead = tier.ring.owner(next(iter(image.blobs())).digest)
    await tier.replicas[dead].kill()
    live = [r.url for s, r in tier.replicas.items() if s != dead]
    bases = [tier.url if i % 2 == 0 else live[(i // 2) % 2] for i in range(16)]
    await pull_from(bases, "tier/after", image)
    counts = await settled(upstream_registry, image)
    assert counts == {b.digest: 1 for b in image.blobs()}
    assert any(tier.ring.owner(b.digest) == dead for b in image.blobs())
