"""Chaining (docs/airgap.md): containerd → node-local mirror → regional mirror → origin.

The node-local mirrors' upstream is marked ``forward_ns``, so they name the origin registry
with ``?ns=`` and the regional mirror picks its upstream by it and applies single-flight:
every blob and manifest comes from the origin (a real ``docker-registry``, whose access log
counts) exactly once for the whole chain, however many nodes pull at once. With the regional
mirror gone, a node-local mirror still serves what it holds (stale-if-error for the tag, blobs
from disk) and answers the rest with a clear OCI error.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from mirror.check.proxy import CountingProxy
from tests.peers.containerd import Containerd, write_hosts_toml
from tests.peers.factory import ImageFactory, PushedImage
from tests.peers.ports import free_port
from tests.peers.registry import Registry

from .conftest import AuthMirrorFactory, Mirror, MirrorFactory

pytestmark = pytest.mark.integration

DEAD_URL = "http://127.0.0.1:9"
POLL = 0.01


async def chain(mirror_factory: MirrorFactory, origin: Registry, nodes: int) -> list[Mirror]:
    """A regional mirror in front of ``origin`` and ``nodes`` node-local mirrors in front of
    it; returns ``[regional, node, ...]``. The regional mirror's default upstream is a dead
    one, so only the forwarded ``ns`` can send a request to the origin."""
    regional = await mirror_factory({"elsewhere.test": DEAD_URL, origin.host: origin.url})
    chained = {origin.host: regional.url}
    return [regional] + [
        await mirror_factory(chained, upstream_options={"forward_ns": True}) for _ in range(nodes)
    ]


def origin_gets(origin: Registry, since: int, path_part: str) -> list[str]:
    """The user agents of the origin's GETs (logged after entry ``since``) whose path holds
    ``path_part``."""
    return [
        entry.user_agent
        for entry in origin.requests()[since:]
        if entry.method == "GET" and path_part in entry.path
    ]


async def assert_fetched_once_for_the_chain(
    origin: Registry, since: int, pushed: PushedImage
) -> None:
    """Every blob and the manifest of ``pushed`` was GET from the origin exactly once, by a
    mirror (containerd never fell back to the origin)."""
    for blob in pushed.image.blobs():
        await origin.wait_for_requests("GET", blob.digest)
        fetchers = origin_gets(origin, since, blob.digest)
        assert len(fetchers) == 1 and fetchers[0].startswith("oci-mirror/"), (blob, fetchers)
    manifests = origin_gets(origin, since, f"/v2/{pushed.repo}/manifests/")
    assert len(manifests) == 1 and manifests[0].startswith("oci-mirror/"), manifests


async def test_ctr_pulls_a_tag_through_node_local_and_regional_mirrors(
    mirror_factory: MirrorFactory,
    image_factory: ImageFactory,
    upstream_registry: Registry,
    containerd: Containerd,
    hosts_dir: Path,
) -> None:
    regional, node = await chain(mirror_factory, upstream_registry, nodes=1)
    pushed = image_factory.push("v1", layers=3, layer_size=100_000)
    since = len(upstream_registry.requests())
    write_hosts_toml(hosts_dir, upstream_registry.host, upstream_registry.url, node.url)

    done = await containerd.pull_async(pushed.ref, hosts_dir)

    assert done.returncode == 0, done.stderr
    blobs = pushed.image.blobs()
    assert {b.digest for b in blobs} | {pushed.image.manifest_digest} <= (
        containerd.content_digests()
    )
    await assert_fetched_once_for_the_chain(upstream_registry, since, pushed)
    # Both tiers cached the image under the origin's host: the regional one chose its upstream
    # from the forwarded ns, not from its default.
    for tier in (regional, node):
        assert tier.services.metadata.tag(upstream_registry.host, pushed.repo, "v1") is not None
        assert tier.metric("mirror_fills_committed_total") == len(blobs)


class JoinGate:
    """Holds each of the regional mirror's blob GETs to the origin until every node's request
    for a blob has reached the regional mirror and joined its fill (its join counter says so),
    so the second node joins the in-flight fetch whatever the machine's load: no timing."""

    def __init__(self, nodes_proxy: CountingProxy, regional: Mirror, limit: float) -> None:
        self._nodes = nodes_proxy
        self._regional = regional
        self._limit = limit

    def _later_asks(self) -> int:
        """Node blob GETs beyond the first of each blob: each must join a held fill."""
        return sum(
            n - 1 for (m, path), n in self._nodes.counts.items() if m == "GET" and "/blobs/" in path
        )

    def _open(self, digest: str) -> bool:
        joins = self._regional.metric("mirror_singleflight_joins_total", kind="blob")
        return self._nodes.count("GET", digest) >= 2 and joins >= self._later_asks()

    async def hold(self, method: str, path: str) -> None:
        """The proxy's gate: wait until the blob of ``path`` was asked for by both nodes and
        joined (a bounded wait: if it never happens the test's join count says so)."""
        if method != "GET" or "/blobs/" not in path:
            return
        digest = path.rsplit("/", 1)[1]
        # Polled: the join counter is the regional mirror's own evidence and has no event.
        for _ in range(int(self._limit / POLL)):
            if self._open(digest):
                return
            await asyncio.sleep(POLL)


