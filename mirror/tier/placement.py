"""Which replica holds a blob: the ring, this replica's place on it, and which peers are down."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

from yarl import URL

from mirror.clock import Clock
from mirror.oci.digest import Digest
from mirror.tier.haproxy_ring import HAProxyRing
from mirror.tier.ring import HashRing, Member, Ring

# Seconds a peer that failed to answer is passed over before it is tried again.
DOWN_FOR = 10.0
# The load balancers whose ring the replicas can compute (``tier.balancer``).
BALANCERS = ("nginx", "haproxy")


def server_of(url: str) -> str:
    """A replica URL's nginx ``server`` string: ``host:port`` (the scheme's port if none)."""
    parsed = URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host or parsed.path not in ("", "/"):
        raise ValueError(f"a replica URL is http(s)://host[:port], got {url!r}")
    host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
    return f"{host}:{parsed.port}"


def replica_entry(entry: str) -> tuple[str, int]:
    """A ``[tier] replicas`` entry, ``URL`` or ``URL weight=N``: its URL and weight."""
    url, _, rest = entry.strip().partition(" ")
    rest = rest.strip()
    if not rest:
        return url, 1
    name, _, value = rest.partition("=")
    if name != "weight" or not value.isdigit():
        raise ValueError(f"a replica is 'URL' or 'URL weight=N', got {entry!r}")
    return url, int(value)


def ring_members(replicas: Iterable[str]) -> list[Member]:
    """The ring members of ``[tier] replicas`` entries (``ValueError`` naming a bad one)."""
    members = []
    for entry in replicas:
        url, weight = replica_entry(entry)
        members.append(Member(server_of(url), weight))
    return members


def make_ring(balancer: str, members: Iterable[Member]) -> Ring:
    """The ring of load balancer ``balancer`` (one of :data:`BALANCERS`) over ``members``."""
    if balancer == "nginx":
        return HashRing(members)
    if balancer == "haproxy":
        return HAProxyRing(members)
    raise ValueError(f"a balancer is one of {', '.join(BALANCERS)}, got {balancer!r}")


class Placement:
    """The tier as one replica sees it: who owns a digest, and each peer's URL and health."""

    def __init__(
        self,
        replicas: Sequence[str],
        self_url: str,
        clock: Clock,
        *,
        down_for: float = DOWN_FOR,
        balancer: str = "nginx",
    ) -> None:
        urls = [replica_entry(entry)[0] for entry in replicas]
        self._urls = {server_of(url): URL(url.rstrip("/")) for url in urls}
        self.self_server = server_of(replica_entry(self_url)[0])
        if self.self_server not in self._urls:
            raise ValueError(f"this replica {self_url!r} is not one of the replicas")
        self.ring = make_ring(balancer, ring_members(replicas))
        self._clock = clock
        self._down_for = down_for
        self._down_until: dict[str, float] = {}

    def owner(self, digest: Digest | str) -> str:
        """The server that owns ``digest`` (nginx sends it there while all are up)."""
        return self.ring.owner(str(digest))

    def owns(self, digest: Digest | str) -> bool:
        """Whether this replica owns ``digest``."""
        return self.owner(digest) == self.self_server

    @property
    def servers(self) -> tuple[str, ...]:
        """Every replica's server string."""
        return tuple(self._urls)

    def url(self, server: str) -> URL:
        """The base URL of replica ``server``."""
        return self._urls[server]

    def chosen(self, digest: Digest | str, skip: Collection[str] = ()) -> str:
        """The replica that serves ``digest`` now: the first on its walk that is this replica,
        or is neither known to be down nor in ``skip`` (peers a caller found down)."""
        for server in self.ring.walk(str(digest)):
            if server == self.self_server or not (server in skip or self.is_down(server)):
                return server
        return self.self_server  # unreachable: this replica is on every walk

    def passed_over(self, digest: Digest | str, server: str) -> list[str]:
        """The replicas before ``server`` on the digest's walk: what a request to ``server``
        names as skipped (found down or tried), so that ``server`` serves it rather than
        sending the asker back to a replica only the asker knows is down."""
        before: list[str] = []
        for replica in self.ring.walk(str(digest)):
            if replica == server:
                break
            before.append(replica)
        return before

    def peer_for(self, digest: Digest | str, skip: Collection[str] = ()) -> str | None:
        """The peer to read ``digest`` from; ``None`` when this replica serves it itself (it
        owns it, or stands in for the owner and those before it on the walk, all down)."""
        server = self.chosen(digest, skip)
        return None if server == self.self_server else server

    def keeps(self, digest: Digest | str, *, cache_peer_blobs: bool) -> bool:
        """Whether a fill of ``digest`` here is cached: when this replica serves it itself, is
        the owner's stand-in (the next on the walk: where nginx sends it when the owner
        fails), or caches what it reads from peers."""
        if cache_peer_blobs or self.peer_for(digest) is None:
            return True
        walk = self.ring.walk(str(digest))
        return self.self_server in (next(walk), next(walk, None))

    def is_down(self, server: str) -> bool:
        """Whether ``server`` failed recently and is passed over for now."""
        return self._down_until.get(server, 0.0) > self._clock.monotonic()

    def mark_down(self, server: str) -> None:
        """``server`` did not answer: pass it over for a while."""
        self._down_until[server] = self._clock.monotonic() + self._down_for

    def mark_up(self, server: str) -> None:
        """``server`` answered."""
        self._down_until.pop(server, None)
