"""Offline mode (issue 12): a mirror whose cache was filled from a real upstream restarts with
``cache.offline`` and its upstream's URL pointing at a socket that counts every connection it
accepts. Whatever is asked, the count stays 0: cached images are served forever, anything else
is a fast 404 saying the mirror is offline, readiness and metrics say offline, retention runs
and nothing is refetched."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from mirror.oci.media import OCI_INDEX, OCI_MANIFEST
from mirror.testing.images import random_layer
from tests.peers.registry import Registry

from .conftest import Mirror, MirrorFactory
from .retention_helpers import DAY, assert_pulled, on_disk, push_image, skopeo_pull

pytestmark = pytest.mark.integration

ACCEPT = f"{OCI_MANIFEST}, {OCI_INDEX}"


class AcceptCounter:
    """A listening socket on loopback that counts the connections it accepts (and drops)."""

    def __init__(self) -> None:
        self.accepted = 0
        self.server: asyncio.Server | None = None

    async def _on_connect(
        self, _reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.accepted += 1
        writer.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"


@pytest.fixture
async def upstream_socket() -> AsyncIterator[AcceptCounter]:
    counter = AcceptCounter()
    counter.server = await asyncio.start_server(counter._on_connect, "127.0.0.1", 0)
    yield counter
    counter.server.close()
    await counter.server.wait_closed()


async def offline_twin(
    mirror_factory: MirrorFactory, online: Mirror, host: str, url: str, **options: object
) -> Mirror:
    """The same data directory served again, offline, with ``host``'s URL now ``url``."""
    await online.server.close()
    return await mirror_factory({host: url}, data_dir=online.data_dir, offline=True, **options)


async def test_offline_mirror_never_connects_upstream_and_serves_its_cache_forever(
    mirror_factory: MirrorFactory,
    upstream_registry: Registry,
    upstream_socket: AcceptCounter,
    rng: random.Random,
    tmp_path: Path,
) -> None:
    host = upstream_registry.host
    online = await mirror_factory({host: upstream_registry.url})
    image = push_image(
        upstream_registry, tmp_path, "test/offline", "v1", [random_layer(rng, 30_000)]
    )
    await skopeo_pull(online, "test/offline:v1", tmp_path / "warm")
    mirror = await offline_twin(mirror_factory, online, host, upstream_socket.url)

    # Far past tag_ttl + max_stale: an offline mirror's cached tags never go stale.
    mirror.clock.advance(365 * DAY)
    await skopeo_pull(mirror, "test/offline:v1", tmp_path / "offline")
    assert_pulled(tmp_path / "offline", image)

    async with aiohttp.ClientSession() as http:
        started = time.monotonic()
        async with http.get(
            f"{mirror.url}/v2/test/offline/manifests/never-pulled", headers={"Accept": ACCEPT}
        ) as resp:
            assert resp.status == 404
            error = (await resp.json())["errors"][0]
        assert error["code"] == "MANIFEST_UNKNOWN"
        assert "offline" in error["message"]
        missing = "sha256:" + "ab" * 32
        async with http.get(f"{mirror.url}/v2/test/offline/blobs/{missing}") as resp:
            assert resp.status == 404
            error = (await resp.json())["errors"][0]
        assert error["code"] == "BLOB_UNKNOWN"
        assert "offline" in error["message"]
        assert time.monotonic() - started < 2.0, "offline misses must answer fast"

        async with http.get(f"{mirror.url}/readyz") as resp:
            assert resp.status == 200
            ready = await resp.json()
        assert ready["mode"] == "offline"
        async with http.get(f"{mirror.url}/metrics") as resp:
            assert "mirror_offline 1.0" in await resp.text()
    assert mirror.metric("mirror_offline") == 1
    assert upstream_socket.accepted == 0

    # The counter does count: the same miss from an online mirror connects to it.
    await mirror.server.close()
    online_again = await mirror_factory({host: upstream_socket.url}, data_dir=mirror.data_dir)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{online_again.url}/v2/test/offline/manifests/never-pulled") as resp:
            assert resp.status == 503
    assert upstream_socket.accepted > 0


async def test_offline_retention_runs_as_configured_and_nothing_is_refetched(
    mirror_factory: MirrorFactory,
    upstream_registry: Registry,
    upstream_socket: AcceptCounter,
    rng: random.Random,
    tmp_path: Path,
) -> None:
    host = upstream_registry.host
    retention = {
        "cooling_period": 0,
        "policies": [
            {"name": "stale", "not_pulled_days": 30, "repositories": ["test/offline-ret"]}
        ],
    }
    online = await mirror_factory({host: upstream_registry.url}, retention=retention)
    image = push_image(
        upstream_registry, tmp_path, "test/offline-ret", "v1", [random_layer(rng, 20_000)]
    )
    await skopeo_pull(online, "test/offline-ret:v1", tmp_path / "warm")
    mirror = await offline_twin(
        mirror_factory, online, host, upstream_socket.url, retention=retention
    )
    assert {b.digest for b in image.blobs()} <= on_disk(mirror)

    mirror.clock.advance(31 * DAY)
    report = await mirror.retention.run(dry_run=False)
    assert image.manifest_digest in {str(d) for _, d, _ in report.outcome.deleted}
    assert not {b.digest for b in image.blobs()} & on_disk(mirror)

    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{mirror.url}/v2/test/offline-ret/manifests/v1", headers={"Accept": ACCEPT}
        ) as resp:
            assert resp.status == 404
            assert (await resp.json())["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    assert not on_disk(mirror) & {b.digest for b in image.blobs()}, "offline refetched"
    assert upstream_socket.accepted == 0
