"""Pre-warming (issue 12): ``mirror prewarm`` (the CLI, through the admin API) fetches 20
images from the real upstream (docker-registry) with concurrency 4; every blob is fetched from
the upstream exactly once, though images share a layer, and then pulls are warm."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
from pathlib import Path

import aiohttp
import pytest

from mirror.testing.images import random_layer
from tests.peers.factory import ImageFactory
from tests.peers.registry import Registry

from .conftest import Mirror
from .retention_helpers import assert_pulled, push_image, skopeo_pull

pytestmark = pytest.mark.integration


async def prewarm_cli(mirror: Mirror, *args: str, stdin: bytes = b"") -> tuple[int, str, str]:
    """Run ``mirror prewarm --url <mirror>`` in a subprocess: (status, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mirror",
        "prewarm",
        "--url",
        mirror.url,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "MIRROR_TOKEN": ""},
    )
    out, err = await process.communicate(stdin)
    return process.returncode or 0, out.decode(), err.decode()


async def test_prewarm_of_20_images_fetches_each_blob_once_then_pulls_are_warm(
    mirror: Mirror,
    upstream_registry: Registry,
    image_factory: ImageFactory,
    rng: random.Random,
    tmp_path: Path,
) -> None:
    shared = random_layer(rng, 40_000)
    images = [
        push_image(
            upstream_registry, tmp_path, f"test/pw-{i}", "v1", [shared, random_layer(rng, 20_000)]
        )
        for i in range(19)
    ]
    multi = image_factory.push_index("multi", repo="test/pw-multi")
    listing = tmp_path / "images.txt"
    listing.write_text(
        "\n".join(f"{upstream_registry.host}/test/pw-{i}:v1" for i in range(10)) + "\n"
    )
    helm = "".join(
        f"      - name: c{i}\n        image: {upstream_registry.host}/test/pw-{i}:v1\n"
        for i in range(10, 19)
    )
    status, out, err = await prewarm_cli(
        mirror,
        "--concurrency",
        "4",
        "-f",
        str(listing),
        f"{upstream_registry.host}/test/pw-multi:multi",
        "-",
        stdin=helm.encode(),
    )
    assert status == 0, out + err
    assert "20 of 20 images warm" in out
    assert "prewarm: 20/20 images" in err  # the progress lines (stderr is not a terminal)

    blobs = {b.digest for image in images for b in image.blobs()}
    blobs |= {b.digest for image in multi.index.images for b in image.blobs()}
    for digest in blobs:
        assert await upstream_registry.wait_for_requests("GET", digest) == 1, digest
    for image in multi.index.images:  # every platform of the index
        assert upstream_registry.count_requests("GET", image.manifest_digest) == 1

    await skopeo_pull(mirror, "test/pw-7:v1", tmp_path / "pulled")
    assert_pulled(tmp_path / "pulled", images[7])
    for digest in blobs:
        assert upstream_registry.count_requests("GET", digest) == 1, "pull after pre-warm was cold"


async def test_admin_api_prewarm_reports_per_image_and_refuses_bad_references(
    mirror: Mirror, upstream_registry: Registry, rng: random.Random, tmp_path: Path
) -> None:
    image = push_image(upstream_registry, tmp_path, "test/pw-api", "v1", [random_layer(rng, 9_000)])
    good = f"{upstream_registry.host}/test/pw-api:v1"
    missing = f"{upstream_registry.host}/test/pw-api:absent"
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{mirror.url}/admin/v1/prewarm", json={"images": [good, missing]}
        ) as resp:
            assert resp.status == 200
            report = await resp.json()
        async with http.post(
            f"{mirror.url}/admin/v1/prewarm", json={"images": ["Bad/Ref"]}
        ) as resp:
            assert resp.status == 400
            assert (await resp.json())["errors"][0]["code"] == "REQUEST_INVALID"
    ok, failed = report["results"]
    assert (ok["ok"], ok["digest"], ok["blobs"], ok["blobs_fetched"]) == (
        True,
        image.manifest_digest,
        2,
        2,
    )
    assert ok["bytes_fetched"] == sum(b.size for b in image.blobs())
    assert not failed["ok"] and failed["error"]
    assert (report["images"], report["failed"]) == (2, 1)
    assert json.dumps(report)
