"""``mirror demo``: an offline tour. Start an in-process origin registry on loopback, seed an
image made here, put the mirror in front of it, pull through it twice, and show cold vs warm."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from mirror.app.loopback import mirror_on_loopback
from mirror.metrics import Metrics
from mirror.oci.media import MANIFEST_TYPES
from mirror.testing.images import build_image, random_layer
from mirror.testing.registry import InProcessRegistry, RegistryContent

REPO = "demo/app"
LAYERS = 4
LAYER_SIZE = 4 * 1024 * 1024


def add(commands: Any) -> None:
    """Add ``demo`` and its flags to the ``mirror`` command's subparsers."""
    demo = commands.add_parser("demo", help="pull through the mirror from a local origin, twice")
    demo.add_argument("--work-dir", type=Path, help="keep files here (default: a temp dir)")


def run(args: argparse.Namespace) -> int:
    """Run ``mirror demo``; returns the exit status."""
    return asyncio.run(run_demo(args.work_dir))


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
        content = RegistryContent()
        async with InProcessRegistry(content).serve() as origin_url:
            origin_host = origin_url.removeprefix("http://")
            print(f"origin registry (in-process) on {origin_url}")
            sizes = await asyncio.to_thread(_seed, content, base / "layout")
            print(f"seeded {REPO}:v1 with {len(sizes)} layers ({sum(sizes) / 1e6:.1f} MB)")
            metrics = Metrics()
            async with mirror_on_loopback(base, origin_host, origin_url, metrics) as url:
                print(f"mirror on {url}, cache in {base / 'mirror-data'}")
                async with aiohttp.ClientSession() as http:
                    for label in ("cold", "warm"):
                        started = time.perf_counter()
                        size = await _pull(http, url, REPO, "v1")
                        elapsed = time.perf_counter() - started
                        print(
                            f"{label} pull: {size / 1e6:.1f} MB in {elapsed * 1000:.0f} ms "
                            f"({size / elapsed / 1e6:.0f} MB/s)"
                        )
            hits = metrics.registry.get_sample_value("mirror_cache_hits_total", {"kind": "blob"})
            fetched = metrics.registry.get_sample_value("mirror_bytes_fetched_upstream_total")
            print(
                f"blob cache hits: {hits:.0f}; bytes fetched upstream: {fetched:.0f} "
                "(each blob once)"
            )
    return 0


def _seed(content: RegistryContent, layout_dir: Path) -> list[int]:
    """Build a small image of random layers, seed the origin with it as ``REPO:v1`` and
    return its layer sizes."""
    rng = random.Random(2026)
    layers = [random_layer(rng, LAYER_SIZE) for _ in range(LAYERS)]
    image = build_image(layout_dir, "v1", layers)
    content.add_image(REPO, image)
    return [layer.size for layer in image.layers]
