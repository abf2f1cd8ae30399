"""The ring: nginx's point layout, ownership, the failover walk, and how few keys move."""

from __future__ import annotations

import hashlib
import struct
import zlib

import pytest

from mirror.tier.ring import (
    POINTS_PER_WEIGHT,
    HashRing,
    Member,
    key_hash,
    member_points,
    split_server,
)

SERVERS = ("127.0.0.1:5001", "127.0.0.1:5002", "127.0.0.1:5003")


def digests(n: int) -> list[str]:
    """``n`` distinct blob digests."""
    return [f"sha256:{hashlib.sha256(str(i).encode()).hexdigest()}" for i in range(n)]


def ring(*servers: str) -> HashRing:
    return HashRing(Member(s) for s in servers)


@pytest.mark.parametrize(
    ("server", "host", "port"),
    [
        ("127.0.0.1:5001", b"127.0.0.1", b"5001"),
        ("mirror-0.mirror.svc:5000", b"mirror-0.mirror.svc", b"5000"),
        ("[::1]:5000", b"[::1]", b"5000"),
        ("[::1]", b"[::1]", b""),
        ("replica", b"replica", b""),
        ("replica:", b"replica", b""),
        ("unix:/run/mirror.sock", b"/run/mirror.sock", b""),
    ],
    ids=["ipv4", "dns", "ipv6", "ipv6-no-port", "no-port", "empty-port", "unix"],
)
def test_servers_split_into_host_and_port_as_nginx_does(
    server: str, host: bytes, port: bytes
) -> None:
    assert split_server(server) == (host, port)


def test_each_point_is_crc32_of_host_nul_port_and_the_previous_point() -> None:
    points = list(member_points(Member("127.0.0.1:5001")))
    assert len(points) == POINTS_PER_WEIGHT
    assert points[0] == zlib.crc32(b"127.0.0.1\x005001" + struct.pack("<I", 0))
    assert points[1] == zlib.crc32(b"127.0.0.1\x005001" + struct.pack("<I", points[0]))
    assert len(list(member_points(Member("127.0.0.1:5001", weight=3)))) == 3 * POINTS_PER_WEIGHT


def test_a_key_belongs_to_the_first_point_at_or_above_its_crc32() -> None:
    tier = ring(*SERVERS)
    points = sorted((p, m) for m in SERVERS for p in member_points(Member(m)))
    for key in digests(200):
        h = key_hash(key)
        expected = next((m for p, m in points if p >= h), points[0][1])
        assert tier.owner(key) == expected


def test_the_owner_does_not_depend_on_the_order_replicas_are_listed() -> None:
    forward, backward = ring(*SERVERS), ring(*reversed(SERVERS))
    assert all(forward.owner(k) == backward.owner(k) for k in digests(500))


def test_keys_spread_over_every_replica() -> None:
    tier = ring(*SERVERS)
    keys = digests(3000)
    shares = {s: sum(tier.owner(k) == s for k in keys) / len(keys) for s in SERVERS}
    assert all(0.2 < share < 0.47 for share in shares.values()), shares


def test_the_walk_is_the_owner_then_every_other_server_once() -> None:
    tier = ring(*SERVERS)
    for key in digests(100):
        walk = list(tier.walk(key))
        assert walk[0] == tier.owner(key)
        assert sorted(walk) == sorted(SERVERS)


def test_removing_a_replica_moves_only_its_share_about_one_in_n() -> None:
    keys = digests(6000)
    before = ring(*SERVERS)
    after = ring(*SERVERS[:2])
    moved = [k for k in keys if before.owner(k) != after.owner(k)]
    # Only keys of the removed replica move, each to the next server on its walk (where
    # nginx's retry sends it while that replica is down).
    assert all(before.owner(k) == SERVERS[2] for k in moved)
    assert all(after.owner(k) == list(before.walk(k))[1] for k in moved)
    share = len(moved) / len(keys)
    print(f"removing 1 of 3 replicas moved {share:.3f} of {len(keys)} keys (ideal 0.333)")
    assert 0.25 < share < 0.42


def test_adding_a_replica_moves_keys_only_to_it() -> None:
    keys = digests(6000)
    before, after = ring(*SERVERS), ring(*SERVERS, "127.0.0.1:5004")
    moved = [k for k in keys if before.owner(k) != after.owner(k)]
    assert all(after.owner(k) == "127.0.0.1:5004" for k in moved)
    assert 0.18 < len(moved) / len(keys) < 0.32


def test_a_ring_refuses_no_members_duplicates_and_bad_weights() -> None:
    with pytest.raises(ValueError, match="at least one"):
        HashRing([])
    with pytest.raises(ValueError, match="distinct"):
        ring(SERVERS[0], SERVERS[0])
    with pytest.raises(ValueError, match="weight"):
        Member(SERVERS[0], weight=0)
