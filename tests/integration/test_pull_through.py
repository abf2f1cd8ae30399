"""Pulling through the mirror from a real upstream (CNCF distribution) with real clients."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest

from mirror.oci.digest import Digest
from mirror.oci.media import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST
from tests.peers.factory import ImageFactory
from tests.peers.registry import Registry
from tests.peers.skopeo import skopeo_copy_async

from .conftest import Mirror

pytestmark = pytest.mark.integration

ALL_MANIFEST_TYPES = ", ".join(
    [
        DOCKER_MANIFEST,
        "application/vnd.docker.distribution.manifest.list.v2+json",
        OCI_MANIFEST,
        OCI_INDEX,
    ]
)


async def skopeo_pull(mirror: Mirror, ref: str, out: Path, *options: str) -> None:
    await skopeo_copy_async(
        f"docker://{mirror.host}/{ref}", f"dir:{out}", "--src-tls-verify=false", *options
    )


async def test_skopeo_copy_cold_then_warm(
    mirror: Mirror, image_factory: ImageFactory, upstream_registry: Registry, tmp_path: Path
) -> None:
    pushed = image_factory.push("v1", layers=3, layer_size=300_000)
    await skopeo_pull(mirror, f"{pushed.repo}:v1", tmp_path / "cold")
    for layer in pushed.image.layers:
        assert (tmp_path / "cold" / layer.digest.split(":")[1]).read_bytes() == layer.read_bytes()
    for blob in pushed.image.blobs():
        assert await upstream_registry.wait_for_requests("GET", blob.digest) == 1

    await skopeo_pull(mirror, f"{pushed.repo}:v1", tmp_path / "warm")
    for blob in pushed.image.blobs():
        assert upstream_registry.count_requests("GET", blob.digest) == 1, "warm pull hit upstream"
        assert (tmp_path / "warm" / blob.digest.split(":")[1]).read_bytes() == blob.read_bytes()
    assert mirror.metric("mirror_cache_hits_total", kind="blob") == len(pushed.image.blobs())


async def test_skopeo_copy_all_platforms_of_an_index(
    mirror: Mirror, image_factory: ImageFactory, tmp_path: Path
) -> None:
    pushed = image_factory.push_index("multi")
    await skopeo_pull(mirror, f"{pushed.repo}:multi", tmp_path / "out", "--all")
    assert (tmp_path / "out" / "manifest.json").read_bytes() == pushed.index.index_bytes
    for image in pushed.index.images:
        for layer in image.layers:
            assert (
                tmp_path / "out" / layer.digest.split(":")[1]
            ).read_bytes() == layer.read_bytes()
    # The index and every child manifest are cached by digest.
    for digest in (pushed.index.index_digest, *(i.manifest_digest for i in pushed.index.images)):
        assert mirror.services.metadata.manifest(Digest.parse(digest)) is not None


async def test_docker_schema2_media_types_pass_unchanged(
    mirror: Mirror, image_factory: ImageFactory, tmp_path: Path
) -> None:
    pushed = image_factory.push("v2s2", docker_v2s2=True)
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{mirror.url}/v2/{pushed.repo}/manifests/v2s2", headers={"Accept": ALL_MANIFEST_TYPES}
        ) as resp:
            body = await resp.read()
            assert resp.status == 200
            assert resp.headers["Content-Type"] == DOCKER_MANIFEST
            assert json.loads(body)["mediaType"] == DOCKER_MANIFEST
    await skopeo_pull(mirror, f"{pushed.repo}:v2s2", tmp_path / "out")
    assert (tmp_path / "out" / "manifest.json").read_bytes() == body


async def test_manifest_headers_by_tag_and_digest(
    mirror: Mirror, image_factory: ImageFactory
) -> None:
    pushed = image_factory.push("v1")
    digest = pushed.image.manifest_digest
    expected = pushed.image.manifest_bytes
    async with aiohttp.ClientSession() as http:
        for reference in ("v1", digest):
            url = f"{mirror.url}/v2/{pushed.repo}/manifests/{reference}"
            for method in ("HEAD", "GET"):
                async with http.request(
                    method, url, headers={"Accept": ALL_MANIFEST_TYPES}
                ) as resp:
                    assert resp.status == 200
                    assert resp.headers["Docker-Content-Digest"] == digest
                    assert resp.headers["Content-Type"] == OCI_MANIFEST
                    assert resp.headers["Content-Length"] == str(len(expected))
                    assert resp.headers["Docker-Distribution-API-Version"] == "registry/2.0"
                    if method == "GET":
                        assert await resp.read() == expected


async def test_manifest_not_acceptable_is_manifest_unknown(
    mirror: Mirror, image_factory: ImageFactory
) -> None:
    pushed = image_factory.push("v1")
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{mirror.url}/v2/{pushed.repo}/manifests/v1", headers={"Accept": DOCKER_MANIFEST}
        ) as resp:
            assert resp.status == 404
            assert (await resp.json())["errors"][0]["code"] == "MANIFEST_UNKNOWN"


async def test_an_oci_index_to_a_client_without_index_support_is_manifest_unknown(
    mirror: Mirror, image_factory: ImageFactory
) -> None:
    # As distribution does: an OCI index is never converted (a Docker manifest list is, to its
    # linux/amd64 image: tests/integration/test_conformance_items.py).
    pushed = image_factory.push_index("multi")
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{mirror.url}/v2/{pushed.repo}/manifests/multi", headers={"Accept": OCI_MANIFEST}
        ) as resp:
            assert resp.status == 404
            assert (await resp.json())["errors"][0]["code"] == "MANIFEST_UNKNOWN"


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
@pytest.mark.parametrize(
    ("range_header", "status", "window"),
    [
        ("bytes=0-0", 206, (0, 0)),
        ("bytes=100-", 206, (100, None)),
        ("bytes=-10", 206, (-10, None)),
        ("bytes=5-99999999", 206, (5, None)),
        (None, 200, (0, None)),
    ],
    ids=["first-byte", "from-offset", "suffix", "past-end-clipped", "no-range"],
)
async def test_blob_ranges(
    mirror: Mirror,
    image_factory: ImageFactory,
    warm: bool,
    range_header: str | None,
    status: int,
    window: tuple[int, int | None],
) -> None:
    pushed = image_factory.push("v1", layers=1, layer_size=50_000)
    layer = pushed.image.layers[0]
    data = layer.read_bytes()
    url = f"{mirror.url}/v2/{pushed.repo}/blobs/{layer.digest}"
    async with aiohttp.ClientSession() as http:
        if warm:
            async with http.get(url) as resp:
                assert await resp.read() == data
        headers = {"Range": range_header} if range_header else {}
        async with http.get(url, headers=headers) as resp:
            body = await resp.read()
            assert resp.status == status
            assert resp.headers["Accept-Ranges"] == "bytes"
            assert resp.headers["Docker-Content-Digest"] == layer.digest
            first, last = window
            expected = data[first:] if last is None else data[first : last + 1]
            assert body == expected
            assert resp.headers["Content-Length"] == str(len(expected))
            if status == 206:
                start = first if first >= 0 else len(data) + first
                assert (
                    resp.headers["Content-Range"]
                    == f"bytes {start}-{start + len(expected) - 1}/{len(data)}"
                )


@pytest.mark.parametrize("header", ["bytes=0-1,5-9", "items=0-9"], ids=["multi", "other-unit"])
async def test_a_range_the_mirror_does_not_serve_gets_the_whole_blob(
    mirror: Mirror, image_factory: ImageFactory, header: str
) -> None:
    # RFC 9110 §14.2: a server may ignore such a Range and answer 200 with everything.
    pushed = image_factory.push("v1", layers=1, layer_size=1000)
    layer = pushed.image.layers[0]
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{mirror.url}/v2/{pushed.repo}/blobs/{layer.digest}", headers={"Range": header}
        ) as resp:
            assert resp.status == 200
            assert await resp.read() == layer.read_bytes()


async def test_unsatisfiable_range_is_416(mirror: Mirror, image_factory: ImageFactory) -> None:
    pushed = image_factory.push("v1", layers=1, layer_size=1000)
    layer = pushed.image.layers[0]
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{mirror.url}/v2/{pushed.repo}/blobs/{layer.digest}",
            headers={"Range": f"bytes={layer.size}-"},
        ) as resp:
            assert resp.status == 416
            assert resp.headers["Content-Range"] == f"bytes */{layer.size}"
            assert (await resp.json())["errors"][0]["code"] == "RANGE_INVALID"


async def test_blob_head_cold_does_not_download(
    mirror: Mirror, image_factory: ImageFactory, upstream_registry: Registry
) -> None:
    pushed = image_factory.push("v1", layers=1, layer_size=20_000)
    layer = pushed.image.layers[0]
    heads_by_push = upstream_registry.count_requests("HEAD", layer.digest)
    async with aiohttp.ClientSession() as http:
        async with http.head(f"{mirror.url}/v2/{pushed.repo}/blobs/{layer.digest}") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Length"] == str(layer.size)
            assert resp.headers["Docker-Content-Digest"] == layer.digest
    assert (
        await upstream_registry.wait_for_requests("HEAD", layer.digest, heads_by_push + 1)
        == heads_by_push + 1
    )
    assert upstream_registry.count_requests("GET", layer.digest) == 0
    assert mirror.cached_blob_files() == []


async def test_tags_list_and_catalog(mirror: Mirror, image_factory: ImageFactory) -> None:
    for tag in ("a", "b", "c"):
        pushed = image_factory.push(tag, layers=1)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{mirror.url}/v2/{pushed.repo}/tags/list") as resp:
            assert resp.status == 200
            assert await resp.json() == {"name": pushed.repo, "tags": ["a", "b", "c"]}
        async with http.get(f"{mirror.url}/v2/{pushed.repo}/tags/list?n=2") as resp:
            assert (await resp.json())["tags"] == ["a", "b"]
            assert f"/v2/{pushed.repo}/tags/list" in resp.headers["Link"]
        async with http.get(f"{mirror.url}/v2/{pushed.repo}/tags/list?n=2&last=b") as resp:
            assert (await resp.json())["tags"] == ["c"]
        async with http.get(f"{mirror.url}/v2/{pushed.repo}/manifests/a") as resp:
            assert resp.status == 200
        async with http.get(f"{mirror.url}/v2/_catalog") as resp:
            assert pushed.repo in (await resp.json())["repositories"]


async def test_referrers_without_upstream_api_is_an_empty_index(
    mirror: Mirror, image_factory: ImageFactory
) -> None:
    # distribution 2.8 has no referrers API and answers 404: the mirror answers as the spec
    # wants a registry to, 200 with an (empty) index (tests/integration/test_conformance_items).
    pushed = image_factory.push("v1")
    async with aiohttp.ClientSession() as http:
        url = f"{mirror.url}/v2/{pushed.repo}/referrers/{pushed.image.manifest_digest}"
        async with http.get(url) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == OCI_INDEX
            assert (await resp.json(content_type=None))["manifests"] == []


async def test_the_data_directory_is_owner_only(mirror: Mirror) -> None:
    assert mirror.data_dir.stat().st_mode & 0o077 == 0


async def test_version_check_health_and_metrics(mirror: Mirror) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{mirror.url}/v2/") as resp:
            assert resp.status == 200
            assert resp.headers["Docker-Distribution-API-Version"] == "registry/2.0"
        for path in ("/healthz", "/readyz"):
            async with http.get(f"{mirror.url}{path}") as resp:
                assert resp.status == 200
        async with http.get(f"{mirror.url}/metrics") as resp:
            text = await resp.text()
            assert "mirror_http_requests_total" in text
