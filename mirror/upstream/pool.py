"""Upstream clients by key: the configured upstreams, plus clients made on demand for
tenancies' pull-through rules (each with the tenancy's own upstream credentials, and only to
the hosts the system administrator allows: see :mod:`mirror.upstream.addresses`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from mirror.upstream.addresses import RuleHosts
from mirror.upstream.client import UpstreamClient
from mirror.upstream.endpoint import UpstreamEndpoint

# Makes an unstarted client whose connections the given allow-list guards.
MakeClient = Callable[[UpstreamEndpoint, RuleHosts], UpstreamClient]


class UpstreamPool:
    """Looks clients up by key (an upstream host, or a rule's ``<tenancy>/<prefix>``).

    Fixed clients are started by their owner. Clients for rules are started by :meth:`ensure`,
    which replaces a client whose endpoint changed (the old one is closed in the background);
    ``rule_hosts`` is the allow-list of their hosts (none allowed by default).
    """

    def __init__(
        self,
        fixed: dict[str, UpstreamClient],
        make: MakeClient,
        rule_hosts: RuleHosts | None = None,
    ) -> None:
        self.rule_hosts = rule_hosts or RuleHosts(())
        self._fixed = fixed
        self._made: dict[str, UpstreamClient] = {}
        self._make = make
        self._retired: set[asyncio.Task[None]] = set()

    def get(self, key: str) -> UpstreamClient:
        """The client for ``key``; ``KeyError`` when it is neither fixed nor ensured."""
        client = self._fixed.get(key)
        return client if client is not None else self._made[key]

    async def ensure(self, endpoint: UpstreamEndpoint) -> UpstreamClient:
        """A started client for ``endpoint`` under the key ``endpoint.host``; ``DENIED`` when
        the allow-list does not (or no longer) admit a rule's host."""
        key = endpoint.host
        if key in self._fixed:
            return self._fixed[key]
        self.rule_hosts.require(endpoint.url)
        client = self._made.get(key)
        if client is not None and client.endpoint == endpoint:
            return client
        fresh = self._make(endpoint, self.rule_hosts)
        await fresh.start()
        self._made[key] = fresh
        if client is not None:
            self._retire(client)
        return fresh

    def forget(self, key: str) -> None:
        """Drop the made client of ``key`` (its rule is gone)."""
        client = self._made.pop(key, None)
        if client is not None:
            self._retire(client)

    def _retire(self, client: UpstreamClient) -> None:
        task = asyncio.ensure_future(client.close())
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)

    async def close(self) -> None:
        """Close the made clients (fixed ones belong to the caller)."""
        made, self._made = self._made, {}
        for client in made.values():
            await client.close()
        await asyncio.gather(*self._retired, return_exceptions=True)
