"""Issue 14, HAProxy as the alternative: three real replicas with ``balancer = "haproxy"``
behind Debian's HAProxy (the configuration ``mirror tier haproxy-config`` prints), in front of
a real upstream. Concurrent clients fetch each cold blob from upstream once for the tier; a
killed replica is passed over (retried, then marked down by its health check) and only its
share is fetched again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mirror.tier.haproxy import HAProxyTier, render
from mirror.tier.haproxy_ring import HAProxyRing
from mirror.tier.ring import Member
from tests.integration.tier.conftest import cache_replicas, push_image
from tests.integration.tier.test_tier_pull import pull_from, settled
from tests.peers.haproxy import HAProxy, haproxy_binary
from tests.peers.mirror_serve import MirrorServe
from tests.peers.ports import free_port
from tests.peers.registry import Registry

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@dataclass
class HAProxyTierRun:
    """The running tier: replicas by server string, HAProxy in front, and its ring."""

    replicas: dict[str, MirrorServe]
    haproxy: HAProxy
    front: int
    ring: HAProxyRing

    @property
    def url(self) -> str:
        """HAProxy, where clients pull."""
        return f"http://127.0.0.1:{self.front}"


def holds(replica: MirrorServe, digest: str) -> bool:
    """Whether the replica's disk holds a file of ``digest``."""
    encoded = digest.partition(":")[2]
    return any(p.name == encoded for p in (replica.base_dir / "data" / "blobs").rglob("*"))


@pytest.fixture
async def haproxy_tier(
    tmp_path: Path, upstream_registry: Registry
) -> AsyncIterator[HAProxyTierRun]:
    if haproxy_binary() is None:
        pytest.skip("haproxy is not installed")
    replicas = cache_replicas(tmp_path, upstream_registry, balancer="haproxy")
    servers = list(replicas)
    front = free_port()
    config = render(
        HAProxyTier(servers, listen=f"127.0.0.1:{front}", check_interval=500, fall=2, rise=1)
    )
    haproxy = HAProxy(tmp_path / "haproxy", config, [front])
    try:
        await asyncio.gather(*(replica.start() for replica in replicas.values()))
        await haproxy.start()
        await asyncio.to_thread(haproxy.wait_status, "mirror_tier", dict.fromkeys(servers, "UP"))
        yield HAProxyTierRun(replicas, haproxy, front, HAProxyRing(Member(s) for s in servers))
    finally:
        await haproxy.stop()
        await asyncio.gather(*(replica.stop() for replica in replicas.values()))


async def test_clients_through_haproxy_fetch_each_cold_blob_from_upstream_once(
    haproxy_tier: HAProxyTierRun, upstream_registry: Registry, tmp_path: Path
) -> None:
    tier = haproxy_tier
    image = await push_image(upstream_registry, tmp_path, "tier/cold", seed=21)
    direct = [replica.url for replica in tier.replicas.values()]
    bases = [tier.url if i % 2 == 0 else direct[i % 3] for i in range(16)]
    await pull_from(bases, "tier/cold", image)
    counts = await settled(upstream_registry, image)
    assert counts == {b.digest: 1 for b in image.blobs()}
    # Each blob was filled by the replica HAProxy's ring names, which the replicas compute.
    for blob in image.blobs():
        owner = tier.replicas[tier.ring.owner(blob.digest)]
        assert holds(owner, blob.digest), blob.digest
    assert len({tier.ring.owner(b.digest) for b in image.blobs()}) >= 2


async def test_a_killed_replica_is_passed_over_and_only_its_share_is_refetched(
    haproxy_tier: HAProxyTierRun, upstream_registry: Registry, tmp_path: Path
) -> None:
    tier = haproxy_tier
    image = await push_image(upstream_registry, tmp_path, "tier/warm", seed=22, layers=9)
    await pull_from([tier.url] * 4, "tier/warm", image)
    before = await settled(upstream_registry, image)
    assert before == {b.digest: 1 for b in image.blobs()}

    dead = max(
        tier.replicas, key=lambda s: sum(tier.ring.owner(b.digest) == s for b in image.blobs())
    )
    owned = {b.digest for b in image.blobs() if tier.ring.owner(b.digest) == dead}
    assert owned
    await tier.replicas[dead].kill()
    # At once (HAProxy retries the connection on another server), and again once the health
    # check has taken the replica out of the tree.
    await pull_from([tier.url] * 4, "tier/warm", image)
    await asyncio.to_thread(tier.haproxy.wait_status, "mirror_tier", {dead: "DOWN"})
    await pull_from([tier.url] * 4, "tier/warm", image)
    after = await settled(upstream_registry, image)
    assert after == {d: 2 if d in owned else 1 for d in before}
    # Its share is now held by the next replica of each digest's walk, where HAProxy sends it.
    for digest in owned:
        stand_in = next(s for s in tier.ring.walk(digest) if s != dead)
        assert holds(tier.replicas[stand_in], digest), digest
