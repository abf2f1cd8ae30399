"""HAProxy's ring as the replicas compute it: node layout, the failover walk, weights, and how
few keys move (its agreement with a real HAProxy is tests/integration/tier/test_ring_haproxy)."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest

from mirror.tier.haproxy_ring import (
    ID_RANGE,
    MAX_ID,
    NODES_PER_WEIGHT,
    HAProxyRing,
    full_hash,
    node_keys,
    server_id,
)
from mirror.tier.ring import Member

SERVERS = ("127.0.0.1:5001", "127.0.0.1:5002", "127.0.0.1:5003")


def digests(n: int) -> list[str]:
    """``n`` distinct blob digests."""
    return [f"sha256:{hashlib.sha256(str(i).encode()).hexdigest()}" for i in range(n)]


def ring(*servers: str) -> HAProxyRing:
    return HAProxyRing(Member(s) for s in servers)


def test_a_server_has_16_nodes_per_weight_keyed_by_its_id() -> None:
    member = Member(SERVERS[0], weight=3)
    keys = list(node_keys(member))
    base = server_id(SERVERS[0]) * ID_RANGE
    assert len(keys) == 3 * NODES_PER_WEIGHT
    assert keys == [full_hash(base + n) for n in range(3 * NODES_PER_WEIGHT)]
    assert all(1 <= server_id(s) <= MAX_ID for s in SERVERS)


def test_full_hash_stays_in_32_bits_and_spreads_consecutive_ids() -> None:
    values = [full_hash(i) for i in range(10_000)]
    assert all(0 <= v < 2**32 for v in values)
    assert len(set(values)) == len(values)
    assert len({v >> 28 for v in values}) == 16  # every sixteenth of the circle is used


def test_the_walk_starts_at_the_owner_and_names_each_server_once() -> None:
    tier = ring(*SERVERS)
    for key in digests(200):
        walk = list(tier.walk(key))
        assert walk[0] == tier.owner(key)
        assert sorted(walk) == sorted(SERVERS)


def test_removing_a_replica_moves_only_its_keys_to_the_next_of_their_walk() -> None:
    keys = digests(6000)
    before, after = ring(*SERVERS), ring(*SERVERS[:2])
    moved = [k for k in keys if before.owner(k) != after.owner(k)]
    assert all(before.owner(k) == SERVERS[2] for k in moved)
    assert all(after.owner(k) == list(before.walk(k))[1] for k in moved)
    assert 0.2 < len(moved) / len(keys) < 0.47


def test_weights_give_proportional_shares() -> None:
    weights = {SERVERS[0]: 4, SERVERS[1]: 1, SERVERS[2]: 2}
    tier = HAProxyRing(Member(s, w) for s, w in weights.items())
    share = Counter(tier.owner(k) for k in digests(7000))
    assert share[SERVERS[0]] > share[SERVERS[2]] > share[SERVERS[1]], share


def test_a_ring_refuses_no_members_and_duplicates() -> None:
    with pytest.raises(ValueError, match="at least one"):
        HAProxyRing([])
    with pytest.raises(ValueError, match="distinct"):
        ring(SERVERS[0], SERVERS[0])
