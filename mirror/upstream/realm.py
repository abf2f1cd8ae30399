"""The trust boundary of an upstream's token realm (the ``realm`` of a Bearer challenge).

An upstream names the URL we fetch tokens from, so a hostile one could aim us anywhere. A realm
is followed only when it is https (or http when the upstream itself is http), on the upstream's
port (or both on their scheme's default port), and on the upstream's host or its registrable
domain. Without a public-suffix list the domain is approximated: when the upstream host is a
name of three labels or more, its parent domain (``docker.io`` for ``registry-1.docker.io``)
and any name under it count (``auth.docker.io``). An IP-literal or two-label upstream trusts
only its own host.
"""

from __future__ import annotations

from yarl import URL

from mirror.upstream.addresses import is_ip_literal


def trust_domain(host: str) -> str | None:
    """The parent domain that an upstream ``host``'s realms may use, or None."""
    if is_ip_literal(host):
        return None
    labels = host.rstrip(".").split(".")
    return ".".join(labels[1:]) if len(labels) >= 3 else None


def realm_allowed(upstream: URL, realm: URL) -> bool:
    """Whether a token ``realm`` lies within the trust boundary of the ``upstream`` base URL."""
    if realm.scheme != "https" and not (realm.scheme == "http" and upstream.scheme == "http"):
        return False
    host = (realm.raw_host or "").lower().rstrip(".")
    own = (upstream.raw_host or "").lower().rstrip(".")
    default_ports = realm.explicit_port is None and upstream.explicit_port is None
    if not host or (realm.port != upstream.port and not default_ports):
        return False
    if host == own:
        return True
    domain = trust_domain(own)
    return domain is not None and (host == domain or host.endswith("." + domain))
