"""Chaining (docs/airgap.md): an upstream marked ``forward_ns`` is another mirror, so every
registry request names the registry with containerd's ``?ns=<host>``; the regional tier
answers an ``ns`` it is not configured for with a fast 404, never fetching anything."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from mirror.app.build import build_app
from mirror.clock import ManualClock
from mirror.config import load_config
from mirror.metrics import Metrics
from mirror.oci.media import OCI_MANIFEST
from mirror.testing.images import build_image, random_layer
from mirror.testing.loopback import serve_on_loopback
from mirror.testing.registry import InProcessRegistry
from mirror.upstream import UpstreamClient, UpstreamEndpoint

ORIGIN = "registry.origin.test:5000"
DIGEST = "sha256:" + "ab" * 32


@asynccontextmanager
async def recording_registry(seen: list[tuple[str, str, dict[str, str]]]) -> AsyncIterator[str]:
    """A registry answering every ``/v2/`` request with an empty 200 and recording
    (method, path, query) of each."""

    async def answer(request: web.Request) -> web.Response:
        seen.append((request.method, request.path, dict(request.query)))
        if request.path.endswith("/tags/list"):
            return web.json_response({"name": "team/app", "tags": []})
        headers = {"Docker-Content-Digest": DIGEST, "Content-Type": OCI_MANIFEST}
        return web.Response(body=b"{}", headers=headers)

    app = web.Application()
    app.router.add_route("*", "/v2/{tail:.*}", answer)
    async with serve_on_loopback(app) as url:
        yield url


async def test_every_registry_request_to_a_chained_mirror_carries_ns() -> None:
    seen: list[tuple[str, str, dict[str, str]]] = []
    async with recording_registry(seen) as url:
        endpoint = UpstreamEndpoint(host=ORIGIN, url=url, forward_ns=True)
        async with UpstreamClient(endpoint) as client:
            await client.head_manifest("team/app", "v1", [OCI_MANIFEST])
            await client.get_manifest("team/app", DIGEST, [OCI_MANIFEST])
            await client.head_blob("team/app", DIGEST)
            async with client.open_blob("team/app", DIGEST, 1) as blob:
                _ = [chunk async for chunk in blob.iter_chunks()]
            await client.get_tags("team/app", n=5, last="a")
            await client.get_referrers("team/app", DIGEST, artifact_type="x/sig")

    assert [(m, p.rsplit("/", 1)[-1], q) for m, p, q in seen] == [
        ("HEAD", "v1", {"ns": ORIGIN}),
        ("GET", DIGEST, {"ns": ORIGIN}),
        ("HEAD", DIGEST, {"ns": ORIGIN}),
        ("GET", DIGEST, {"ns": ORIGIN}),
        # The request's own parameters are kept beside ns.
        ("GET", "list", {"ns": ORIGIN, "n": "5", "last": "a"}),
        ("GET", DIGEST, {"ns": ORIGIN, "artifactType": "x/sig"}),
    ]


async def test_an_upstream_that_is_the_registry_itself_gets_no_ns() -> None:
    seen: list[tuple[str, str, dict[str, str]]] = []
    async with recording_registry(seen) as url:
        async with UpstreamClient(UpstreamEndpoint(host=ORIGIN, url=url)) as client:
            await client.get_manifest("team/app", "v1", [OCI_MANIFEST])
            await client.get_tags("team/app", n=5)
    assert [q for _, _, q in seen] == [{}, {"n": "5"}]


def mirror_app(
    data_dir: Path, upstreams: list[dict[str, Any]], metrics: Metrics
) -> web.Application:
    """A mirror over ``data_dir`` pulling through ``upstreams`` (the first is the default)."""
    config = load_config(
        overrides={
            "storage": {"data_dir": str(data_dir), "chunk_size": 64 * 1024},
            "encryption": {"kek_file": str(data_dir.with_name(data_dir.name + ".kek"))},
            "upstreams": upstreams,
            "default_upstream": upstreams[0]["host"],
        },
        environ={},
    )
    return build_app(config, clock=ManualClock(), metrics=metrics)


def upstream_calls(metrics: Metrics) -> float:
    """How many requests a mirror has sent to any upstream."""
    return sum(
        sample.value
        for family in metrics.registry.collect()
        if family.name == "mirror_upstream_requests"
        for sample in family.samples
        if sample.name.endswith("_total")
    )


async def test_a_node_local_mirror_pulls_through_a_regional_one_by_ns(tmp_path: Path) -> None:
    origin = InProcessRegistry()
    image = build_image(tmp_path / "layout", "v1", [random_layer(random.Random(3), 50_000)])
    origin.content.add_image("team/app", image)
    regional_metrics, node_metrics = Metrics(), Metrics()
    async with origin.serve() as origin_url:
        # The regional mirror's default upstream is elsewhere: only ns picks the origin.
        regional = mirror_app(
            tmp_path / "regional",
            [
                {"host": "other.test", "url": "http://127.0.0.1:9"},
                {"host": ORIGIN, "url": origin_url},
            ],
            regional_metrics,
        )
        async with serve_on_loopback(regional) as regional_url:
            node = mirror_app(
                tmp_path / "node",
                [{"host": ORIGIN, "url": regional_url, "forward_ns": True}],
                node_metrics,
            )
            async with serve_on_loopback(node) as node_url, aiohttp.ClientSession() as http:
                url = f"{node_url}/v2/team/app/manifests/v1?ns={ORIGIN}"
                async with http.get(url, headers={"Accept": OCI_MANIFEST}) as resp:
                    assert resp.status == 200
                    assert await resp.read() == image.manifest_bytes
                layer = image.layers[0]
                async with http.get(f"{node_url}/v2/team/app/blobs/{layer.digest}") as resp:
                    assert resp.status == 200
                    assert await resp.read() == layer.read_bytes()
    assert regional_metrics.registry.get_sample_value(
        "mirror_upstream_requests_total", {"upstream": ORIGIN, "method": "GET", "status": "200"}
    )
    assert not regional_metrics.registry.get_sample_value(
        "mirror_upstream_requests_total",
        {"upstream": "other.test", "method": "GET", "status": "200"},
    )


async def test_an_ns_the_regional_mirror_is_not_configured_for_is_a_fast_oci_404(
    tmp_path: Path,
) -> None:
    regional_metrics = Metrics()
    # The regional mirror knows one upstream; a node asks it for an internal host.
    regional = mirror_app(
        tmp_path / "regional",
        [{"host": "docker.io", "url": "http://127.0.0.1:9"}],
        regional_metrics,
    )
    async with serve_on_loopback(regional) as regional_url:
        node = mirror_app(
            tmp_path / "node",
            [{"host": "169.254.169.254", "url": regional_url, "forward_ns": True}],
            Metrics(),
        )
        async with serve_on_loopback(node) as node_url, aiohttp.ClientSession() as http:
            started = time.monotonic()
            async with http.get(f"{node_url}/v2/latest/manifests/meta-data") as resp:
                elapsed = time.monotonic() - started
                body = await resp.json()
            async with http.get(
                f"{regional_url}/v2/latest/manifests/meta-data?ns=169.254.169.254"
            ) as direct:
                direct_body = await direct.json()
    assert resp.status == 404 and body["errors"][0]["code"] == "NAME_UNKNOWN", body
    assert direct.status == 404
    assert direct_body["errors"][0] == {
        "code": "NAME_UNKNOWN",
        "message": "namespace not mirrored here",
        "detail": {"ns": "169.254.169.254"},
    }
    assert elapsed < 2.0
    assert upstream_calls(regional_metrics) == 0
