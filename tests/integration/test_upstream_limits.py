"""Per-upstream limits against a real ``docker-registry``, measured at a counting proxy on the
upstream's side: the connection cap holds, and a tag HEAD is not queued behind blob fills."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from mirror.check.proxy import CountingProxy
from mirror.oci.media import OCI_MANIFEST
from tests.peers.factory import ImageFactory
from tests.peers.registry import Registry

from .conftest import MirrorFactory

pytestmark = pytest.mark.integration

LAYERS = 6
LAYER_SIZE = 1024 * 1024


async def test_six_cold_blob_pulls_stay_under_two_connections_and_a_tag_head_goes_first(
    mirror_factory: MirrorFactory, upstream_registry: Registry, image_factory: ImageFactory
) -> None:
    pushed = image_factory.push("v1", layers=LAYERS, layer_size=LAYER_SIZE)
    proxy = CountingProxy(upstream_registry.url)
    async with proxy.serve() as proxy_url:
        proxy.mode.slow = 0.01  # 64 KiB chunks: each fill lasts ~0.2 s at the upstream
        mirror = await mirror_factory(
            {upstream_registry.host: proxy_url},
            upstream_options={"max_connections": 2},
            tag_ttl=0,  # every tag HEAD asks the upstream
        )
        base = f"{mirror.url}/v2/{pushed.repo}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/manifests/v1", headers={"Accept": OCI_MANIFEST}) as got:
                assert got.status == 200  # the mirror serves blobs of manifests it has seen
                manifest_digest = got.headers["Docker-Content-Digest"]
                layers = [(d["digest"], d["size"]) for d in json.loads(await got.read())["layers"]]

            async def pull(digest: str) -> bytes:
                async with http.get(f"{base}/blobs/{digest}") as resp:
                    assert resp.status == 200
                    return await resp.read()

            fills = [asyncio.ensure_future(pull(digest)) for digest, _ in layers]
            for _ in range(1000):  # until the fills have reached the upstream
                if proxy.count("GET", "/blobs/"):
                    break
                await asyncio.sleep(0.01)
            async with http.head(f"{base}/manifests/v1", headers={"Accept": OCI_MANIFEST}) as head:
                assert head.status == 200
                assert head.headers["Docker-Content-Digest"] == manifest_digest
            still_filling = sum(not fill.done() for fill in fills)
            heads = proxy.count("HEAD", "/manifests/v1")
            bodies = await asyncio.gather(*fills)

    assert heads == 1, "the tag HEAD was answered without asking the upstream"
    assert still_filling > 0, "the tag HEAD waited for every blob fill"
    assert [len(b) for b in bodies] == [size for _, size in layers]
    assert proxy.count("GET", "/blobs/") == LAYERS
    assert proxy.peak_connections <= 2
    assert proxy.peak_in_flight <= 2
    waits = mirror.metric(
        "mirror_upstream_limit_waits_total",
        upstream=upstream_registry.host,
        lane="blob",
        limit="connections",
    )
    assert waits >= LAYERS - 1  # one blob lane slot: every other fill waited its turn
