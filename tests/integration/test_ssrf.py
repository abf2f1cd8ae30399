"""Tenancies' pull-through rules cannot aim the mirror at places the system administrator did
not allow (SSRF): rule hosts come from ``auth.rule_hosts``, internal addresses only when listed,
token realms stay within the upstream's trust boundary, and upstream text is not read back."""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from mirror.db.identity.records import PullThroughRule

from .conftest import AuthMirror, AuthMirrorFactory

pytestmark = pytest.mark.integration

ServerFactory = Callable[..., Awaitable[TestServer]]
SECRET = "SECRET-INTERNAL-TEXT"


def basic(login: str, token: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{login}:{token}".encode()).decode()}


@dataclass
class Upstream:
    """An in-process registry whose tag list answers as ``mode`` says; counts its requests."""

    mode: str = "ok"
    realm: str = ""
    requests: list[str] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(request.path)
        if request.path == "/token":
            return web.json_response(
                {"errors": [{"code": "UNAUTHORIZED", "message": SECRET}]}, status=401
            )
        if self.mode == "ok":
            return web.json_response({"name": "x", "tags": ["v1"]})
        if self.mode == "500":
            return web.Response(status=500, text=SECRET)
        if self.mode == "403":
            body = {"errors": [{"code": "DENIED", "message": SECRET}]}
            return web.json_response(body, status=403)
        challenge = f'Bearer realm="{self.realm}",service="s"'
        return web.json_response(
            {"errors": [{"code": "UNAUTHORIZED", "message": SECRET}]},
            status=401,
            headers={"WWW-Authenticate": challenge},
        )


async def call(
    method: str, url: str, headers: dict[str, str], body: Any = None
) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as http:
        async with http.request(method, url, headers=headers, json=body) as resp:
            return resp.status, await resp.read()


async def create_rule(mirror: AuthMirror, url: str) -> tuple[int, bytes]:
    """POST a rule ``up`` to ``url`` in tenancy ``acme`` as the system administrator."""
    if mirror.identity.tenancy("acme") is None:
        mirror.identity.create_tenancy("acme", 0)
    return await call(
        "POST",
        f"{mirror.url}/admin/v1/tenancies/acme/rules",
        basic("admin/admin", mirror.admin_token),
        {"prefix": "up", "url": url},
    )


async def tags_through_rule(mirror: AuthMirror, url: str) -> tuple[int, bytes]:
    """Store rule ``acme/up`` to ``url`` and list a repository's tags through it as a reader."""
    mirror.identity.create_tenancy("acme", 0)
    mirror.identity.create_rule(PullThroughRule("acme", "up", url))
    reader = mirror.user("acme", "alice", policy=["allow any-user to read repos in tenancy"])
    return await call("GET", f"{mirror.url}/v2/acme/up/team/app/tags/list", basic(*reader))


def code_of(body: bytes) -> str:
    return str(json.loads(body)["errors"][0]["code"])


@pytest.fixture
async def upstream(aiohttp_server: ServerFactory) -> tuple[Upstream, TestServer]:
    registry = Upstream()
    return registry, await aiohttp_server(registry.app(), host="127.0.0.1")


INTERNAL = ["own-admin-api", "http://169.254.169.254", "http://10.0.0.1:5000", "localhost"]


# An unlisted public name ("other") is refused by a list of hosts; "*" is what admits it.
@pytest.mark.parametrize(
    ("target", "wildcard"),
    [
        *((t, False) for t in [*INTERNAL, "other"]),
        *((t, True) for t in INTERNAL),
    ],
    ids=[
        *(f"{t}-listed-hosts" for t in [*INTERNAL, "other"]),
        *(f"{t}-any-public-host" for t in INTERNAL),
    ],
)
async def test_rules_to_internal_or_unlisted_hosts_are_refused(
    auth_mirror_factory: AuthMirrorFactory,
    upstream: tuple[Upstream, TestServer],
    target: str,
    wildcard: bool,
) -> None:
    registry, server = upstream
    allowed = [f"127.0.0.1:{server.port}", *(["*"] if wildcard else [])]
    mirror = await auth_mirror_factory({"up.test": "http://up.test"}, rule_hosts=allowed)
    url = {
        "own-admin-api": f"http://127.0.0.1:{mirror.mirror.server.port}",
        "localhost": f"http://localhost:{server.port}",
        "other": "https://registry.example.com",
    }.get(target, target)
    status, body = await create_rule(mirror, url)

    assert status == 403, body
    error = json.loads(body)["errors"][0]
    assert error["code"] == "DENIED" and error["detail"]["field"] == "url"
    assert mirror.identity.rule("acme", "up") is None
    assert registry.requests == []


async def test_a_listed_host_works(
    auth_mirror_factory: AuthMirrorFactory, upstream: tuple[Upstream, TestServer]
) -> None:
    registry, server = upstream
    url = f"http://127.0.0.1:{server.port}"
    mirror = await auth_mirror_factory({"up.test": "http://up.test"}, rule_hosts=["127.0.0.1"])

    created, _ = await create_rule(mirror, url)
    mirror.identity.delete_rule("acme", "up")
    mirror.identity.delete_tenancy("acme")
    status, body = await tags_through_rule(mirror, url)

    assert created == 201
    assert (status, json.loads(body)["tags"]) == (200, ["v1"])
    assert registry.requests == ["/v2/team/app/tags/list"]


async def test_a_stored_rule_whose_host_is_no_longer_allowed_is_not_used(
    auth_mirror_factory: AuthMirrorFactory, upstream: tuple[Upstream, TestServer]
) -> None:
    registry, server = upstream
    mirror = await auth_mirror_factory({"up.test": "http://up.test"}, rule_hosts=["*.example"])

    status, body = await tags_through_rule(mirror, f"http://127.0.0.1:{server.port}")

    assert (status, code_of(body)) == (403, "DENIED")
    assert registry.requests == []


async def test_a_realm_on_another_host_is_refused_and_never_requested(
    auth_mirror_factory: AuthMirrorFactory,
    upstream: tuple[Upstream, TestServer],
    aiohttp_server: ServerFactory,
) -> None:
    registry, server = upstream
    elsewhere = Upstream()
    other = await aiohttp_server(elsewhere.app(), host="127.0.0.1")
    registry.mode, registry.realm = "realm", f"http://127.0.0.1:{other.port}/token"
    mirror = await auth_mirror_factory({"up.test": "http://up.test"}, rule_hosts=["127.0.0.1"])

    status, body = await tags_through_rule(mirror, f"http://127.0.0.1:{server.port}")

    assert (status, code_of(body)) == (503, "UNAVAILABLE")
    assert elsewhere.requests == []
    assert SECRET not in body.decode()


@pytest.mark.parametrize("mode", ["500", "403", "token-401"])
async def test_upstream_error_text_does_not_reach_the_client(
    auth_mirror_factory: AuthMirrorFactory, upstream: tuple[Upstream, TestServer], mode: str
) -> None:
    registry, server = upstream
    registry.mode = "realm" if mode == "token-401" else mode
    registry.realm = f"http://127.0.0.1:{server.port}/token"  # same origin: followed
    mirror = await auth_mirror_factory({"up.test": "http://up.test"}, rule_hosts=["127.0.0.1"])

    status, body = await tags_through_rule(mirror, f"http://127.0.0.1:{server.port}")

    assert status in (401, 403, 503)
    assert json.loads(body)["errors"][0]["code"] in ("UNAUTHORIZED", "DENIED", "UNAVAILABLE")
    assert SECRET not in body.decode()
    if mode == "token-401":
        assert "/token" in registry.requests
