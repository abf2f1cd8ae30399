"""The rule-host allow-list and the connect-time address guard of tenancy-rule clients."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestServer

from mirror.errors import ErrorCode, RegistryError, UpstreamUnavailable
from mirror.upstream import UpstreamClient, UpstreamEndpoint
from mirror.upstream.addresses import HostPattern, RuleHosts, is_internal

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]


class HostsFile(AbstractResolver):
    """Answers names from a table, like /etc/hosts; a name may be re-pointed (rebinding)."""

    def __init__(self, table: dict[str, str]) -> None:
        self.table = table

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        address = self.table[host]
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("address", "internal"),
    [
        ("127.0.0.1", True),
        ("10.0.0.1", True),
        ("172.16.5.4", True),
        ("192.168.1.1", True),
        ("169.254.169.254", True),
        ("0.0.0.0", True),
        ("224.0.0.1", True),
        ("100.64.0.1", True),
        ("::1", True),
        ("fe80::1", True),
        ("fd00::1", True),
        ("::ffff:127.0.0.1", True),
        ("8.8.8.8", False),
        ("2606:4700::1111", False),
    ],
)
def test_internal_addresses(address: str, internal: bool) -> None:
    assert is_internal(address) is internal


@pytest.mark.parametrize(
    ("pattern", "host", "port", "matches"),
    [
        ("registry.example.com", "registry.example.com", 443, True),
        ("registry.example.com", "other.example.com", 443, False),
        ("127.0.0.1:5000", "127.0.0.1", 5000, True),
        ("127.0.0.1:5000", "127.0.0.1", 5001, False),
        ("*.example.com", "a.b.example.com", 443, True),
        ("*.example.com", "example.com", 443, False),
        ("*.example.com", "evilexample.com", 443, False),
        ("*", "anything.test", 80, True),
        ("[::1]:5000", "::1", 5000, True),
    ],
)
def test_host_patterns(pattern: str, host: str, port: int, matches: bool) -> None:
    assert HostPattern.parse(pattern).matches(host, port) is matches


@pytest.mark.parametrize("bad", ["", "http://x", "a/b", "x*.example.com", "*.*.x", "u@host"])
def test_malformed_patterns_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="pattern"):
        HostPattern.parse(bad)


async def test_admit_refuses_unlisted_and_internal_hosts() -> None:
    hosts = RuleHosts(["*", "127.0.0.1:5000"])
    await hosts.admit("http://127.0.0.1:5000")
    await hosts.admit("https://8.8.8.8")
    for url in ("http://127.0.0.1:5001", "http://169.254.169.254", "http://[::1]:5000"):
        with pytest.raises(RegistryError) as caught:
            await hosts.admit(url)
        assert caught.value.code is ErrorCode.DENIED
        assert caught.value.detail["field"] == "url"
    with pytest.raises(RegistryError):
        await RuleHosts(["*.example.com"]).admit("https://registry.other.org")


async def guarded_get(server: TestServer, hosts: RuleHosts, name: str) -> None:
    endpoint = UpstreamEndpoint(host="acme/up", url=f"http://{name}:{server.port}", retries=0)
    async with UpstreamClient(endpoint, guard=hosts) as client:
        await client.get_tags("team/app")


@pytest.fixture
async def counting(aiohttp_server: ServerFactory) -> tuple[TestServer, list[str]]:
    seen: list[str] = []

    async def tags(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.json_response({"name": "team/app", "tags": []})

    app = web.Application()
    app.router.add_get("/v2/{repo:.+}/tags/list", tags)
    return await aiohttp_server(app), seen


async def test_a_name_that_re_resolves_to_loopback_is_refused_on_connect(
    counting: tuple[TestServer, list[str]],
) -> None:
    server, seen = counting
    table = HostsFile({"registry.test": "8.8.8.8"})
    hosts = RuleHosts(["*"], resolver=table)
    await hosts.admit(f"http://registry.test:{server.port}")  # public when the rule is made
    table.table["registry.test"] = "127.0.0.1"  # ... and loopback when it is used

    with pytest.raises(UpstreamUnavailable, match="address not allowed"):
        await guarded_get(server, hosts, "registry.test")
    assert seen == []


async def test_an_ip_literal_to_loopback_is_refused_unless_listed(
    counting: tuple[TestServer, list[str]],
) -> None:
    server, seen = counting
    with pytest.raises(UpstreamUnavailable, match="address not allowed"):
        await guarded_get(server, RuleHosts(["*"]), "127.0.0.1")
    assert seen == []
    await guarded_get(server, RuleHosts([f"127.0.0.1:{server.port}"]), "127.0.0.1")
    assert seen == ["/v2/team/app/tags/list"]


async def test_a_listed_name_may_resolve_to_loopback(
    counting: tuple[TestServer, list[str]],
) -> None:
    server, seen = counting
    hosts = RuleHosts(["registry.test"], resolver=HostsFile({"registry.test": "127.0.0.1"}))
    await guarded_get(server, hosts, "registry.test")
    assert seen == ["/v2/team/app/tags/list"]
