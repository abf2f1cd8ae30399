"""A tier on this machine: three real ``mirror serve`` replicas behind Debian's nginx (config
from ``mirror tier nginx-config``'s renderer), in front of a real ``docker-registry``."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from mirror.testing.images import BuiltImage, build_image, random_layer
from mirror.tier.nginx import NginxTier, render
from mirror.tier.ring import HashRing, Member
from tests.peers.mirror_serve import MirrorServe
from tests.peers.nginx import Nginx, nginx_binary
from tests.peers.ports import free_port
from tests.peers.registry import Registry

MANIFEST_TYPES = "application/vnd.oci.image.manifest.v1+json"

REPLICA_CONFIG = """\
default_upstream = "{upstream_host}"
[server]
listen = "127.0.0.1:{{port}}"
[storage]
data_dir = "{base}/data"
chunk_size = 65536
[encryption]
kek_file = "{base}/kek"
[[upstreams]]
host = "{upstream_host}"
url = "{upstream_url}"
[tier]
replicas = {replicas}
self = "http://127.0.0.1:{port}"
secret_file = "{secret}"
balancer = "{balancer}"
"""


@dataclass
class Tier:
    """The running tier: replicas (by server string), nginx in front, and the ring."""

    replicas: dict[str, MirrorServe]
    nginx: Nginx
    front: int
    ring: HashRing

    @property
    def url(self) -> str:
        """nginx, where clients pull."""
        return f"http://127.0.0.1:{self.front}"

    def urls(self) -> list[str]:
        """Every replica's own URL (clients that reach a replica without nginx)."""
        return [replica.url for replica in self.replicas.values()]


def cache_replicas(
    tmp_path: Path, upstream_registry: Registry, balancer: str = "nginx"
) -> dict[str, MirrorServe]:
    """Three caching replicas of ``upstream_registry`` (not started), by server string, whose
    ring is ``balancer``'s."""
    ports = [free_port() for _ in range(3)]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    secret = tmp_path / "tier.secret"
    secret.write_text(random.Random(7).randbytes(32).hex())
    replicas: dict[str, MirrorServe] = {}
    for i, port in enumerate(ports):
        base = tmp_path / f"replica-{i}"
        config = REPLICA_CONFIG.format(
            upstream_host=upstream_registry.host,
            upstream_url=upstream_registry.url,
            base=base,
            replicas=json.dumps(urls),
            port=port,
            secret=secret,
            balancer=balancer,
        )
        replicas[f"127.0.0.1:{port}"] = MirrorServe(base, config, port=port)
    return replicas


@pytest.fixture
async def tier(tmp_path: Path, upstream_registry: Registry) -> AsyncIterator[Tier]:
    if nginx_binary() is None:
        pytest.skip("nginx is not installed")
    replicas = cache_replicas(tmp_path, upstream_registry)
    front = free_port()
    servers = list(replicas)
    nginx = Nginx(
        tmp_path / "nginx", render(NginxTier(servers, listen=f"127.0.0.1:{front}")), [front]
    )
    try:
        await asyncio.gather(*(replica.start() for replica in replicas.values()))
        await nginx.start()
        yield Tier(replicas, nginx, front, HashRing(Member(s) for s in servers))
    finally:
        await nginx.stop()
        await asyncio.gather(*(replica.stop() for replica in replicas.values()))


async def push_image(
    registry: Registry, tmp_path: Path, repo: str, seed: int, layers: int = 6
) -> BuiltImage:
    """Build a cold image of ``layers`` incompressible layers and push it upstream."""
    rng = random.Random(seed)
    sizes = [rng.randrange(200_000, 700_000) for _ in range(layers)]
    image = build_image(tmp_path / f"layout-{seed}", "v1", [random_layer(rng, n) for n in sizes])
    await registry.push_async(image.layout_dir, "v1", repo)
    return image


async def pull(session: aiohttp.ClientSession, base: str, repo: str, tag: str) -> dict[str, str]:
    """Pull an image as a client does: the manifest, then every blob; returns each blob's
    digest -> the sha256 of the body received."""
    async with session.get(
        f"{base}/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST_TYPES}
    ) as resp:
        assert resp.status == 200, await resp.text()
        manifest = json.loads(await resp.read())
    digests = [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]
    got: dict[str, str] = {}
    for digest in digests:
        async with session.get(f"{base}/v2/{repo}/blobs/{digest}") as resp:
            assert resp.status == 200, await resp.text()
            got[digest] = "sha256:" + hashlib.sha256(await resp.read()).hexdigest()
    return got
