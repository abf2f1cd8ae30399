"""Placement: which replica serves a digest as peers go down, and what a replica caches."""

from __future__ import annotations

import hashlib

import pytest

from mirror.clock import ManualClock
from mirror.tier.placement import Placement, server_of

URLS = ("http://127.0.0.1:5001", "http://127.0.0.1:5002", "http://127.0.0.1:5003")
SERVERS = tuple(server_of(u) for u in URLS)
DIGESTS = [f"sha256:{hashlib.sha256(str(i).encode()).hexdigest()}" for i in range(300)]


def placement(self_url: str, clock: ManualClock | None = None) -> Placement:
    return Placement(URLS, self_url, clock or ManualClock(), down_for=10.0)


@pytest.mark.parametrize(
    ("url", "server"),
    [
        ("http://127.0.0.1:5001", "127.0.0.1:5001"),
        ("http://mirror-0.mirror:5016/", "mirror-0.mirror:5016"),
        ("https://replica.example", "replica.example:443"),
        ("http://replica.example", "replica.example:80"),
        ("http://[::1]:5000", "[::1]:5000"),
    ],
    ids=["ipv4", "trailing-slash", "https-default-port", "http-default-port", "ipv6"],
)
def test_a_replica_url_is_named_by_its_nginx_server_string(url: str, server: str) -> None:
    assert server_of(url) == server


@pytest.mark.parametrize("url", ["ftp://x:1", "http://x:1/mirror", "127.0.0.1:5001"])
def test_a_replica_url_with_a_path_or_other_scheme_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="replica URL"):
        server_of(url)


def test_every_replica_agrees_on_the_owner_and_exactly_one_owns_each_digest() -> None:
    views = [placement(u) for u in URLS]
    for digest in DIGESTS:
        assert len({view.owner(digest) for view in views}) == 1
        assert sum(view.owns(digest) for view in views) == 1


def test_a_replica_reads_from_the_owner_unless_it_owns_the_digest() -> None:
    view = placement(URLS[0])
    for digest in DIGESTS:
        owner = view.owner(digest)
        assert view.peer_for(digest) == (None if owner == SERVERS[0] else owner)


def test_with_the_owner_down_the_next_replica_on_the_walk_serves_and_then_the_owner_again() -> None:
    clock = ManualClock()
    view = placement(URLS[0], clock)
    foreign = [d for d in DIGESTS if not view.owns(d)]
    owner = view.owner(foreign[0])
    view.mark_down(owner)
    for digest in (d for d in foreign if view.owner(d) == owner):
        stand_in = next(s for s in view.ring.walk(digest) if s != owner)
        assert view.peer_for(digest) == (None if stand_in == SERVERS[0] else stand_in)
    clock.advance(10.1)
    assert view.peer_for(foreign[0]) == owner


def test_a_peer_request_skipping_a_down_owner_is_served_by_the_stand_in() -> None:
    for digest in DIGESTS[:50]:
        walk = list(placement(URLS[0]).ring.walk(digest))
        stand_in = placement(f"http://{walk[1]}")
        assert stand_in.chosen(digest) == walk[0]
        assert stand_in.chosen(digest, skip=[walk[0]]) == walk[1]


def test_a_replica_caches_what_it_serves_or_stands_in_for_not_what_it_relays() -> None:
    for url in URLS:
        view = placement(url)
        for digest in DIGESTS:
            walk = list(view.ring.walk(digest))
            relays = view.self_server == walk[2]
            assert view.keeps(digest, cache_peer_blobs=False) is not relays
            assert view.keeps(digest, cache_peer_blobs=True)


def test_this_replica_must_be_one_of_the_replicas() -> None:
    with pytest.raises(ValueError, match="not one of the replicas"):
        placement("http://127.0.0.1:5009")
