"""``mirror demo``: an offline tour. Start a local origin registry on loopback, seed an image
made here, put the mirror in front of it, pull through it twice, and show cold vs warm."""

from __future__ import annotations

import asyncio
import json
import random
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from mirror.app.build import build_app
from mirror.config import load_config
from mirror.metrics import Metrics
from mirror.oci.media import MANIFEST_TYPES
from tests.peers.factory import ImageFactory
from tests.peers.ports import free_port
from tests.peers.registry import Registry

REPO = "demo/app"


async def _pull(http: aiohttp.ClientSession, base: str, repo: str, tag: str) -> int:
    """Pull an image the way a client does: manifest by tag, then every blob. Returns bytes."""
    async with http.get(
        f"{base}/v2/{repo}/manifests/{tag}", headers={"Accept": ", ".join(MANIFEST_TYPES)}
    ) as resp:
        resp.raise_for_status()
        manifest = json.loads(await resp.read())
    total = 0
    for descriptor in [manifest["config"], *manifest["layers"]]:
        async with http.get(f"{base}/v2/{repo}/blobs/{descriptor['digest']}") as resp:
            resp.raise_for_status()
            async for chunk in resp.content.iter_chunked(1 << 20):
                total += len(chunk)
    return total


async def run_demo(work_dir: Path | None) -> int:
    """Run the demo; returns the process exit code."""
    with tempfile.TemporaryDirectory(prefix="mirror-demo-") as scratch:
        base = work_dir or Path(scratch)
        base.mkdir(parents=True, exist_ok=True)
        async with Registry(base / "origin") as origin:
            print(f"origin registry (docker-registry) on {origin.url}")
            factory = ImageFactory(origin, base / "layout", random.Random(2026), REPO)
            pushed = await _seed(factory)
            print(f"seeded {REPO}:v1 with {len(pushed)} layers ({sum(pushed) / 1e6:.1f} MB)")
            port = free_port()
            config = load_config(
                overrides={
                    "server": {"listen": f"127.0.0.1:{port}"},
                    "storage": {"data_dir": str(base / "mirror-data")},
                    "encryption": {"kek_file": str(base / "mirror.kek")},
                    "upstreams": [{"host": origin.host, "url": origin.url}],
                    "default_upstream": origin.host,
                },
                environ={},
            )
            metrics = Metrics()
            runner = web.AppRunner(build_app(config, metrics=metrics), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            print(f"mirror on http://127.0.0.1:{port}, cache in {config.storage.data_dir}")
            try:
                async with aiohttp.ClientSession() as http:
                    for label in ("cold", "warm"):
                        started = time.perf_counter()
                        size = await _pull(http, f"http://127.0.0.1:{port}", REPO, "v1")
                        elapsed = time.perf_counter() - started
                        print(
                            f"{label} pull: {size / 1e6:.1f} MB in {elapsed * 1000:.0f} ms "
                            f"({size / elapsed / 1e6:.0f} MB/s)"
                        )
            finally:
                await runner.cleanup()
            hits = metrics.registry.get_sample_value("mirror_cache_hits_total", {"kind": "blob"})
            fetched = metrics.registry.get_sample_value("mirror_bytes_fetched_upstream_total")
            print(
                f"blob cache hits: {hits:.0f}; bytes fetched upstream: {fetched:.0f} "
                "(each blob once)"
            )
    return 0


async def _seed(factory: ImageFactory) -> list[int]:
    """Push a small image and return its layer sizes."""
    pushed = await asyncio.to_thread(factory.push, "v1", layers=4, layer_size=4 * 1024 * 1024)
    return [layer.size for layer in pushed.image.layers]
