"""The replicas' internal route ``/_tier/blobs/<digest>`` on an in-process replica in front of
a real upstream: only signed requests, only for digests this replica serves, never an open
proxy; and a replica's own clients get blobs whose owner is down from upstream."""

from __future__ import annotations

import random
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from yarl import URL

from mirror.app.build import build_app
from mirror.clock import SystemClock
from mirror.config import load_config
from mirror.testing.images import BuiltImage
from mirror.tier.peer import peer_url
from mirror.tier.ring import HashRing, Member
from mirror.tier.signing import HEADER, PeerSigner
from mirror.web.keys import SERVICES
from tests.integration.tier.conftest import push_image
from tests.peers.ports import free_port
from tests.peers.registry import Registry

pytestmark = pytest.mark.integration

SECRET = random.Random(3).randbytes(24).hex().encode()


class Replica:
    """One in-process replica of a three-replica tier whose other two are not running."""

    def __init__(self, server: TestServer, servers: list[str], upstream: str) -> None:
        self.server = server
        self.servers = servers
        self.self_server = f"127.0.0.1:{server.port}"
        self.ring = HashRing(Member(s) for s in servers)
        self.upstream = upstream
        self.signer = PeerSigner(SECRET, SystemClock())

    @property
    def url(self) -> URL:
        return URL(f"http://{self.self_server}")

    def peer(self, digest: str, repo: str, skip: tuple[str, ...] = ()) -> URL:
        return peer_url(self.url, self.upstream, repo, digest, skip)

    def signed(self, url: URL, sender: str = "127.0.0.1:1", method: str = "GET") -> dict[str, str]:
        return {HEADER: self.signer.sign(method, url.raw_path_qs, sender)}


ReplicaFactory = Callable[[Callable[[HashRing, str], bool]], Awaitable[Replica]]


@pytest.fixture
async def image(
    upstream_registry: Registry, tmp_path: Path, request: pytest.FixtureRequest
) -> BuiltImage:
    """A cold image of this test's own (the upstream registry is shared by the module)."""
    seed = zlib.crc32(request.node.name.encode())
    return await push_image(upstream_registry, tmp_path, "tier/route", seed=seed, layers=8)


@pytest.fixture
def replica_for(
    aiohttp_server: Any, tmp_path: Path, upstream_registry: Registry, image: BuiltImage
) -> ReplicaFactory:
    """A replica on a port picked so that ``wanted(ring, self)`` holds for the image."""

    async def start(wanted: Callable[[HashRing, str], bool]) -> Replica:
        for _ in range(200):
            ports = [free_port() for _ in range(3)]
            servers = [f"127.0.0.1:{p}" for p in ports]
            if wanted(HashRing(Member(s) for s in servers), servers[0]):
                break
        else:
            raise AssertionError("no port layout gives the wanted placement")
        (tmp_path / "secret").write_bytes(SECRET)
        config = load_config(
            overrides={
                "storage": {"data_dir": str(tmp_path / "data"), "chunk_size": 65536},
                "encryption": {"kek_file": str(tmp_path / "kek")},
                "upstreams": [{"host": upstream_registry.host, "url": upstream_registry.url}],
                "default_upstream": upstream_registry.host,
                "tier": {
                    "replicas": [f"http://{s}" for s in servers],
                    "self": f"http://{servers[0]}",
                    "secret_file": str(tmp_path / "secret"),
                    "peer_connect_timeout": 0.5,
                },
            },
            environ={},
        )
        server = await aiohttp_server(build_app(config), host="127.0.0.1", port=ports[0])
        return Replica(server, servers, upstream_registry.host)

    return start


def owned(ring: HashRing, me: str, image: BuiltImage) -> list[str]:
    return [b.digest for b in image.blobs() if ring.owner(b.digest) == me]


def foreign(ring: HashRing, me: str, image: BuiltImage) -> list[str]:
    return [b.digest for b in image.blobs() if ring.owner(b.digest) != me]


def both(image: BuiltImage) -> Callable[[HashRing, str], bool]:
    return lambda ring, me: bool(owned(ring, me, image)) and bool(foreign(ring, me, image))


async def error_code(resp: aiohttp.ClientResponse) -> str:
    body = await resp.json(content_type=None)
    code: str = body["errors"][0]["code"]
    return code


async def test_a_signed_peer_request_for_an_owned_digest_gets_the_blob(
    replica_for: ReplicaFactory, image: BuiltImage
) -> None:
    replica = await replica_for(both(image))
    digest = owned(replica.ring, replica.self_server, image)[0]
    url = replica.peer(digest, "tier/route")
    async with aiohttp.ClientSession() as session:
        async with session.get(url, headers=replica.signed(url)) as resp:
            body = await resp.read()
        head = replica.peer(digest, "tier/route")
        async with session.head(head, headers=replica.signed(head, method="HEAD")) as resp:
            assert resp.status == 200 and resp.content_length == len(body)
    blob = next(b for b in image.blobs() if b.digest == digest)
    assert body == blob.read_bytes()


