"""The counting proxy: forwards and counts, answers 503 when down, flips a blob's bytes when
told to, and the seed pushes through the spec's push API."""

from __future__ import annotations

import asyncio
import random

import aiohttp

from mirror.check.http import fetch
from mirror.check.proxy import CountingProxy
from mirror.check.seed import seed
from mirror.oci.digest import Digest
from mirror.testing.registry import InProcessRegistry, RegistryContent


async def test_seed_forward_count_down_and_corrupt() -> None:
    content = RegistryContent()
    async with InProcessRegistry(content).serve() as origin, aiohttp.ClientSession() as http:
        image = await seed(http, origin, random.Random(1), layers=2, size=1000)
        assert content.tags[(image.repo, "v1")] == image.image.manifest_digest
        assert image.uncached_blob in content.blobs
        assert set(image.blobs) <= set(content.blobs)

        proxy = CountingProxy(origin, timeout=5)
        async with proxy.serve() as url:
            layer = image.layers[0]
            blob_url = f"{url}/v2/{image.repo}/blobs/{layer}"
            plain = await fetch(http, "GET", blob_url, seconds=5)
            assert plain.status == 200 and plain.body == image.blobs[layer]
            assert plain.header("Docker-Content-Digest") == layer
            assert proxy.count("GET", layer) == 1 and proxy.count("HEAD", layer) == 0

            proxy.mode.corrupt.add(layer)
            bad = await fetch(http, "GET", blob_url, seconds=5)
            assert bad.status == 200 and len(bad.body) == len(image.blobs[layer])
            assert str(Digest.of(bad.body)) != layer

            proxy.mode.down = True
            down = await fetch(http, "GET", blob_url, seconds=5)
            assert down.status == 503 and b"UNAVAILABLE" in down.body
            assert proxy.count("GET", layer) == 3

            proxy.reset()
            assert proxy.count("GET", layer) == 0 and not proxy.mode.down


async def test_fetch_never_raises_on_a_dead_port_or_a_timeout() -> None:
    async with InProcessRegistry().serve() as origin, aiohttp.ClientSession() as http:
        proxy = CountingProxy(origin, timeout=5)
        async with proxy.serve() as url:
            image = await seed(http, url, random.Random(2), layers=1, size=200_000)
            proxy.mode.slow = 1.0
            slow = await fetch(
                http, "GET", f"{url}/v2/{image.repo}/blobs/{image.layers[0]}", seconds=0.3
            )
            assert slow.status == 200 and slow.cut and slow.failure == "TimeoutError"
        refused = await fetch(http, "GET", url + "/v2/", seconds=1)
        assert refused.status is None and refused.failure


async def test_a_held_request_is_forwarded_only_when_its_gate_opens() -> None:
    async with InProcessRegistry().serve() as origin, aiohttp.ClientSession() as http:
        proxy = CountingProxy(origin, timeout=5)
        gate = asyncio.Event()
        held: list[tuple[str, str]] = []
        arrived = asyncio.Event()

        async def hold(method: str, path: str) -> None:
            held.append((method, path))
            arrived.set()
            await gate.wait()

        async with proxy.serve() as url:
            image = await seed(http, url, random.Random(3), layers=1, size=1000)
            proxy.mode.hold = hold
            layer = image.layers[0]
            pending = asyncio.ensure_future(
                fetch(http, "GET", f"{url}/v2/{image.repo}/blobs/{layer}", seconds=5)
            )
            await asyncio.wait_for(arrived.wait(), 5)
            assert not pending.done() and held == [("GET", f"/v2/{image.repo}/blobs/{layer}")]
            gate.set()
            answer = await pending
            assert answer.status == 200 and answer.body == image.blobs[layer]
