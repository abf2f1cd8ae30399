"""Tenancies share one cache, not each other's content or fills: a digest is linked to a
repository only on proof from that repository's own upstream, and a slow upstream's fill never
holds up another upstream's pull of the same digest."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest

from mirror.db.identity.records import ADMINISTRATORS, PullThroughRule
from mirror.oci.digest import Digest
from mirror.web.keys import METADATA

from .conftest import AuthMirror, AuthMirrorFactory, MirrorFactory
from .fake_upstream import FakeUpstream
from .test_auth_tokens import basic

pytestmark = pytest.mark.integration

ACCEPT = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
LAYER = bytes(range(256)) * 64 + b"the private layer of acme"


async def answer(
    mirror: AuthMirror, path: str, headers: dict[str, str], method: str = "GET"
) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as http:
        async with http.request(method, f"{mirror.url}{path}", headers={**ACCEPT, **headers}) as r:
            return r.status, await r.read()


@pytest.fixture
async def tenancies(auth_mirror_factory: AuthMirrorFactory, aiohttp_server: Any) -> Any:
    """acme caches its private image through its rule ``priv``; evil's rule ``liar`` points at
    an upstream that claims to hold everything; twin's rule ``own`` points at an upstream that
    really holds the same image."""
    private, liar, twin = FakeUpstream(), FakeUpstream(liar=True), FakeUpstream()
    digest, _ = private.add_image("corp/secret", "v1", [LAYER])
    twin.add_image("corp/secret", "v1", [LAYER])
    servers = {}
    for name, fake in (("private", private), ("liar", liar), ("twin", twin)):
        servers[name] = await aiohttp_server(fake.app(), host="127.0.0.1")
    url = {name: f"http://127.0.0.1:{server.port}" for name, server in servers.items()}
    mirror = await auth_mirror_factory({f"127.0.0.1:{servers['private'].port}": url["private"]})
    store = mirror.identity
    for tenancy, prefix, upstream in (("acme", "priv", "private"), ("evil", "liar", "liar")):
        store.create_tenancy(tenancy, 0)
        store.create_rule(PullThroughRule(tenancy, prefix, url[upstream]))
    store.create_tenancy("twin", 0)
    store.create_rule(PullThroughRule("twin", "own", url["twin"]))
    users = {
        "acme": basic(*mirror.user("acme", "boss", ADMINISTRATORS)),
        "evil": basic(*mirror.user("evil", "boss", ADMINISTRATORS)),
        "twin": basic(*mirror.user("twin", "boss", ADMINISTRATORS)),
    }
    status, _ = await answer(mirror, "/v2/acme/priv/corp/secret/manifests/v1", users["acme"])
    assert status == 200
    layer = str(Digest.of(LAYER))
    status, body = await answer(mirror, f"/v2/acme/priv/corp/secret/blobs/{layer}", users["acme"])
    assert (status, body) == (200, LAYER)
    return mirror, users, digest, layer, twin


def linked(mirror: AuthMirror, rule: str, digest: str) -> bool:
    """Whether ``digest`` is linked to ``corp/secret`` under the rule ``<tenancy>/<prefix>``."""
    tenancy, prefix = rule.split("/")
    record = mirror.identity.rule(tenancy, prefix)
    assert record is not None, rule
    return mirror.mirror.app[METADATA].linked(record.key, "corp/secret", Digest.parse(digest))


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_an_upstream_that_says_yes_to_every_head_proves_nothing(
    tenancies: Any, method: str
) -> None:
    mirror, users, manifest, layer, _ = tenancies
    base = "/v2/evil/liar/corp/secret"

    blob = await answer(mirror, f"{base}/blobs/{layer}", users["evil"], method)
    image = await answer(mirror, f"{base}/manifests/{manifest}", users["evil"], method)

    assert blob[0] == 404 and LAYER not in blob[1]
    assert image[0] == 404
    if method == "GET":
        assert b"BLOB_UNKNOWN" in blob[1] and b"MANIFEST_UNKNOWN" in image[1]
    assert not linked(mirror, "evil/liar", layer)
    assert not linked(mirror, "evil/liar", manifest)


async def test_an_honest_upstream_holding_the_same_content_proves_it(tenancies: Any) -> None:
    mirror, users, manifest, layer, twin = tenancies
    base = "/v2/twin/own/corp/secret"

    blob = await answer(mirror, f"{base}/blobs/{layer}", users["twin"])
    image = await answer(mirror, f"{base}/manifests/{manifest}", users["twin"])

    assert blob == (200, LAYER)
    assert image[0] == 200
    # The blob was proven with one bounded Range of at most 4 KiB, not fetched whole.
    assert len(twin.ranges) == 1
    first, last = map(int, twin.ranges[0].removeprefix("bytes=").split("-"))
    assert last - first + 1 == 4096
    assert twin.count("GET", f"/blobs/{layer}") == 1
    assert linked(mirror, "twin/own", layer) and linked(mirror, "twin/own", manifest)


async def test_a_trickling_upstream_does_not_hold_up_another_upstreams_pull(
    mirror_factory: MirrorFactory, aiohttp_server: Any
) -> None:
    slow, honest = FakeUpstream(slow_chunk=1024, slow_delay=0.05), FakeUpstream()
    blob = bytes(range(256)) * 1024  # 256 KiB: 256 chunks, about 13 s through ``slow``
    digest = slow.add_blob(blob)
    honest.add_blob(blob)
    slow.blob_mode[digest] = "slow"
    servers = [await aiohttp_server(f.app(), host="127.0.0.1") for f in (slow, honest)]
    hosts = [f"127.0.0.1:{s.port}" for s in servers]
    mirror = await mirror_factory({h: f"http://{h}" for h in hosts})

    async with aiohttp.ClientSession() as http:
        trickle = await http.get(f"{mirror.url}/v2/{hosts[0]}/lib/base/blobs/{digest}")
        started = time.monotonic()
        async with http.get(f"{mirror.url}/v2/{hosts[1]}/lib/base/blobs/{digest}") as fast:
            body = await fast.read()
            length = fast.content_length
        elapsed = time.monotonic() - started
        trickle.close()

    assert body == blob and length == len(blob)
    assert elapsed < 3.0
    assert honest.count("GET", digest) == 1