async def test_an_unsigned_or_wrongly_signed_peer_request_is_refused(
    replica_for: ReplicaFactory, image: BuiltImage
) -> None:
    replica = await replica_for(both(image))
    digest = owned(replica.ring, replica.self_server, image)[0]
    url = replica.peer(digest, "tier/route")
    forged = PeerSigner(b"not the tier secret, 32 bytes...", SystemClock())
    other = replica.peer(digest, "tier/other")  # signed for another repository
    async with aiohttp.ClientSession() as session:
        for headers in (
            {},
            {HEADER: forged.sign("GET", url.raw_path_qs, "127.0.0.1:1")},
            replica.signed(other),
        ):
            async with session.get(url, headers=headers) as resp:
                assert resp.status == 401
                assert await error_code(resp) == "UNAUTHORIZED"


async def test_a_digest_another_replica_serves_gets_421_unless_the_caller_found_it_down(
    replica_for: ReplicaFactory, image: BuiltImage
) -> None:
    # This replica is second on the walk of some blob: the owner's stand-in.
    def stand_in(ring: HashRing, me: str) -> bool:
        return any(list(ring.walk(b.digest))[1] == me for b in image.blobs())

    replica = await replica_for(stand_in)
    digest = next(
        b.digest
        for b in image.blobs()
        if list(replica.ring.walk(b.digest))[1] == replica.self_server
    )
    owner = replica.ring.owner(digest)
    async with aiohttp.ClientSession() as session:
        url = replica.peer(digest, "tier/route")
        async with session.get(url, headers=replica.signed(url)) as resp:
            assert resp.status == 421
            assert await error_code(resp) == "UNAVAILABLE"
        url = replica.peer(digest, "tier/route", skip=(owner,))
        async with session.get(url, headers=replica.signed(url)) as resp:
            assert resp.status == 200
            assert len(await resp.read()) == next(
                b.size for b in image.blobs() if b.digest == digest
            )


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ({"upstream": "evil.example:443", "repo": "tier/route"}, 503, "UNAVAILABLE"),
        ({"upstream": "UPSTREAM", "repo": "../etc"}, 400, "NAME_INVALID"),
    ],
    ids=["unknown-upstream", "bad-repo"],
)
async def test_a_peer_request_cannot_make_the_replica_an_open_proxy(
    replica_for: ReplicaFactory, image: BuiltImage, query: dict[str, str], status: int, code: str
) -> None:
    replica = await replica_for(both(image))
    digest = owned(replica.ring, replica.self_server, image)[0]
    query = {k: v.replace("UPSTREAM", replica.upstream) for k, v in query.items()}
    url = replica.url.with_path(f"/_tier/blobs/{digest}").with_query(query)
    async with aiohttp.ClientSession() as session:
        async with session.get(url, headers=replica.signed(url)) as resp:
            assert resp.status == status
            assert await error_code(resp) == code


async def test_a_bad_digest_is_refused_with_the_oci_error(
    replica_for: ReplicaFactory, image: BuiltImage
) -> None:
    replica = await replica_for(both(image))
    url = replica.peer("sha256:nothex", "tier/route")
    async with aiohttp.ClientSession() as session:
        async with session.get(url, headers=replica.signed(url)) as resp:
            assert resp.status == 400
            assert await error_code(resp) == "DIGEST_INVALID"


async def test_a_client_asking_for_a_blob_whose_owner_is_down_gets_it_from_upstream(
    replica_for: ReplicaFactory, image: BuiltImage, upstream_registry: Registry
) -> None:
    replica = await replica_for(both(image))
    digests = foreign(replica.ring, replica.self_server, image)
    async with aiohttp.ClientSession() as session:
        for digest in digests:
            async with session.get(f"{replica.url}/v2/tier/route/blobs/{digest}") as resp:
                assert resp.status == 200
                body = await resp.read()
            assert body == next(b.read_bytes() for b in image.blobs() if b.digest == digest)
    for digest in digests:
        assert await upstream_registry.wait_for_requests("GET", f"/blobs/{digest}") == 1


async def test_a_blob_this_replica_only_relays_is_streamed_uncached_and_ranges_work(
    replica_for: ReplicaFactory, image: BuiltImage
) -> None:
    # This replica is last on the walk of some blob: it relays it, it does not keep it.
    def last(ring: HashRing, me: str) -> bool:
        return any(list(ring.walk(b.digest))[2] == me for b in image.blobs())

    replica = await replica_for(last)
    blob = next(
        b for b in image.blobs() if list(replica.ring.walk(b.digest))[2] == replica.self_server
    )
    content = blob.read_bytes()
    # The blob the ring gives this replica may be a small config: a range inside it.
    end = min(4009, len(content) - 1)
    url = f"{replica.url}/v2/tier/route/blobs/{blob.digest}"
    async with aiohttp.ClientSession() as session:
        async with session.get(url, headers={"Range": f"bytes=10-{end}"}) as resp:
            assert resp.status == 206
            assert resp.headers["Content-Range"] == f"bytes 10-{end}/{len(content)}"
            assert await resp.read() == content[10 : end + 1]
    metrics = replica.server.app[SERVICES].metrics.registry
    assert metrics.get_sample_value("mirror_uncached_streams_total", {"reason": "relay"}) == 1
