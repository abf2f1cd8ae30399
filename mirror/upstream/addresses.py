"""Which hosts tenancies' pull-through rules may reach, and the address check on every connect.

The system administrator lists the allowed hosts (``auth.rule_hosts``). A pattern is ``host``
(any port), ``host:port``, ``*.domain`` (any name under ``domain``) or ``*`` (any host). Internal
addresses (loopback, private, link-local, unspecified, multicast, reserved) are refused unless
the host is listed explicitly, by a pattern without ``*``: this is checked when the rule is
created and again on every connection (the resolver of rule clients refuses such answers, so a
name that re-resolves later, DNS rebinding, is caught too; an IP literal is checked before the
request is sent).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.client_middlewares import ClientHandlerType
from yarl import URL

from mirror.errors import ErrorCode, RegistryError
from mirror.upstream.hosts import HostPattern, is_internal, is_ip_literal

__all__ = ["AddressRefused", "HostPattern", "RuleHosts", "is_internal", "is_ip_literal"]


class AddressRefused(aiohttp.ClientOSError):
    """A rule client was about to connect to an internal address of a host not listed."""


def _host_of(url: URL) -> tuple[str, int | None]:
    """The lower-case host (IPv6 without brackets) and effective port of ``url``."""
    return (url.raw_host or "").lower().strip("[]").rstrip("."), url.port


class RuleHosts:
    """The allow-list of tenancy rules' upstream hosts, and their connect-time address guard.

    ``resolver`` is the resolver the guard wraps (aiohttp's default when None).
    """

    def __init__(
        self, patterns: Iterable[str], *, resolver: AbstractResolver | None = None
    ) -> None:
        self.patterns = tuple(HostPattern.parse(p) for p in patterns)
        self._resolver = resolver

    def allows(self, host: str, port: int | None) -> bool:
        """Whether some pattern admits ``host:port`` (public addresses only, unless listed)."""
        return any(p.matches(host, port) for p in self.patterns)

    def lists(self, host: str, port: int | None) -> bool:
        """Whether a pattern without ``*`` names ``host:port`` (internal addresses allowed)."""
        return any(p.explicit and p.matches(host, port) for p in self.patterns)

    def require(self, url: str | URL) -> None:
        """``DENIED`` when the rule URL's host is not on the allow-list."""
        try:
            host, port = _host_of(URL(url))
        except ValueError:
            host, port = "", None
        if not self.allows(host, port):
            raise RegistryError(
                ErrorCode.DENIED,
                "url: host not allowed for pull-through rules",
                detail={"field": "url", "host": host},
            )

    async def admit(self, url: str) -> None:
        """Refuse a new rule's URL (``DENIED``, naming the field) whose host is not allowed or
        resolves to an internal address without being listed. A name that does not resolve
        now is admitted: every connection is checked again."""
        self.require(url)
        host, port = _host_of(URL(url))
        if self.lists(host, port):
            return
        addresses = [host] if is_ip_literal(host) else await _lookup(host, port)
        if any(is_internal(a) for a in addresses):
            raise RegistryError(
                ErrorCode.DENIED,
                "url: host resolves to an internal address that is not listed",
                detail={"field": "url", "host": host},
            )

    def resolver(self) -> GuardedResolver:
        """A resolver for one rule client's connector (closed with it)."""
        return GuardedResolver(self, self._resolver or aiohttp.DefaultResolver())

    async def middleware(
        self, request: aiohttp.ClientRequest, handler: ClientHandlerType
    ) -> aiohttp.ClientResponse:
        """A client middleware refusing IP-literal URLs to internal addresses (the connector
        does not ask the resolver about literals); runs for every request and redirect."""
        host, port = _host_of(request.url)
        if is_ip_literal(host) and is_internal(host) and not self.lists(host, port):
            raise AddressRefused(None, "upstream address not allowed")
        return await handler(request)


class GuardedResolver(AbstractResolver):
    """Resolves through ``inner`` and refuses internal answers for hosts not listed."""

    def __init__(self, hosts: RuleHosts, inner: AbstractResolver) -> None:
        self._hosts = hosts
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The inner resolver's answer; ``AddressRefused`` if any address is internal."""
        found = await self._inner.resolve(host, port, family)
        name = host.lower().rstrip(".")
        if any(is_internal(r["host"]) for r in found) and not self._hosts.lists(name, port):
            raise AddressRefused(None, "upstream address not allowed")
        return found

    async def close(self) -> None:
        """Close the inner resolver."""
        await self._inner.close()


async def _lookup(host: str, port: int | None) -> list[str]:
    """The addresses ``host`` resolves to now (empty when it does not resolve)."""
    loop = asyncio.get_running_loop()
    try:
        infos: list[Any] = await loop.getaddrinfo(host, port or 0, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return [str(info[4][0]) for info in infos]


def refusal(exc: BaseException) -> AddressRefused | None:
    """The :class:`AddressRefused` behind a client error, if that is what it is."""
    if isinstance(exc, AddressRefused):
        return exc
    inner = getattr(exc, "os_error", None)
    return inner if isinstance(inner, AddressRefused) else None