async def test_concurrent_pulls_via_two_nodes_fetch_each_blob_once(
    mirror_factory: MirrorFactory,
    image_factory: ImageFactory,
    upstream_registry: Registry,
    tmp_path: Path,
) -> None:
    pushed = image_factory.push("v1", layers=4, layer_size=400_000)
    # 2 containerd → 2 node-local → counting proxy → regional → gate proxy → origin.
    to_origin = CountingProxy(upstream_registry.url)
    async with to_origin.serve() as origin_url:
        regional = await mirror_factory(
            {"elsewhere.test": DEAD_URL, upstream_registry.host: origin_url}
        )
        to_regional = CountingProxy(regional.url)
        async with to_regional.serve() as regional_url:
            nodes = [
                await mirror_factory(
                    {upstream_registry.host: regional_url}, upstream_options={"forward_ns": True}
                )
                for _ in range(2)
            ]
            to_origin.mode.hold = JoinGate(to_regional, regional, limit=60.0).hold
            since = len(upstream_registry.requests())
            dirs = []
            for i, node in enumerate(nodes):
                dirs.append(tmp_path / f"hosts-{i}")
                write_hosts_toml(dirs[-1], upstream_registry.host, upstream_registry.url, node.url)
            async with (
                Containerd(tmp_path / "node-a") as first,
                Containerd(tmp_path / "node-b") as second,
            ):
                done = await asyncio.gather(
                    first.pull_async(pushed.ref, dirs[0]), second.pull_async(pushed.ref, dirs[1])
                )
                assert all(d.returncode == 0 for d in done), [d.stderr for d in done]
                for client in (first, second):
                    assert {b.digest for b in pushed.image.blobs()} <= client.content_digests()

    await assert_fetched_once_for_the_chain(upstream_registry, since, pushed)
    # Each node-local mirror filled every blob from the regional one, which fetched each once
    # and served the other node's request by joining that (held) fetch: never from its cache.
    blobs = len(pushed.image.blobs())
    assert regional.metric("mirror_fills_started_total") == blobs
    assert regional.metric("mirror_fills_committed_total") == blobs
    assert regional.metric("mirror_singleflight_joins_total", kind="blob") == blobs
    assert regional.metric("mirror_cache_hits_total", kind="blob") == 0
    for blob in pushed.image.blobs():
        assert to_origin.count("GET", blob.digest) == 1, blob
        assert to_regional.count("GET", blob.digest) == 2, blob
    for node in nodes:
        assert node.metric("mirror_fills_committed_total") == blobs


