"""A tag revalidated with the upstream: with ``tag_ttl = 0`` every pull asks the upstream, and
the time upstream last confirmed the tag is written back at most once a second (it only
starts the stale window); with a TTL the confirmation is written every time (it is what the
TTL counts from). Read from the metadata on disk, as a restarted server would."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from mirror.check.proxy import CountingProxy
from mirror.db.metadata import Metadata
from mirror.oci.media import OCI_MANIFEST
from mirror.pullthrough.manifests import TOUCH_INTERVAL
from tests.peers.factory import ImageFactory
from tests.peers.registry import Registry

from .conftest import Mirror, MirrorFactory

pytestmark = pytest.mark.integration

ACCEPT = {"Accept": OCI_MANIFEST}


def confirmed_at(mirror: Mirror, host: str, repo: str) -> float:
    """The revalidation time of ``repo:v1`` as written to disk (a fresh store: no memo)."""
    record = Metadata(mirror.data_dir / "metadata").tag(host, repo, "v1")
    assert record is not None
    return record.fetched_at


async def head(http: aiohttp.ClientSession, mirror: Mirror, repo: str) -> None:
    async with http.head(f"{mirror.url}/v2/{repo}/manifests/v1", headers=ACCEPT) as resp:
        assert resp.status == 200


@pytest.mark.parametrize("ttl", [0.0, 0.25], ids=["ttl-0", "ttl-quarter-second"])
async def test_a_confirmed_tag_is_written_back_at_most_once_a_second_only_with_ttl_0(
    ttl: float,
    mirror_factory: MirrorFactory,
    upstream_registry: Registry,
    image_factory: ImageFactory,
    tmp_path: Path,
) -> None:
    pushed = image_factory.push("v1", layers=1, layer_size=1024)
    proxy = CountingProxy(upstream_registry.url)
    async with proxy.serve() as proxy_url:
        mirror = await mirror_factory({upstream_registry.host: proxy_url}, tag_ttl=ttl)
        host = upstream_registry.host
        async with aiohttp.ClientSession() as http:
            await head(http, mirror, pushed.repo)  # the first pull fetches and records it
            first = confirmed_at(mirror, host, pushed.repo)
            written = []
            for _ in range(3):
                mirror.clock.advance(0.3)  # past the quarter-second TTL each time
                await head(http, mirror, pushed.repo)
                written.append(confirmed_at(mirror, host, pushed.repo) - first)
            mirror.clock.advance(TOUCH_INTERVAL)
            await head(http, mirror, pushed.repo)
            last = confirmed_at(mirror, host, pushed.repo) - first
    assert proxy.count("HEAD", "/manifests/v1") == 4, "every pull past the TTL asked upstream"
    if ttl == 0:
        assert written == [0.0, 0.0, 0.0]  # confirmed within the second: not written
        assert last == pytest.approx(0.9 + TOUCH_INTERVAL)
    else:
        assert written == [pytest.approx(0.3), pytest.approx(0.6), pytest.approx(0.9)]
        assert last == pytest.approx(0.9 + TOUCH_INTERVAL)
