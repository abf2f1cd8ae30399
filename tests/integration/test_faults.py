"""Failure paths: bad upstream bytes, hang-ups, outages, thundering herds, impatient clients.

A 200 with wrong bytes must never complete, nothing corrupt may enter the cache, and a cached
tag outlives an upstream outage.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from typing import Any

import aiohttp
import pytest

from mirror.oci.digest import Digest
from tests.peers.factory import ImageFactory
from tests.peers.registry import Registry

from .conftest import Mirror, MirrorFactory
from .fake_upstream import FakeUpstream, digest_of

pytestmark = pytest.mark.integration

FAKE_HOST = "fake.test"


@pytest.fixture
async def fake() -> FakeUpstream:
    return FakeUpstream()


@pytest.fixture
async def fake_server(aiohttp_server: Any, fake: FakeUpstream) -> Any:
    return await aiohttp_server(fake.app(), host="127.0.0.1")


@pytest.fixture
async def faulty(mirror_factory: MirrorFactory, fake_server: Any) -> Mirror:
    """A mirror whose only upstream is the fake one."""
    return await mirror_factory(
        {FAKE_HOST: f"http://127.0.0.1:{fake_server.port}"}, tag_ttl=60.0, max_stale=3600.0
    )


async def fetch(url: str, **kwargs: Any) -> tuple[int, bytes, dict[str, str]]:
    async with aiohttp.ClientSession() as http:
        async with http.get(url, **kwargs) as resp:
            return resp.status, await resp.read(), dict(resp.headers)


def cache_is_empty(mirror: Mirror) -> bool:
    return mirror.cached_blob_files() == [] and os.listdir(mirror.data_dir / "tmp") == []


# Blobs of 8 MiB and more are received straight into pieces (mirror/upstream/body.py).
SIZES = [pytest.param(300_000, id="small"), pytest.param(9 * 1024 * 1024 + 7, id="large")]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("mode", ["corrupt", "truncate"], ids=["wrong-bytes", "hang-up"])
async def test_bad_upstream_blob_aborts_the_response_and_caches_nothing(
    faulty: Mirror, fake: FakeUpstream, mode: str, size: int
) -> None:
    data = os.urandom(size)
    digest = fake.add_blob(data)
    fake.blob_mode[digest] = mode
    url = f"{faulty.url}/v2/team/app/blobs/{digest}"
    with pytest.raises(aiohttp.ClientPayloadError):
        await fetch(url)
    assert cache_is_empty(faulty)
    assert faulty.metric("mirror_fills_committed_total") == 0
    if mode == "corrupt":
        assert faulty.metric("mirror_digest_mismatches_total", kind="blob") == 1

    del fake.blob_mode[digest]  # upstream heals: the next pull fills correctly
    status, body, _ = await fetch(url)
    assert status == 200 and body == data
    assert len(faulty.cached_blob_files()) == 1


async def test_wrong_manifest_bytes_are_not_cached(faulty: Mirror, fake: FakeUpstream) -> None:
    digest, _ = fake.add_image("team/app", "v1", [b"layer"])
    fake.manifest_mode[digest] = "corrupt"
    for reference in (digest, "v1"):
        status, body, _ = await fetch(f"{faulty.url}/v2/team/app/manifests/{reference}")
        assert status == 503, body
        assert b"UNAVAILABLE" in body
    assert faulty.services.metadata.manifest(Digest.parse(digest)) is None
    assert cache_is_empty(faulty)


async def test_fifty_concurrent_cold_pulls_cause_one_upstream_get(
    mirror: Mirror, image_factory: ImageFactory, upstream_registry: Registry
) -> None:
    pushed = image_factory.push("big", layers=1, layer_size=8 * 1024 * 1024)
    layer = pushed.image.layers[0]
    expected = hashlib.sha256(layer.read_bytes()).hexdigest()
    url = f"{mirror.url}/v2/{pushed.repo}/blobs/{layer.digest}"

    async def pull(http: aiohttp.ClientSession) -> str:
        async with http.get(url) as resp:
            assert resp.status == 200
            return hashlib.sha256(await resp.read()).hexdigest()

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        digests = await asyncio.gather(*(pull(http) for _ in range(50)))
    assert digests == [expected] * 50
    assert await upstream_registry.wait_for_requests("GET", layer.digest) == 1
    await asyncio.sleep(0.2)
    assert upstream_registry.count_requests("GET", layer.digest) == 1
    assert mirror.metric("mirror_fills_started_total") == 1
    joined = mirror.metric("mirror_singleflight_joins_total", kind="blob")
    warm = mirror.metric("mirror_cache_hits_total", kind="blob")
    assert joined >= 1 and joined + warm == 49


async def test_client_disconnect_mid_fill_does_not_cancel_the_fill(
    faulty: Mirror, fake: FakeUpstream
) -> None:
    data = os.urandom(2 * 1024 * 1024)
    digest = fake.add_blob(data)
    fake.blob_mode[digest] = "slow"
    url = f"{faulty.url}/v2/team/app/blobs/{digest}"
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as resp:
            assert resp.status == 200
            await resp.content.readexactly(64 * 1024)
            resp.close()  # the client goes away mid-blob
    deadline = time.monotonic() + 10
    # Polling a metric: there is no event to wait on from outside the mirror.
    while faulty.metric("mirror_fills_committed_total") < 1 and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    assert faulty.metric("mirror_fills_committed_total") == 1
    status, body, _ = await fetch(url)
    assert status == 200 and body == data
    assert fake.count("GET", digest) == 1, "the second pull must be warm"


async def test_a_cold_fill_is_listed_in_the_durability_journal_while_its_bytes_arrive(
    faulty: Mirror, fake: FakeUpstream
) -> None:
    """The journal entry's fsync runs beside the download, so that the digest match costs a
    rename and not a directory fsync before the response may complete (a round trip's worth
    on a loaded disk, for every layer of a cold pull)."""
    data = os.urandom(2 * 1024 * 1024)
    digest = fake.add_blob(data)
    fake.blob_mode[digest] = "slow"
    fake.slow_delay = 0.05  # 32 pieces: 1.6 s of transfer
    entry = f"sha256-{digest.removeprefix('sha256:')}."
    url = f"{faulty.url}/v2/team/app/blobs/{digest}"
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as resp:
            assert resp.status == 200
            await resp.content.readexactly(64 * 1024)
            deadline = time.monotonic() + 1.0
            journal = faulty.data_dir / "pending"
            # Polling the directory: there is no event to wait on from outside the mirror.
            while not any(p.name.startswith(entry) for p in journal.iterdir()):
                assert time.monotonic() < deadline, "not listed while the bytes arrive"
                await asyncio.sleep(0.01)
            assert faulty.metric("mirror_fills_committed_total") == 0
            assert await resp.read() == data[64 * 1024 :]


async def test_upstream_down_serves_stale_tag_and_fails_fast_for_uncached(
    faulty: Mirror, fake: FakeUpstream, fake_server: Any
) -> None:
    digest, manifest = fake.add_image("team/app", "v1", [b"layer-one"])
    fake.add_image("team/app", "v2", [b"layer-two"])
    status, body, _ = await fetch(f"{faulty.url}/v2/team/app/manifests/v1")
    assert status == 200 and body == manifest
    await fake_server.close()  # upstream goes away
    faulty.clock.advance(120)  # past the tag TTL: the mirror must revalidate, and cannot

    status, body, headers = await fetch(f"{faulty.url}/v2/team/app/manifests/v1")
    assert status == 200 and body == manifest
    assert headers["Warning"].startswith("110")
    assert headers["Docker-Content-Digest"] == digest
    assert faulty.metric("mirror_stale_served_total") == 1

    started = time.monotonic()
    for path in ("manifests/v2", f"blobs/{digest_of(b'never-cached')}"):
        status, body, _ = await fetch(f"{faulty.url}/v2/team/app/{path}")
        assert status == 503 and b"UNAVAILABLE" in body
    assert time.monotonic() - started < 5

    faulty.clock.advance(3600)  # past max_stale: no longer served
    status, body, _ = await fetch(f"{faulty.url}/v2/team/app/manifests/v1")
    assert status == 503
    # A digest reference is immutable: served from cache however long upstream is away.
    status, body, _ = await fetch(f"{faulty.url}/v2/team/app/manifests/{digest}")
    assert status == 200 and body == manifest


async def test_tag_revalidation_uses_head_and_follows_a_moved_tag(
    faulty: Mirror, fake: FakeUpstream
) -> None:
    first, _ = fake.add_image("team/app", "latest", [b"one"])
    url = f"{faulty.url}/v2/team/app/manifests/latest"
    assert (await fetch(url))[2]["Docker-Content-Digest"] == first
    assert (await fetch(url))[2]["Docker-Content-Digest"] == first
    assert fake.count("GET", "/manifests/") == 1 and fake.count("HEAD", "/manifests/") == 0

    faulty.clock.advance(61)
    assert (await fetch(url))[2]["Docker-Content-Digest"] == first
    assert fake.count("HEAD", "/manifests/latest") == 1
    assert fake.count("GET", "/manifests/") == 1, "unchanged tag: no body refetch"

    second, _ = fake.add_image("team/app", "latest", [b"two"])
    faulty.clock.advance(61)
    assert (await fetch(url))[2]["Docker-Content-Digest"] == second
    assert fake.count("GET", "/manifests/latest") == 2


async def test_upstream_429_is_toomanyrequests_with_retry_after(
    faulty: Mirror, fake: FakeUpstream
) -> None:
    digest = fake.add_blob(b"rate-limited")
    fake.blob_mode[digest] = "429"
    status, body, headers = await fetch(f"{faulty.url}/v2/team/app/blobs/{digest}")
    assert status == 429
    assert b"TOOMANYREQUESTS" in body
    assert headers["Retry-After"] == "30"


@pytest.mark.parametrize(
    ("method", "path", "headers", "status", "code"),
    [
        ("GET", "/v2/Team/App/manifests/v1", {}, 400, "NAME_INVALID"),
        # Not a valid tag, so no manifest has it (the conformance suites want 404, issue 10).
        ("GET", "/v2/team/app/manifests/-bad-tag", {}, 404, "MANIFEST_UNKNOWN"),
        ("GET", "/v2/team/app/manifests/sha256:abc", {}, 400, "DIGEST_INVALID"),
        ("GET", "/v2/team/app/blobs/sha256:xyz", {}, 400, "DIGEST_INVALID"),
        ("GET", "/v2/team/app/blobs/md5:" + "0" * 32, {}, 400, "DIGEST_INVALID"),
        (
            "GET",
            f"/v2/team/app/blobs/{digest_of(b'x')}",
            {"Range": "bytes=5-1"},
            416,
            "RANGE_INVALID",
        ),
        (
            "GET",
            f"/v2/team/app/blobs/{digest_of(b'x')}",
            {"Range": "bytes=one-two"},
            416,
            "RANGE_INVALID",
        ),
        ("GET", "/v2/team/app/manifests/v1?ns=elsewhere.example", {}, 404, "NAME_UNKNOWN"),
        ("GET", "/v2/team/app/tags/list?n=abc", {}, 400, "PAGINATION_NUMBER_INVALID"),
        ("PUT", "/v2/team/app/manifests/v1", {}, 405, "UNSUPPORTED"),
        ("DELETE", "/v2/team/app/manifests/v1", {}, 405, "UNSUPPORTED"),
        ("POST", "/v2/team/app/blobs/uploads/", {}, 405, "UNSUPPORTED"),
        ("PATCH", "/v2/team/app/blobs/uploads/some-uuid", {}, 405, "UNSUPPORTED"),
        ("DELETE", f"/v2/team/app/blobs/{digest_of(b'x')}", {}, 405, "UNSUPPORTED"),
    ],
    ids=[
        "upper-case-name",
        "bad-tag",
        "short-digest",
        "non-hex-digest",
        "unknown-algorithm",
        "reversed-range",
        "malformed-range",
        "unmirrored-ns",
        "bad-page-size",
        "push-manifest",
        "delete-manifest",
        "start-upload",
        "patch-upload",
        "delete-blob",
    ],
)
async def test_bad_requests_get_spec_errors_before_any_upstream_call(
    faulty: Mirror,
    fake: FakeUpstream,
    method: str,
    path: str,
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.request(method, f"{faulty.url}{path}", headers=headers) as resp:
            assert resp.status == status
            assert (await resp.json())["errors"][0]["code"] == code
    assert sum(fake.requests.values()) == 0
    assert cache_is_empty(faulty)


async def test_referrers_are_filtered_cached_and_served_stale(
    faulty: Mirror, fake: FakeUpstream, fake_server: Any
) -> None:
    subject, _ = fake.add_image("team/app", "v1", [b"layer"])
    sbom = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": digest_of(b"sbom"),
        "size": 4,
        "artifactType": "application/spdx+json",
    }
    sig = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": digest_of(b"sig"),
        "size": 3,
        "artifactType": "application/vnd.dev.sig",
    }
    fake.referrers[subject] = [sbom, sig]
    url = f"{faulty.url}/v2/team/app/referrers/{subject}"

    status, body, headers = await fetch(url)
    assert status == 200
    assert [m["digest"] for m in json.loads(body)["manifests"]] == [sbom["digest"], sig["digest"]]
    assert headers["Content-Type"] == "application/vnd.oci.image.index.v1+json"

    status, body, headers = await fetch(f"{url}?artifactType=application/spdx%2Bjson")
    assert status == 200
    assert [m["digest"] for m in json.loads(body)["manifests"]] == [sbom["digest"]]
    assert headers["OCI-Filters-Applied"] == "artifactType"

    await fetch(url)  # within the TTL: from cache
    assert fake.count("GET", "/referrers/") == 2

    await fake_server.close()
    faulty.clock.advance(120)
    status, body, headers = await fetch(url)
    assert status == 200 and headers["Warning"].startswith("110")
    assert len(json.loads(body)["manifests"]) == 2


async def test_path_prefix_selects_the_upstream(faulty: Mirror, fake: FakeUpstream) -> None:
    digest, manifest = fake.add_image("team/app", "v1", [b"layer"])
    status, body, headers = await fetch(f"{faulty.url}/v2/{FAKE_HOST}/team/app/manifests/v1")
    assert status == 200 and body == manifest
    status, body, _ = await fetch(f"{faulty.url}/v2/team/app/manifests/v1?ns={FAKE_HOST}")
    assert status == 200 and body == manifest
    assert headers["Docker-Content-Digest"] == digest


async def test_pulls_are_recorded_for_retention(faulty: Mirror, fake: FakeUpstream) -> None:
    digest, _ = fake.add_image("team/app", "v1", [b"layer"])
    faulty.clock.advance(1000)
    await fetch(f"{faulty.url}/v2/team/app/manifests/v1")
    metadata = faulty.services.metadata
    assert metadata.last_pull(FAKE_HOST, "team/app", Digest.parse(digest)) == faulty.clock.now()
    assert metadata.flush() == 1  # batched in memory until flushed
    assert metadata.last_pull(FAKE_HOST, "team/app", Digest.parse(digest)) == faulty.clock.now()
    async with aiohttp.ClientSession() as http:  # HEAD resolves, it is not a pull
        async with http.head(f"{faulty.url}/v2/team/app/manifests/v1"):
            pass
    assert metadata.flush() == 0


@pytest.mark.parametrize("size", [pytest.param(1_000_000, id="small"), *SIZES[1:]])
async def test_a_transfer_broken_mid_blob_is_resumed_with_range(
    faulty: Mirror, fake: FakeUpstream, size: int
) -> None:
    data = os.urandom(size)
    digest = fake.add_blob(data)
    fake.blob_mode[digest] = "truncate-once"
    status, body, _ = await fetch(f"{faulty.url}/v2/team/app/blobs/{digest}")
    assert status == 200 and body == data
    assert fake.count("GET", digest) == 2
    assert faulty.metric("mirror_fills_resumed_total") == 1
    assert faulty.metric("mirror_fills_committed_total") == 1


async def test_a_black_holed_upstream_trips_the_breaker_and_stale_is_served_at_once(
    mirror_factory: MirrorFactory, fake: FakeUpstream, fake_server: Any
) -> None:
    mirror = await mirror_factory(
        {FAKE_HOST: f"http://127.0.0.1:{fake_server.port}"},
        upstream_options={"read_timeout": 0.3, "breaker_cooldown": 1.0},
        tag_ttl=60.0,
        max_stale=3600.0,
    )
    _, manifest = fake.add_image("team/app", "v1", [b"layer"])
    url = f"{mirror.url}/v2/team/app/manifests/v1"
    assert (await fetch(url))[1] == manifest
    fake.hang = True  # upstream accepts connections and never answers
    mirror.clock.advance(120)

    started = time.monotonic()
    status, body, headers = await fetch(url)  # waits out the attempts that trip the breaker
    assert status == 200 and body == manifest and headers["Warning"].startswith("110")
    assert time.monotonic() - started < 5
    asked = sum(fake.requests.values())

    started = time.monotonic()
    for _ in range(5):
        status, body, headers = await fetch(url)
        assert status == 200 and body == manifest and headers["Warning"].startswith("110")
    status, body, _ = await fetch(f"{mirror.url}/v2/team/app/blobs/{digest_of(b'uncached')}")
    assert status == 503 and b"UNAVAILABLE" in body
    assert time.monotonic() - started < 1.0, "an open circuit fails fast"
    assert sum(fake.requests.values()) == asked, "no request reached the dead upstream"

    fake.hang = False
    second, fresh = fake.add_image("team/app", "v1", [b"new layer"])
    mirror.clock.advance(1.1)  # past the cooldown: the next request probes and closes it
    status, body, headers = await fetch(url)
    assert status == 200 and body == fresh and "Warning" not in headers
    assert headers["Docker-Content-Digest"] == second


async def test_capacity_pressure_deletes_orphans_before_any_image(
    mirror_factory: MirrorFactory, fake: FakeUpstream, fake_server: Any
) -> None:
    mirror = await mirror_factory(
        {FAKE_HOST: f"http://127.0.0.1:{fake_server.port}"},
        retention={"max_size": 1_200_000, "high_watermark": 0.8, "low_watermark": 0.6},
    )
    orphan = fake.add_blob(os.urandom(300_000))  # pulled by digest alone: no manifest
    assert (await fetch(f"{mirror.url}/v2/team/app/blobs/{orphan}"))[0] == 200
    first, _ = fake.add_image("team/app", "a", [os.urandom(300_000)])
    second, _ = fake.add_image("team/app", "b", [os.urandom(400_000)])
    layers = set()
    for tag in ("a", "b"):
        status, body, _ = await fetch(f"{mirror.url}/v2/team/app/manifests/{tag}")
        assert status == 200
        for layer in json.loads(body)["layers"]:
            layers.add(layer["digest"])
            assert (await fetch(f"{mirror.url}/v2/team/app/blobs/{layer['digest']}"))[0] == 200

    cached = {f"sha256:{p.name}" for p in mirror.cached_blob_files()}
    deadline = time.monotonic() + 10
    while orphan in cached and time.monotonic() < deadline:
        await asyncio.sleep(0.05)  # eviction runs in the background once above the high mark
        cached = {f"sha256:{p.name}" for p in mirror.cached_blob_files()}
    assert orphan not in cached
    assert {first, second, *layers} <= cached, "the images survive: the orphan was enough"
    capacity = mirror.retention.capacity
    assert capacity is not None and capacity.total <= 0.6 * 1_200_000


@pytest.mark.parametrize("honest", [True, False], ids=["right-size", "head-lies"])
async def test_a_chunked_upstream_blob_is_sized_by_head_and_still_verified(
    faulty: Mirror, fake: FakeUpstream, honest: bool
) -> None:
    data = os.urandom(200_000)
    digest = fake.add_blob(data)
    fake.blob_mode[digest] = "chunked"  # no Content-Length on the GET
    if not honest:
        fake.blobs[digest] = data + b"x"  # the HEAD and the body disagree with the digest
    url = f"{faulty.url}/v2/team/app/blobs/{digest}"
    if honest:
        status, body, headers = await fetch(url)
        assert status == 200 and body == data
        assert headers["Content-Length"] == str(len(data))
        assert len(faulty.cached_blob_files()) == 1
    else:
        with pytest.raises(aiohttp.ClientPayloadError):
            await fetch(url)
        assert cache_is_empty(faulty)
