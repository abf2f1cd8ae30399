"""Host names and addresses as the upstream allow-list sees them (pure: no network client), so
the configuration can parse ``auth.rule_hosts`` without loading aiohttp."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from yarl import URL


def is_internal(address: str) -> bool:
    """Whether ``address`` (an IP literal) is not a public unicast address."""
    try:
        ip = ipaddress.ip_address(address.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (
        not ip.is_global
        or ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_unspecified
        or ip.is_multicast
        or ip.is_reserved
    )


def is_ip_literal(host: str) -> bool:
    """Whether ``host`` is an IPv4 or IPv6 address rather than a name."""
    try:
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class HostPattern:
    """One allow-list entry: ``host``, ``host:port``, ``*.domain`` or ``*``."""

    host: str
    port: int | None

    @classmethod
    def parse(cls, text: str) -> HostPattern:
        """The pattern of ``text``; ``ValueError`` saying what is wrong."""
        value = text.strip().lower()
        if value == "*":
            return cls("*", None)
        try:
            url = URL(f"http://{value}")
            host, port = url.raw_host, url.explicit_port
        except ValueError:
            raise ValueError(f"not a host or host:port pattern: {text!r}") from None
        if (
            not host
            or url.raw_path not in ("", "/")
            or url.user is not None
            or url.query_string
            or ("*" in host and not (host.startswith("*.") and "*" not in host[2:]))
        ):
            raise ValueError(f"not a host or host:port pattern: {text!r}")
        return cls(host, port)

    @property
    def explicit(self) -> bool:
        """Whether the pattern names one host (no ``*``)."""
        return "*" not in self.host

    def matches(self, host: str, port: int | None) -> bool:
        """Whether ``host`` (lower-case, IPv6 without brackets) and ``port`` fit the pattern."""
        if self.port is not None and self.port != port:
            return False
        if self.host == "*":
            return True
        if self.host.startswith("*."):
            return host.endswith(self.host[1:]) and not is_ip_literal(host)
        return host == self.host
