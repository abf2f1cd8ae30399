"""The in-process registry answers the distribution-spec pull and push endpoints from memory."""

from __future__ import annotations

import json
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from mirror.oci.digest import Digest
from mirror.oci.media import OCI_INDEX, OCI_MANIFEST
from mirror.testing.images import build_image, build_index, random_layer
from mirror.testing.registry import InProcessRegistry, RegistryContent

Client = TestClient[Any, Any]
MakeClient = Callable[[Any], Awaitable[Client]]


@pytest.fixture
def registry() -> InProcessRegistry:
    return InProcessRegistry()


@pytest.fixture
async def client(registry: InProcessRegistry, aiohttp_client: MakeClient) -> Client:
    return await aiohttp_client(registry.app())


async def test_a_seeded_image_is_served_by_tag_and_by_digest(
    registry: InProcessRegistry, client: Client, tmp_path: Path
) -> None:
    image = build_image(tmp_path, "v1", [random_layer(random.Random(1), 1000)])
    assert registry.content.add_image("team/app", image) == image.manifest_digest

    for reference in ("v1", image.manifest_digest):
        resp = await client.get(f"/v2/team/app/manifests/{reference}")
        assert resp.status == 200
        assert resp.headers["Content-Type"] == OCI_MANIFEST
        assert resp.headers["Docker-Content-Digest"] == image.manifest_digest
        assert await resp.read() == image.manifest_bytes
    head = await client.head("/v2/team/app/manifests/v1")
    assert head.headers["Content-Length"] == str(len(image.manifest_bytes))
    for blob in image.blobs():
        resp = await client.get(f"/v2/team/app/blobs/{blob.digest}")
        assert resp.status == 200 and await resp.read() == blob.read_bytes()
    layer = image.layers[0]
    ranged = await client.get(f"/v2/team/app/blobs/{layer.digest}", headers={"Range": "bytes=10-"})
    assert ranged.status == 206 and await ranged.read() == layer.read_bytes()[10:]
    assert ranged.headers["Content-Range"] == f"bytes 10-{layer.size - 1}/{layer.size}"


async def test_a_closed_range_is_answered_with_exactly_those_bytes(
    registry: InProcessRegistry, client: Client
) -> None:
    data = random.Random(2).randbytes(1000)
    digest = registry.content.add_blob(data)
    ranged = await client.get(f"/v2/team/app/blobs/{digest}", headers={"Range": "bytes=100-199"})
    assert ranged.status == 206 and await ranged.read() == data[100:200]
    assert ranged.headers["Content-Range"] == "bytes 100-199/1000"
    beyond = await client.get(f"/v2/team/app/blobs/{digest}", headers={"Range": "bytes=1000-"})
    assert beyond.status == 416
    assert (await beyond.json())["errors"][0]["code"] == "RANGE_INVALID"


async def test_an_index_is_seeded_with_every_child(
    registry: InProcessRegistry, client: Client, tmp_path: Path
) -> None:
    index = build_index(
        tmp_path, "multi", [("linux", "amd64"), ("linux", "arm64")], rng=random.Random(2)
    )
    registry.content.add_image("team/multi", index)
    resp = await client.get("/v2/team/multi/manifests/multi")
    assert resp.headers["Content-Type"] == OCI_INDEX
    for child in index.images:
        resp = await client.get(f"/v2/team/multi/manifests/{child.manifest_digest}")
        assert await resp.read() == child.manifest_bytes


async def test_tags_list_names_the_repository_tags_sorted(
    registry: InProcessRegistry, client: Client
) -> None:
    for tag in ("v2", "latest", "v1"):
        registry.content.add_manifest("team/app", b"{}", OCI_MANIFEST, tag)
    registry.content.add_manifest("team/other", b"{}", OCI_MANIFEST, "x")
    resp = await client.get("/v2/team/app/tags/list")
    assert await resp.json() == {"name": "team/app", "tags": ["latest", "v1", "v2"]}
    assert (await client.get("/v2/team/none/tags/list")).status == 404


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/v2/team/app/manifests/v9", "MANIFEST_UNKNOWN"),
        (f"/v2/team/app/blobs/{Digest.of(b'none')}", "BLOB_UNKNOWN"),
    ],
    ids=["manifest", "blob"],
)
async def test_unknown_content_is_a_spec_error(client: Client, path: str, code: str) -> None:
    resp = await client.get(path)
    assert resp.status == 404
    assert (await resp.json())["errors"][0]["code"] == code


async def test_push_monolithic_and_chunked_blobs_then_a_manifest(
    registry: InProcessRegistry, client: Client
) -> None:
    small, big = b"config", b"0123456789" * 100
    done = await client.post(f"/v2/team/app/blobs/uploads/?digest={Digest.of(small)}", data=small)
    assert done.status == 201

    started = await client.post("/v2/team/app/blobs/uploads/")
    assert started.status == 202
    location = started.headers["Location"]
    patched = await client.patch(location, data=big[:600])
    assert patched.status == 202 and patched.headers["Range"] == "0-599"
    finished = await client.put(f"{location}?digest={Digest.of(big)}", data=big[600:])
    assert finished.status == 201
    assert registry.content.blobs[str(Digest.of(big))] == big

    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST}).encode()
    put = await client.put(
        "/v2/team/app/manifests/v1", data=manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    assert put.status == 201
    assert put.headers["Docker-Content-Digest"] == str(Digest.of(manifest))
    assert await (await client.get("/v2/team/app/manifests/v1")).read() == manifest


async def test_a_push_whose_bytes_do_not_match_the_digest_is_refused(
    registry: InProcessRegistry, client: Client
) -> None:
    blob = await client.post(f"/v2/team/app/blobs/uploads/?digest={Digest.of(b'a')}", data=b"b")
    assert blob.status == 400 and (await blob.json())["errors"][0]["code"] == "DIGEST_INVALID"
    manifest = await client.put(f"/v2/team/app/manifests/{Digest.of(b'a')}", data=b"b")
    assert manifest.status == 400
    assert registry.content.blobs == {} and registry.content.manifests == {}


async def test_serve_listens_on_loopback_until_the_context_ends() -> None:
    content = RegistryContent()
    digest = content.add_blob(b"hello")
    async with InProcessRegistry(content).serve() as url:
        assert url.startswith("http://127.0.0.1:")
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/v2/x/blobs/{digest}") as resp:
                assert await resp.read() == b"hello"
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientConnectionError):
            await http.get(f"{url}/v2/")
