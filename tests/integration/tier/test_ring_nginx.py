"""Our ring picks the server Debian's nginx picks: the generated config, three backends that
answer with their own address, hundreds of digests and repositories, and a dead server."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import requests

from mirror.tier.nginx import NginxTier, render
from mirror.tier.ring import HashRing, Member
from tests.peers.nginx import Nginx, nginx_binary
from tests.peers.ports import free_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed"),
]

BACKEND = """\
server {{
    listen 127.0.0.1:{port};
    location / {{ return 200 "127.0.0.1:{port}"; }}
}}
"""


def digests(n: int) -> list[str]:
    return [f"sha256:{hashlib.sha256(f'blob-{i}'.encode()).hexdigest()}" for i in range(n)]


class Front(Nginx):
    """nginx with the generated tier config on ``front`` and echoing backends beside it."""

    def __init__(
        self,
        prefix: Path,
        servers: list[str],
        backends: list[int],
        weights: Mapping[str, int] | None = None,
    ) -> None:
        self.front = free_port()
        tier = NginxTier(servers, listen=f"127.0.0.1:{self.front}", weights=weights or {})
        conf = render(tier)
        conf += "".join(BACKEND.format(port=port) for port in backends)
        super().__init__(prefix, conf, [self.front, *backends])


@pytest.fixture
def three(tmp_path: Path) -> Iterator[tuple[Front, list[str]]]:
    ports = [free_port() for _ in range(3)]
    servers = [f"127.0.0.1:{port}" for port in ports]
    with Front(tmp_path / "nginx", servers, ports) as nginx:
        yield nginx, servers


def answered_by(nginx: Front, path: str) -> str:
    resp = requests.get(f"http://127.0.0.1:{nginx.front}{path}", timeout=5)
    assert resp.status_code == 200, resp.text
    return resp.text


def test_blob_requests_land_on_the_owner_our_ring_names(three: tuple[Front, list[str]]) -> None:
    nginx, servers = three
    tier = HashRing(Member(s) for s in servers)
    keys = digests(300)
    got = {k: answered_by(nginx, f"/v2/library/alpine/blobs/{k}") for k in keys}
    assert got == {k: tier.owner(k) for k in keys}
    assert set(got.values()) == set(servers)  # every backend got its share


def test_the_same_digest_lands_on_the_same_replica_whatever_the_repository(
    three: tuple[Front, list[str]],
) -> None:
    nginx, servers = three
    tier = HashRing(Member(s) for s in servers)
    for key in digests(30):
        for repo in ("a", "org/b", "docker.io/library/c"):
            assert answered_by(nginx, f"/v2/{repo}/blobs/{key}?ns=docker.io") == tier.owner(key)


def test_manifests_tags_and_uploads_are_routed_by_repository(
    three: tuple[Front, list[str]],
) -> None:
    nginx, servers = three
    tier = HashRing(Member(s) for s in servers)
    for i in range(100):
        repo = f"team-{i}/app"
        owner = tier.owner(repo)
        assert answered_by(nginx, f"/v2/{repo}/manifests/latest") == owner
        assert answered_by(nginx, f"/v2/{repo}/tags/list") == owner
        assert answered_by(nginx, f"/v2/{repo}/blobs/uploads/") == owner
        assert answered_by(nginx, f"/v2/{repo}/referrers/{digests(1)[0]}") == owner


def test_with_a_server_down_nginx_moves_to_the_next_server_of_our_walk(tmp_path: Path) -> None:
    ports = [free_port() for _ in range(3)]
    servers = [f"127.0.0.1:{port}" for port in ports]
    # The third server is in the ring but nothing listens there.
    with Front(tmp_path / "nginx", servers, ports[:2]) as nginx:
        tier = HashRing(Member(s) for s in servers)
        dead = servers[2]
        keys = digests(300)
        for key in keys:
            expected = next(s for s in tier.walk(key) if s != dead)
            assert answered_by(nginx, f"/v2/r/blobs/{key}") == expected
        assert any(tier.owner(k) == dead for k in keys)


def test_weighted_servers_get_their_share_where_our_ring_puts_it(tmp_path: Path) -> None:
    ports = [free_port() for _ in range(3)]
    servers = [f"127.0.0.1:{port}" for port in ports]
    weights = {servers[0]: 3, servers[1]: 1, servers[2]: 2}
    with Front(tmp_path / "nginx", servers, ports, weights) as nginx:
        tier = HashRing(Member(s, weights[s]) for s in servers)
        keys = digests(600)
        got = {k: answered_by(nginx, f"/v2/r/blobs/{k}") for k in keys}
    assert got == {k: tier.owner(k) for k in keys}
    share = Counter(got.values())
    assert share[servers[0]] > share[servers[2]] > share[servers[1]], share


def test_the_peer_route_is_refused_to_clients(three: tuple[Front, list[str]]) -> None:
    nginx, _ = three
    resp = requests.get(f"http://127.0.0.1:{nginx.front}/_tier/blobs/{digests(1)[0]}", timeout=5)
    assert resp.status_code == 404
    assert resp.json()["errors"][0]["code"] == "NAME_UNKNOWN"
