"""Issue 14, redundancy of hosted blobs: an image pushed through nginx (skopeo) is held by
``hosted_replication`` replicas of each digest's walk before the push is answered; it still
pulls, byte for byte, with a replica killed; a fresh replica in its place gets its share back,
and ``mirror tier repair`` restores copies lost from a disk."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mirror.testing.images import BuiltImage, build_image, random_layer
from mirror.tier.nginx import NginxTier, render
from mirror.tier.ring import HashRing, Member
from tests.integration.tier.conftest import Tier
from tests.peers.mirror_serve import MirrorServe
from tests.peers.nginx import Nginx, nginx_binary
from tests.peers.ports import free_port
from tests.peers.skopeo import skopeo_copy_async

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

HOSTED_CONFIG = """\
default_upstream = ""
[server]
listen = "127.0.0.1:{{port}}"
allow_anonymous_push = true
[storage]
data_dir = "{base}/data"
chunk_size = 65536
[encryption]
kek_file = "{base}/kek"
[metadata]
backend = "postgres"
dsn = "{dsn}"
[[upstreams]]
host = "upstream.invalid"
url = "http://127.0.0.1:9"
[tier]
replicas = {replicas}
self = "http://127.0.0.1:{port}"
secret_file = "{secret}"
hosted_replication = 2
repair_interval = 3600.0
"""


def replica_config(base: Path, port: int, urls: list[str], secret: Path, dsn: str) -> str:
    """A replica's configuration (its own data directory, the shared database)."""
    return HOSTED_CONFIG.format(
        base=base, port=port, replicas=json.dumps(urls), secret=secret, dsn=dsn
    )


@pytest.fixture
async def hosted_tier(tmp_path: Path, postgres_dsn: str) -> AsyncIterator[Tier]:
    if nginx_binary() is None:
        pytest.skip("nginx is not installed")
    ports = [free_port() for _ in range(3)]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    secret = tmp_path / "tier.secret"
    secret.write_text(random.Random(11).randbytes(32).hex())
    replicas = {
        f"127.0.0.1:{port}": MirrorServe(
            tmp_path / f"replica-{i}",
            replica_config(tmp_path / f"replica-{i}", port, urls, secret, postgres_dsn),
            port=port,
        )
        for i, port in enumerate(ports)
    }
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


def held_by(tier: Tier, digest: str) -> set[str]:
    """The replicas whose disk holds a file of ``digest`` (counted on the disks)."""
    encoded = digest.partition(":")[2]
    return {
        server
        for server, replica in tier.replicas.items()
        if any(p.name == encoded for p in (replica.base_dir / "data" / "blobs").rglob("*"))
    }


def holders(tier: Tier, digest: str) -> set[str]:
    """The first two replicas of ``digest``'s walk: where its copies belong."""
    walk = tier.ring.walk(digest)
    return {next(walk), next(walk)}


def image_digests(image: BuiltImage) -> list[str]:
    """The image's blobs and its manifest."""
    return [*(b.digest for b in image.blobs()), image.manifest_digest]


async def pulled_bytes(tier: Tier, dest: Path) -> dict[str, str]:
    """skopeo pulls team/app:v1 through nginx into ``dest``: each file's sha256."""
    await skopeo_copy_async(
        f"docker://127.0.0.1:{tier.front}/team/app:v1", f"dir:{dest}", "--src-tls-verify=false"
    )
    return blob_files(dest)


def blob_files(dest: Path) -> dict[str, str]:
    """The sha256 of each blob file skopeo wrote into a ``dir:`` destination, by name."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in dest.iterdir()
        if len(p.name) == 64
    }


def repair_cli(tier: Tier, server: str) -> subprocess.CompletedProcess[str]:
    """``mirror tier repair`` with one replica's configuration."""
    config = tier.replicas[server].base_dir / "mirror.toml"
    return subprocess.run(
        [sys.executable, "-m", "mirror", "tier", "repair", "--config", str(config)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


async def eventually_held(tier: Tier, digests: list[str], within: float = 30.0) -> None:
    """Until every digest is on each of its holders' disks."""
    deadline = asyncio.get_running_loop().time() + within
    while not all(holders(tier, d) <= held_by(tier, d) for d in digests):
        assert asyncio.get_running_loop().time() < deadline, {
            d: (held_by(tier, d), holders(tier, d)) for d in digests
        }
        await asyncio.sleep(0.2)


async def test_a_pushed_image_survives_a_lost_replica_and_its_copies_are_restored(
    hosted_tier: Tier, tmp_path: Path
) -> None:
    tier = hosted_tier
    rng = random.Random(5)
    layers = [random_layer(rng, rng.randrange(100_000, 400_000)) for _ in range(6)]
    image = build_image(tmp_path / "layout", "v1", layers)
    await skopeo_copy_async(
        f"oci:{image.layout_dir}:v1",
        f"docker://127.0.0.1:{tier.front}/team/app:v1",
        "--dest-tls-verify=false",
    )
    digests = image_digests(image)
    # Answered 201 only once both holders of each digest had it: no waiting here.
    for digest in digests:
        assert holders(tier, digest) <= held_by(tier, digest), digest

    # kill -9 the replica holding the most; the image still pulls with the right bytes.
    dead = max(tier.replicas, key=lambda s: sum(s in held_by(tier, d) for d in digests))
    await tier.replicas[dead].kill()
    got = await pulled_bytes(tier, tmp_path / "after-kill")
    expected = {b.digest.partition(":")[2]: b.digest.partition(":")[2] for b in image.blobs()}
    assert got == expected

    # A fresh replica in its place (empty disk): it fetches its share back by itself.
    old = tier.replicas[dead]
    fresh_base = tmp_path / "replacement"
    fresh = MirrorServe(
        fresh_base, old.config_text.replace(str(old.base_dir), str(fresh_base)), port=old.port
    )
    tier.replicas[dead] = fresh
    await fresh.start()
    await eventually_held(tier, digests)

    # Copies lost from a running replica's disk come back with `mirror tier repair`.
    victim = next(s for s in tier.replicas if s != dead)
    lost = [d for d in digests if victim in held_by(tier, d) and victim in holders(tier, d)]
    assert lost
    for digest in lost:
        encoded = digest.partition(":")[2]
        for path in (tier.replicas[victim].base_dir / "data" / "blobs").rglob(encoded):
            path.unlink()
    assert all(victim not in held_by(tier, d) for d in lost)
    done = repair_cli(tier, dead)
    assert done.returncode == 0, done.stdout + done.stderr
    reports = {r["replica"]: r for r in map(json.loads, done.stdout.splitlines())}
    assert set(reports) == set(tier.replicas)
    assert reports[victim]["restored"] == len(lost)
    for digest in digests:
        assert holders(tier, digest) <= held_by(tier, digest), digest
    again = await pulled_bytes(tier, tmp_path / "after-repair")
    assert again == expected
