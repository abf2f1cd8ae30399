"""containerd pulling through the mirror with a ``hosts.toml``: the node-local deployment.

containerd resolves the tag with ``HEAD manifests/<tag>?ns=<registry host>`` and fetches
everything else by digest; on any mirror error it silently falls back to the origin, so these
tests check that the mirror, not the origin, served the content.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.peers.containerd import Containerd, write_hosts_toml
from tests.peers.factory import ImageFactory
from tests.peers.registry import Registry

from .conftest import Mirror

pytestmark = pytest.mark.integration


async def test_ctr_pulls_through_the_mirror_with_ns(
    mirror: Mirror,
    image_factory: ImageFactory,
    upstream_registry: Registry,
    containerd: Containerd,
    hosts_dir: Path,
) -> None:
    pushed = image_factory.push("v1", layers=3, layer_size=100_000)
    write_hosts_toml(hosts_dir, upstream_registry.host, upstream_registry.url, mirror.url)

    done = await containerd.pull_async(pushed.ref, hosts_dir)
    assert done.returncode == 0, done.stderr

    blobs = pushed.image.blobs()
    assert {b.digest for b in blobs} | {
        pushed.image.manifest_digest
    } <= containerd.content_digests()
    # The mirror, not the origin, served every blob: each was fetched upstream by the mirror
    # (user agent oci-mirror) exactly once, and never by containerd itself.
    for blob in blobs:
        await upstream_registry.wait_for_requests("GET", blob.digest)
        fetchers = [
            e.user_agent
            for e in upstream_registry.requests()
            if e.method == "GET" and blob.digest in e.path
        ]
        assert len(fetchers) == 1 and fetchers[0].startswith("oci-mirror/"), fetchers
    ns = upstream_registry.host
    assert (
        mirror.metric(
            "mirror_http_requests_total",
            route="/v2/{name}/manifests/{reference}",
            method="HEAD",
            status="200",
        )
        >= 1
    )
    assert mirror.metric("mirror_fills_committed_total") == len(blobs)
    assert mirror.services.metadata.tag(ns, pushed.repo, "v1") is not None


async def test_a_second_node_pulls_warm(
    mirror: Mirror,
    image_factory: ImageFactory,
    upstream_registry: Registry,
    containerd: Containerd,
    hosts_dir: Path,
    tmp_path: Path,
) -> None:
    pushed = image_factory.push("v1", layers=2, layer_size=100_000)
    write_hosts_toml(hosts_dir, upstream_registry.host, upstream_registry.url, mirror.url)
    assert (await containerd.pull_async(pushed.ref, hosts_dir)).returncode == 0

    # A second containerd with an empty content store pulls again: all warm from the mirror.
    async with Containerd(tmp_path / "second") as fresh:
        done = await fresh.pull_async(pushed.ref, hosts_dir)
        assert done.returncode == 0, done.stderr
        assert {b.digest for b in pushed.image.blobs()} <= fresh.content_digests()
    for blob in pushed.image.blobs():
        assert upstream_registry.count_requests("GET", blob.digest) == 1
    assert mirror.metric("mirror_cache_hits_total", kind="blob") == len(pushed.image.blobs())