async def test_regional_down_node_local_serves_its_cache(
    mirror_factory: MirrorFactory,
    image_factory: ImageFactory,
    upstream_registry: Registry,
    containerd: Containerd,
    hosts_dir: Path,
    tmp_path: Path,
) -> None:
    regional, node = await chain(mirror_factory, upstream_registry, nodes=1)
    cached = image_factory.push("v1", layers=2, layer_size=100_000)
    uncached = image_factory.push("v1", repo=f"{cached.repo}-other", layers=1)
    write_hosts_toml(hosts_dir, upstream_registry.host, upstream_registry.url, node.url)
    assert (await containerd.pull_async(cached.ref, hosts_dir)).returncode == 0

    await regional.server.close()  # the regional app shuts down; its port refuses
    node.clock.advance(node.config.cache.tag_ttl + 1)  # the tag must be revalidated
    # A node whose origin is unreachable too (air-gapped): containerd cannot fall back.
    write_hosts_toml(hosts_dir, upstream_registry.host, f"http://127.0.0.1:{free_port()}", node.url)
    since = len(upstream_registry.requests())

    async with Containerd(tmp_path / "fresh-node") as fresh:
        done = await fresh.pull_async(cached.ref, hosts_dir)
        assert done.returncode == 0, done.stderr
        assert {b.digest for b in cached.image.blobs()} <= fresh.content_digests()
        failed = await fresh.pull_async(uncached.ref, hosts_dir)
        assert failed.returncode != 0
    assert upstream_registry.requests()[since:] == []

    async with aiohttp.ClientSession() as http:
        ns = f"?ns={upstream_registry.host}"
        tag_url = f"{node.url}/v2/{cached.repo}/manifests/v1{ns}"
        async with http.head(tag_url) as stale:
            assert stale.status == 200
            assert stale.headers["Docker-Content-Digest"] == cached.image.manifest_digest
            assert "110" in stale.headers.get("Warning", "")
        async with http.get(f"{node.url}/v2/{uncached.repo}/manifests/v1{ns}") as missing:
            body = await missing.json()
    assert missing.status == 503, body
    error = body["errors"][0]
    assert error["code"] == "UNAVAILABLE" and error["detail"]["upstream"] == upstream_registry.host


READERS = ["allow group readers to read repos in tenancy"]


async def test_credentials_flow_tier_by_tier(
    mirror_factory: MirrorFactory,
    auth_mirror_factory: AuthMirrorFactory,
    image_factory: ImageFactory,
    upstream_registry: Registry,
) -> None:
    # The regional mirror has auth on: nodes must log in with a user of its default tenancy.
    regional = await auth_mirror_factory({upstream_registry.host: upstream_registry.url})
    login, token = regional.user("nodes", "node-a", "readers", policy=READERS)
    origin = upstream_registry.host
    chained = {origin: regional.node_url}
    with_login = await mirror_factory(
        chained, upstream_options={"forward_ns": True, "username": login, "password": token}
    )
    anonymous = await mirror_factory(chained, upstream_options={"forward_ns": True})
    pushed = image_factory.push("v1", layers=1, layer_size=50_000)
    layer = pushed.image.blobs()[0]

    async with aiohttp.ClientSession() as http:
        path = f"/v2/{pushed.repo}/blobs/{layer.digest}?ns={origin}"
        async with http.get(with_login.url + path) as served:
            assert served.status == 200
            assert await served.read() == layer.read_bytes()
        async with http.get(anonymous.url + path) as refused:
            body = await refused.json()
    assert refused.status == 401, body
    assert body["errors"][0]["code"] == "UNAUTHORIZED"
    assert (
        regional.mirror.metric(
            "mirror_http_requests_total", route="/auth/token", method="GET", status="200"
        )
        + regional.mirror.metric(
            "mirror_http_requests_total", route="/auth/token", method="POST", status="200"
        )
        >= 1
    )
