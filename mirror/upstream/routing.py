"""Which upstream a request goes to: containerd's ``?ns=``, a host path prefix, or the default.

A name that selects no configured upstream is answered with a fast 404 (``NAME_UNKNOWN``) so
containerd falls back to the origin; the mirror is never an open proxy to arbitrary hosts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mirror.errors import ErrorCode, RegistryError
from mirror.oci.names import validate_name


@dataclass(frozen=True, slots=True)
class Route:
    """One upstream as the router sees it."""

    host: str
    aliases: tuple[str, ...] = ()
    library_prefix: bool = False


@dataclass(frozen=True, slots=True)
class Target:
    """A resolved request: the upstream (by canonical host) and the upstream-side repository."""

    upstream: str
    repo: str
    # The name as the client sent it (what the catalog and tags list answer with).
    name: str


class Router:
    """Resolves ``(name, ns)`` pairs to targets."""

    def __init__(self, routes: Iterable[Route], default: str | None) -> None:
        self._by_host: dict[str, Route] = {}
        for route in routes:
            for host in (route.host, *route.aliases):
                self._by_host[host] = route
        self._default = self._by_host[default] if default else None

    def resolve(self, name: str, ns: str | None) -> Target:
        """Resolve a request path's repository name and optional ``ns`` query parameter."""
        if ns is not None:
            validate_name(name)
            route = self._by_host.get(ns)
            if route is None:
                raise RegistryError(
                    ErrorCode.NAME_UNKNOWN, "namespace not mirrored here", detail={"ns": ns}
                )
            return Target(route.host, self._repo(route, name), name)
        first, sep, rest = name.partition("/")
        route = self._by_host.get(first) if sep else None
        if route is not None:
            return Target(route.host, self._repo(route, validate_name(rest)), name)
        validate_name(name)
        if self._default is None:
            raise RegistryError(
                ErrorCode.NAME_UNKNOWN, "no upstream for this name", detail={"name": name}
            )
        return Target(self._default.host, self._repo(self._default, name), name)

    @staticmethod
    def _repo(route: Route, repo: str) -> str:
        if route.library_prefix and "/" not in repo:
            return f"library/{repo}"
        return repo

    def hosts(self) -> tuple[str, ...]:
        """The canonical host of every route, in configuration order."""
        return tuple(dict.fromkeys(route.host for route in self._by_host.values()))

    def is_default(self, host: str) -> bool:
        """Whether ``host`` is the default upstream (the one bare names go to)."""
        return self._default is not None and self._default.host == host
