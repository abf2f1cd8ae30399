"""Pre-warming (issue 12): ``mirror prewarm`` (the CLI, through the admin API) fetches 20
images from the real upstream (docker-registry) with concurrency 4; every blob is fetched from
the upstream exactly once, though images share a layer, and then pulls are warm."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mirror.app.build import build_app
from mirror.clock import ManualClock
from mirror.config import load_config
from mirror.metrics import Metrics
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


async def test_scheduled_prewarm_list_warms_at_start_and_refreshes_tags_each_interval(
    aiohttp_server: Any, upstream_registry: Registry, rng: random.Random, tmp_path: Path
) -> None:
    first = push_image(
        upstream_registry, tmp_path, "test/pw-sched", "v1", [random_layer(rng, 5_000)]
    )
    waits: list[float] = []
    tick = asyncio.Event()

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await tick.wait()
        tick.clear()

    config = load_config(
        overrides={
            "storage": {"data_dir": str(tmp_path / "sched")},
            "encryption": {"kek_file": str(tmp_path / "sched.kek")},
            "upstreams": [{"host": upstream_registry.host, "url": upstream_registry.url}],
            "default_upstream": upstream_registry.host,
            "cache": {"tag_ttl": 0},
            "prewarm": {"images": [f"{upstream_registry.host}/test/pw-sched:v1"], "interval": 600},
        },
        environ={},
    )
    app = build_app(config, clock=ManualClock(), metrics=Metrics(), sleep=sleep)
    server = await aiohttp_server(app, host="127.0.0.1")
    for blob in first.blobs():  # the run at start-up
        assert await upstream_registry.wait_for_requests("GET", blob.digest) == 1
    # (The audit log's pruning waits through the same sleep, its own interval.)
    await _until(lambda: waits.count(600) == 1)

    moved = push_image(
        upstream_registry, tmp_path, "test/pw-sched", "v1", [random_layer(rng, 5_000)]
    )
    tick.set()  # the interval passed: the tag is revalidated and its new content fetched
    for blob in moved.blobs():
        assert await upstream_registry.wait_for_requests("GET", blob.digest) == 1
    await _until(lambda: waits.count(600) == 2)
    await server.close()  # the task's lifetime ends with the app's
    for blob in first.blobs():
        assert upstream_registry.count_requests("GET", blob.digest) == 1


async def _until(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)
