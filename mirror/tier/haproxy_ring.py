"""The consistent-hash ring of HAProxy's ``hash-type consistent``, so replicas agree with it.

HAProxy 2.6 (``src/lb_chash.c``, ``chash_init_server_tree``) gives a server of weight ``w``
``16 * w`` nodes (``BE_WEIGHT_SCALE``) whose keys are ``full_hash(id * 4096 + n)``, ``n`` from
0, ``id`` the server's ``id`` and ``full_hash`` Bob Jenkins' 32-bit integer hash
(``include/haproxy/intops.h``). With ``hash-type consistent crc32`` a key hashes to
``crc32(key)``, as in nginx. ``chash_get_server_hash`` looks up the first node at or above the
hash (wrapping) and the node before it, and takes the *closer* of the two (the one before on
a tie); a server that is down has no nodes in the tree, so the next pick is the closest node
among the servers still up, which is :meth:`HAProxyRing.walk`.

HAProxy numbers servers in the order of the configuration unless each has an ``id``: the
generated configuration gives each server the id :func:`server_id` derives from its server
string, so the order of ``[tier] replicas`` does not matter, as with nginx.
"""

from __future__ import annotations

import bisect
import zlib
from collections.abc import Collection, Iterable, Iterator

from mirror.tier.ring import Member, distinct_members, key_hash

NODES_PER_WEIGHT = 16  # BE_WEIGHT_SCALE
ID_RANGE = 4096  # SRV_EWGHT_RANGE: node keys of consecutive ids never overlap
# Ids stay below 2**19 so that id * 4096 + node fits HAProxy's signed int.
MAX_ID = 2**19 - 1
_MASK = 0xFFFFFFFF


def full_hash(a: int) -> int:
    """HAProxy's ``full_hash``: Bob Jenkins' full-avalanche hash of a 32-bit integer, times
    a large prime."""
    a &= _MASK
    a = ((a + 0x7ED55D16) + (a << 12)) & _MASK
    a = ((a ^ 0xC761C23C) ^ (a >> 19)) & _MASK
    a = ((a + 0x165667B1) + (a << 5)) & _MASK
    a = ((a + 0xD3A2646C) ^ (a << 9)) & _MASK
    a = ((a + 0xFD7046C5) + (a << 3)) & _MASK
    a = ((a ^ 0xB55A4F09) ^ (a >> 16)) & _MASK
    return (a * 3221225473) & _MASK


def server_id(server: str) -> int:
    """The HAProxy ``id`` of ``server`` in the generated configuration (from its string)."""
    return 1 + zlib.crc32(server.encode()) % MAX_ID


def node_keys(member: Member) -> Iterator[int]:
    """The tree keys HAProxy gives ``member``."""
    base = server_id(member.server) * ID_RANGE
    for node in range(NODES_PER_WEIGHT * member.weight):
        yield full_hash(base + node)


class HAProxyRing:
    """Servers on HAProxy's consistent-hash tree; ``owner`` and ``walk`` answer as it does."""

    def __init__(self, members: Iterable[Member]) -> None:
        self.members = distinct_members(members)
        ids: dict[int, str] = {}
        for member in self.members:
            taken = ids.setdefault(server_id(member.server), member.server)
            if taken != member.server:
                raise ValueError(
                    f"ring members {taken!r} and {member.server!r} get the same HAProxy id"
                )
        nodes = sorted((key, m.server) for m in self.members for key in node_keys(m))
        self._keys = [key for key, _ in nodes]
        self._servers = [server for _, server in nodes]

    @property
    def servers(self) -> tuple[str, ...]:
        """The members' server strings, in configuration order."""
        return tuple(m.server for m in self.members)

    def owner(self, key: str) -> str:
        """The server HAProxy sends ``key`` to while every server is up."""
        return self._closest(key_hash(key), ())

    def walk(self, key: str) -> Iterator[str]:
        """Every server in the order HAProxy picks them for ``key`` as the ones before go
        down (marked down by their health checks)."""
        point = key_hash(key)
        down: list[str] = []
        for _ in self.members:
            server = self._closest(point, down)
            yield server
            down.append(server)

    def _closest(self, point: int, down: Collection[str]) -> str:
        """The server of the node closest to ``point`` among the servers not ``down``."""
        count = len(self._keys)
        start = bisect.bisect_left(self._keys, point)
        after = next(
            (start + i) % count
            for i in range(count)
            if self._servers[(start + i) % count] not in down
        )
        before = next(
            (after - i) % count
            for i in range(1, count + 1)
            if self._servers[(after - i) % count] not in down
        )
        distance_before = (point - self._keys[before]) & _MASK
        distance_after = (self._keys[after] - point) & _MASK
        return self._servers[before if distance_before <= distance_after else after]
