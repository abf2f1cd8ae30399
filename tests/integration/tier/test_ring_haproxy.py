"""Our HAProxy ring picks the server Debian's HAProxy picks: the generated configuration, three
backends that answer with their own address, hundreds of digests and repositories, weights,
and a dead server taken out by its health check."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import requests

from mirror.tier.haproxy import HAProxyTier, render
from mirror.tier.haproxy_ring import HAProxyRing
from mirror.tier.ring import Member
from tests.peers.haproxy import HAProxy, haproxy_binary
from tests.peers.ports import free_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(haproxy_binary() is None, reason="haproxy is not installed"),
]

# A backend that answers every request, health checks included, with its own address.
BACKEND = """\
frontend echo-{port}
    mode http
    bind 127.0.0.1:{port}
    http-request return status 200 content-type text/plain string "127.0.0.1:{port}"
"""


def digests(n: int) -> list[str]:
    return [f"sha256:{hashlib.sha256(f'blob-{i}'.encode()).hexdigest()}" for i in range(n)]


class Front(HAProxy):
    """HAProxy with the generated tier configuration on ``front`` and echoing backends."""

    def __init__(
        self,
        prefix: Path,
        servers: list[str],
        backends: list[int],
        weights: Mapping[str, int] | None = None,
    ) -> None:
        self.front = free_port()
        tier = HAProxyTier(
            servers, listen=f"127.0.0.1:{self.front}", weights=weights or {},
            check_interval=500, fall=2, rise=1,
        )  # fmt: skip
        extra = "".join(BACKEND.format(port=port) for port in backends)
        super().__init__(prefix, render(tier), [self.front, *backends], extra)


@pytest.fixture
def three(tmp_path: Path) -> Iterator[tuple[Front, list[str]]]:
    ports = [free_port() for _ in range(3)]
    servers = [f"127.0.0.1:{port}" for port in ports]
    with Front(tmp_path / "haproxy", servers, ports) as haproxy:
        yield haproxy, servers


def answered_by(haproxy: Front, path: str) -> str:
    """The backend that answered ``path`` through HAProxy."""
    resp = requests.get(f"http://127.0.0.1:{haproxy.front}{path}", timeout=5)
    assert resp.status_code == 200, resp.text
    return resp.text


def test_blob_requests_land_on_the_owner_our_haproxy_ring_names(
    three: tuple[Front, list[str]],
) -> None:
    haproxy, servers = three
    tier = HAProxyRing(Member(s) for s in servers)
    keys = digests(400)
    got = {k: answered_by(haproxy, f"/v2/library/alpine/blobs/{k}?ns=docker.io") for k in keys}
    assert got == {k: tier.owner(k) for k in keys}
    assert set(got.values()) == set(servers)


def test_manifests_tags_and_uploads_are_routed_by_repository(
    three: tuple[Front, list[str]],
) -> None:
    haproxy, servers = three
    tier = HAProxyRing(Member(s) for s in servers)
    for i in range(100):
        repo = f"team-{i}/app"
        owner = tier.owner(repo)
        assert answered_by(haproxy, f"/v2/{repo}/manifests/latest") == owner
        assert answered_by(haproxy, f"/v2/{repo}/tags/list?n=10") == owner
        assert answered_by(haproxy, f"/v2/{repo}/blobs/uploads/") == owner
        assert answered_by(haproxy, f"/v2/{repo}/blobs/uploads/some-session") == owner
        assert answered_by(haproxy, f"/v2/{repo}/referrers/{digests(1)[0]}") == owner


def test_weighted_servers_get_their_share_where_our_ring_puts_it(tmp_path: Path) -> None:
    ports = [free_port() for _ in range(3)]
    servers = [f"127.0.0.1:{port}" for port in ports]
    weights = {servers[0]: 3, servers[1]: 1, servers[2]: 2}
    with Front(tmp_path / "haproxy", servers, ports, weights) as haproxy:
        tier = HAProxyRing(Member(s, weights[s]) for s in servers)
        keys = digests(600)
        got = {k: answered_by(haproxy, f"/v2/r/blobs/{k}") for k in keys}
    assert got == {k: tier.owner(k) for k in keys}
    share = Counter(got.values())
    assert share[servers[0]] > share[servers[2]] > share[servers[1]], share


def test_a_server_marked_down_sends_its_digests_along_our_walk(tmp_path: Path) -> None:
    ports = [free_port() for _ in range(3)]
    servers = [f"127.0.0.1:{port}" for port in ports]
    # The third server is in the ring but nothing listens there.
    with Front(tmp_path / "haproxy", servers, ports[:2]) as haproxy:
        haproxy.wait_status("mirror_tier", {servers[2]: "DOWN", servers[0]: "UP"})
        tier = HAProxyRing(Member(s) for s in servers)
        dead = servers[2]
        keys = digests(300)
        for key in keys:
            expected = next(s for s in tier.walk(key) if s != dead)
            assert answered_by(haproxy, f"/v2/r/blobs/{key}") == expected
        assert any(tier.owner(k) == dead for k in keys)


def test_the_peer_route_is_refused_to_clients(three: tuple[Front, list[str]]) -> None:
    haproxy, _ = three
    resp = requests.get(f"http://127.0.0.1:{haproxy.front}/_tier/blobs/{digests(1)[0]}", timeout=5)
    assert resp.status_code == 404
    assert resp.json()["errors"][0]["code"] == "NAME_UNKNOWN"
