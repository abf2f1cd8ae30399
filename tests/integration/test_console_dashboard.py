"""The cache dashboard's figures move with real traffic: pulls through the mirror from an
in-process upstream (and a dead one), checked against the mirror's own metrics."""

from __future__ import annotations

import asyncio
import json
import os
import re

import aiohttp

from mirror.console.render import human_size
from mirror.oci.media import OCI_MANIFEST
from mirror.testing.registry import InProcessRegistry, RegistryContent

from .conftest import Mirror, MirrorFactory
from .console_client import ConsoleUser

DEAD = "127.0.0.1:9"  # nothing listens: every request to it fails
CAPACITY = 1_200_000


def _image(content: RegistryContent, tag: str, layer: bytes) -> list[str]:
    config = json.dumps({"architecture": "amd64", "os": "linux", "tag": tag}).encode()
    blobs = [content.add_blob(config), content.add_blob(layer)]
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": blobs[0],
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": blobs[1],
                "size": len(layer),
            }
        ],
    }
    content.add_manifest("team/app", json.dumps(manifest).encode(), OCI_MANIFEST, tag)
    return blobs


async def _pull(http: aiohttp.ClientSession, base: str, tag: str, blobs: list[str]) -> None:
    async with http.get(f"{base}/v2/team/app/manifests/{tag}") as resp:
        assert resp.status == 200, await resp.text()
    for digest in blobs:
        async with http.get(f"{base}/v2/team/app/blobs/{digest}") as resp:
            assert resp.status == 200
            await resp.read()


def _figures(html: str) -> dict[str, str]:
    found = dict(re.findall(r'<dd id="([a-z-]+)">(.*?)</dd>', html, re.S))
    rows = html.split('<table id="upstreams">')[1].split("</table>")[0]
    for host, requests, errors in re.findall(
        r"<tr><td>([^<]+)</td><td>(\d+)</td><td>(\d+)</td></tr>", rows
    ):
        found[f"{host} requests"], found[f"{host} errors"] = requests, errors
    return found


def _total(mirror: Mirror, name: str) -> float:
    """A metric's samples of every label set, summed."""
    families = mirror.metrics.registry.collect()
    return sum(s.value for f in families for s in f.samples if s.name == name)


def _upstream(mirror: Mirror, host: str, failed: bool) -> int:
    total = 0.0
    for family in mirror.metrics.registry.collect():
        for s in family.samples:
            if s.name == "mirror_upstream_requests_total" and s.labels["upstream"] == host:
                bad = not s.labels["status"].isdigit() or s.labels["status"][0] in "05"
                total += s.value if (bad or s.labels["status"] == "429") or not failed else 0
    return int(total)


async def test_the_dashboard_follows_pulls_hits_upstream_errors_disk_and_evictions(
    mirror_factory: MirrorFactory,
) -> None:
    content = RegistryContent()
    async with InProcessRegistry(content).serve() as origin:
        host = origin.removeprefix("http://")
        mirror = await mirror_factory(
            {host: origin, DEAD: f"http://{DEAD}"},
            retention={"max_size": CAPACITY, "high_watermark": 0.8, "low_watermark": 0.6},
        )
        browser = ConsoleUser(mirror.url)  # auth off: the dashboard answers loopback
        try:
            await _the_journey(mirror, browser, content, host)
        finally:
            await browser.close()


async def _the_journey(
    mirror: Mirror, browser: ConsoleUser, content: RegistryContent, host: str
) -> None:
    status, html = await browser.get("/console/cache")
    assert status == 200 and "no requests yet" in html and "No upstream requests yet" in html
    first = _image(content, "a", os.urandom(300_000))
    async with aiohttp.ClientSession() as http:
        await _pull(http, mirror.url, "a", first)
        shown = _figures((await browser.get("/console/cache"))[1])
        fetched = int(mirror.metric("mirror_bytes_fetched_upstream_total"))
        assert fetched >= 300_000 and shown["from-upstream"] == human_size(fetched)
        assert shown[f"{host} requests"] == str(_upstream(mirror, host, False)) != "0"
        assert shown[f"{host} errors"] == "0"
        # Pulled again: served from the cache, the hit ratio climbs, nothing more fetched.
        await _pull(http, mirror.url, "a", first)
        shown = _figures((await browser.get("/console/cache"))[1])
        served = int(mirror.metric("mirror_bytes_served_from_cache_total"))
        assert served >= 300_000 and shown["from-cache"].startswith(human_size(served))
        assert int(mirror.metric("mirror_bytes_fetched_upstream_total")) == fetched
        hits = _total(mirror, "mirror_cache_hits_total")
        misses = _total(mirror, "mirror_cache_misses_total")
        assert hits > 0 and shown["hit-ratio"] == f"{round(hits / (hits + misses) * 100, 1)} %"
        # The dead upstream: its requests fail, and the table says so, per upstream.
        async with http.get(f"{mirror.url}/v2/team/app/manifests/a?ns={DEAD}") as resp:
            assert resp.status >= 400
        shown = _figures((await browser.get("/console/cache"))[1])
        assert shown[f"{DEAD} errors"] == str(_upstream(mirror, DEAD, True)) != "0"
        assert shown[f"{host} errors"] == "0"
        # Past the high watermark: the least recently pulled image is evicted.
        for tag, size in (("b", 400_000), ("c", 400_000)):
            await _pull(http, mirror.url, tag, _image(content, tag, os.urandom(size)))
    capacity = mirror.retention.capacity
    assert capacity is not None
    # Eviction runs in the background once above the high mark: the figures are read once it
    # has ended (read midway, the page and the capacity would see different deletions).
    for _ in range(200):
        if _total(mirror, "mirror_retention_evictions_total"):
            break
        await asyncio.sleep(0.05)
    await capacity.settled()
    evictions = int(_total(mirror, "mirror_retention_evictions_total"))
    shown = _figures((await browser.get("/console/cache"))[1])
    assert evictions > 0 and shown["evictions"] == str(evictions)
    used = capacity.total
    assert shown["disk"].startswith(f"{human_size(used)} of {human_size(CAPACITY)}")
    assert shown["fills"] == str(int(mirror.metric("mirror_fills_in_progress")))
