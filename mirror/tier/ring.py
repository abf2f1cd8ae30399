"""The consistent-hash ring of nginx's ``hash $key consistent``, so replicas agree with it.

nginx (``ngx_http_upstream_hash_module.c``, ``ngx_http_upstream_update_chash``) gives every
server ``160 * weight`` points: with ``base = crc32(HOST "\\0" PORT)`` continued over the
previous point as 4 little-endian bytes (the first point continues over ``0``), the points
are ``crc32`` values, sorted, duplicates dropped. A key hashes to ``crc32(key)`` and belongs
to the first point at or above it (wrapping to the first point). When that server is down
nginx walks on point by point, skipping servers it tried, which is :meth:`HashRing.walk`.

``HOST`` and ``PORT`` are split from the server string as written in nginx's ``server``
directive at its last ``:`` followed only by digits (``127.0.0.1:5001`` → ``127.0.0.1``,
``5001``); without one the whole string is the host and the port is empty.

This is not libketama (md5): nginx's ``consistent`` is compatible with Cache::Memcached::Fast.
"""

from __future__ import annotations

import bisect
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

POINTS_PER_WEIGHT = 160
# A weight is a server's share of the ring: nginx takes any, HAProxy at most 256.
MAX_WEIGHT = 256


@dataclass(frozen=True, slots=True)
class Member:
    """One server of the ring: its nginx server string (``host:port``) and weight."""

    server: str
    weight: int = 1

    def __post_init__(self) -> None:
        if not self.server:
            raise ValueError("a ring member needs a server string")
        if not 1 <= self.weight <= MAX_WEIGHT:
            raise ValueError(f"ring member {self.server!r}: weight must be 1 to {MAX_WEIGHT}")


class Ring(Protocol):
    """A load balancer's consistent-hash ring as the replicas compute it."""

    @property
    def members(self) -> tuple[Member, ...]:
        """The servers with their weights, in configuration order."""
        ...

    def owner(self, key: str) -> str:
        """The server the load balancer sends ``key`` to while every server is up."""
        ...

    def walk(self, key: str) -> Iterator[str]:
        """Every server, in the order the load balancer picks them for ``key`` as servers
        before them on the walk go down (the owner first)."""
        ...


def split_server(server: str) -> tuple[bytes, bytes]:
    """``(host, port)`` as nginx splits a ``server`` string for hashing."""
    raw = server.encode()
    if raw[:5].lower() == b"unix:":
        return raw[5:], b""
    head, sep, tail = raw.rpartition(b":")
    if sep and tail.isdigit():
        return head, tail
    if sep and not tail:
        return head, b""
    return raw, b""


def member_points(member: Member) -> Iterator[int]:
    """The ring points nginx gives ``member``, in generation order."""
    host, port = split_server(member.server)
    base = host + b"\0" + port
    previous = 0
    for _ in range(POINTS_PER_WEIGHT * member.weight):
        point = zlib.crc32(base + struct.pack("<I", previous))
        yield point
        previous = point


def key_hash(key: str) -> int:
    """Where ``key`` falls on the ring: ``crc32`` of its bytes."""
    return zlib.crc32(key.encode())


def distinct_members(members: Iterable[Member]) -> tuple[Member, ...]:
    """``members`` as a tuple; ``ValueError`` when empty or when a server is listed twice."""
    listed = tuple(members)
    if not listed:
        raise ValueError("a ring needs at least one member")
    names = [m.server for m in listed]
    if len(set(names)) != len(names):
        raise ValueError(f"ring members must be distinct: {names}")
    return listed


class HashRing:
    """Servers on nginx's consistent-hash ring; ``owner`` and ``walk`` answer as nginx does."""

    def __init__(self, members: Iterable[Member]) -> None:
        self.members = distinct_members(members)
        points: dict[int, str] = {}
        for member in self.members:
            for point in member_points(member):
                # nginx keeps one of two equal points (qsort is not stable); a tie between two
                # servers is a ~1e-5 chance with three replicas, and both sides keep the first.
                points.setdefault(point, member.server)
        self._hashes = sorted(points)
        self._servers = [points[h] for h in self._hashes]

    @property
    def servers(self) -> tuple[str, ...]:
        """The members' server strings, in configuration order."""
        return tuple(m.server for m in self.members)

    def owner(self, key: str) -> str:
        """The server nginx sends ``key`` to while every server is up."""
        return self._servers[self._index(key)]

    def walk(self, key: str) -> Iterator[str]:
        """Every server in the order nginx tries them for ``key`` (owner first, then the next
        distinct server on the ring, and so on)."""
        start = self._index(key)
        seen: set[str] = set()
        for step in range(len(self._servers)):
            server = self._servers[(start + step) % len(self._servers)]
            if server not in seen:
                seen.add(server)
                yield server
                if len(seen) == len(self.members):
                    return

    def _index(self, key: str) -> int:
        return bisect.bisect_left(self._hashes, key_hash(key)) % len(self._hashes)
