"""The admin API driven through ``mirror admin ...``, and the first-start bootstrap."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mirror.cli.main import main
from tests.peers.factory import ImageFactory

from .conftest import AuthMirror, AuthMirrorFactory
from .test_auth_tokens import basic

pytestmark = pytest.mark.integration


class Admin:
    """Runs ``mirror admin`` against a mirror as one user and returns (status, JSON)."""

    def __init__(self, mirror: AuthMirror, capsys: Any, monkeypatch: Any) -> None:
        self.mirror = mirror
        self.capsys = capsys
        self.monkeypatch = monkeypatch

    async def __call__(self, *argv: str, user: str = "admin/admin", token: str = "") -> Any:
        self.monkeypatch.setenv("MIRROR_TOKEN", token or self.mirror.admin_token)
        self.capsys.readouterr()
        args = ["admin", "--url", self.mirror.url, "--user", user, *argv]
        status = await asyncio.to_thread(main, args)
        out = self.capsys.readouterr()
        return status, json.loads(out.out or out.err)


@pytest.fixture
def admin(auth_mirror: AuthMirror, capsys: Any, monkeypatch: Any) -> Admin:
    return Admin(auth_mirror, capsys, monkeypatch)


async def test_identity_lifecycle(admin: Admin, auth_mirror: AuthMirror) -> None:
    assert (await admin("tenancy", "create", "acme"))[0] == 0
    assert (await admin("group", "create", "acme", "viewers"))[0] == 0
    status, user = await admin("user", "create", "acme", "alice", "--group", "viewers")
    assert (status, user) == (0, {"name": "alice", "groups": ["viewers"]})

    status, created = await admin("token", "create", "acme", "alice", "--description", "laptop")
    assert status == 0, created
    assert created["token"].startswith("mrt_") and created["active"]
    assert (await admin("token", "create", "acme", "alice"))[0] == 0
    status, third = await admin("token", "create", "acme", "alice")
    assert status == 1 and third["errors"][0]["code"] == "LIMIT_EXCEEDED"

    # alice manages her own tokens, but nothing else.
    alice = {"user": "acme/alice", "token": created["token"]}
    status, listed = await admin("token", "list", "acme", "alice", **alice)
    tokens = {t["description"]: t for t in listed["tokens"]}
    assert status == 0 and sorted(tokens) == ["", "laptop"]
    assert all("token" not in t for t in listed["tokens"])
    assert tokens["laptop"]["last_used_at"] == auth_mirror.mirror.clock.now()
    status, denied = await admin("tenancy", "create", "evil", **alice)
    assert status == 1 and denied["errors"][0]["code"] == "DENIED"
    status, denied = await admin("user", "list", "acme", **alice)
    assert status == 1 and denied["errors"][0]["code"] == "DENIED"

    second = tokens[""]["id"]
    status, revoked = await admin("token", "revoke", "acme", "alice", second)
    assert status == 0 and revoked["active"] is False
    assert (await admin("token", "create", "acme", "alice"))[0] == 0

    assert (await admin("group", "remove", "acme", "viewers", "alice"))[0] == 0
    status, groups = await admin("group", "list", "acme")
    assert {g["name"]: g["members"] for g in groups["groups"]} == {
        "administrators": [],
        "viewers": [],
    }
    assert (await admin("user", "delete", "acme", "alice"))[0] == 0
    status, gone = await admin("token", "list", "acme", "alice", **alice)
    assert status == 1 and gone["errors"][0]["code"] == "UNAUTHORIZED"
    assert (await admin("tenancy", "delete", "acme"))[0] == 0
    assert (await admin("tenancy", "list"))[1] == {"tenancies": ["admin", "nodes"]}


async def test_policies_are_all_or_nothing(admin: Admin) -> None:
    await admin("tenancy", "create", "acme")
    good = "allow group viewers to inspect repos in tenancy"
    assert (await admin("policy", "set", "acme", "p", good))[0] == 0

    status, refused = await admin(
        "policy", "set", "acme", "p", good, "allow group managers to fly repos in tenancy"
    )

    assert status == 1
    error = refused["errors"][0]
    assert error["code"] == "POLICY_INVALID"
    assert error["message"] == (
        "statement 2, column 25: expected a verb (inspect, read, use or manage), found 'fly'"
    )
    assert error["detail"] == {
        "statement": 1,
        "column": 25,
        "expected": "a verb (inspect, read, use or manage)",
        "found": "'fly'",
    }
    assert (await admin("policy", "list", "acme"))[1] == {
        "policies": [{"name": "p", "statements": [good]}]
    }


async def test_repositories_and_rules(
    admin: Admin, auth_mirror: AuthMirror, image_factory: ImageFactory
) -> None:
    image = image_factory.push("v1", layers=1, layer_size=1024)
    await admin("tenancy", "create", "acme")
    status, rule = await admin("rule", "create", "acme", "up", image.registry.url)
    assert status == 0 and rule["prefix"] == "up" and rule["has_password"] is False
    name = f"up/{image.repo}"
    assert (await admin("repo", "create", "acme", name, "--public"))[1] == {
        "name": name,
        "public": True,
    }
    path = f"{auth_mirror.url}/v2/acme/{name}/manifests/v1"
    assert await anonymous_status(path) == 200

    assert (await admin("repo", "private", "acme", name))[1]["public"] is False
    assert await anonymous_status(path) == 401
    assert (await admin("repo", "list", "acme"))[1]["repositories"][0]["name"] == name
    assert (await admin("repo", "delete", "acme", name))[0] == 0
    assert (await admin("rule", "delete", "acme", "up"))[0] == 0
    status, missing = await admin("rule", "delete", "acme", "up")
    assert status == 1 and missing["errors"][0]["code"] == "RESOURCE_UNKNOWN"


async def anonymous_status(url: str) -> int:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.get(url) as resp:
            return resp.status


async def test_bootstrap_announces_the_first_administrator_once(
    auth_mirror_factory: AuthMirrorFactory, upstream_registry: Any, tmp_path: Path
) -> None:
    upstreams = {upstream_registry.host: upstream_registry.url}
    first = await auth_mirror_factory(upstreams)
    assert len(first.announcements) == 1
    assert first.announcements[0].startswith(
        "mirror: created the initial administrator admin/admin"
    )
    store = first.identity
    assert store.groups_of("admin", "admin") == frozenset({"administrators"})
    assert store.tokens("admin", "admin")[0].hash.digest not in first.announcements[0].encode()


async def test_retention_admin_api_needs_a_system_administrator(
    auth_mirror_factory: AuthMirrorFactory, upstream_registry: Any
) -> None:
    auth = await auth_mirror_factory({upstream_registry.host: upstream_registry.url})
    viewer = auth.user("acme", "viewer")
    url = f"{auth.url}/admin/v1/retention/policies"
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as resp:
            assert resp.status == 401
        async with http.get(url, headers=basic(*viewer)) as resp:
            assert resp.status == 403
            assert (await resp.json())["errors"][0]["code"] == "DENIED"
        async with http.get(url, headers=basic("admin/admin", auth.admin_token)) as resp:
            assert resp.status == 200
            assert "global" in {p["name"] for p in (await resp.json())["policies"]}


@pytest.mark.parametrize(
    ("method", "path", "body", "message"),
    [
        pytest.param(
            "PUT",
            "/policies/p",
            {"statements": "allow any-user to read repos in tenancy"},
            "statements: expected a list of strings",
            id="statements-not-a-list",
        ),
        pytest.param(
            "PUT",
            "/policies/p",
            {"statements": ["allow any-user to read repos in tenancy", 7]},
            "statements: expected a list of strings",
            id="statement-not-a-string",
        ),
        pytest.param(
            "POST",
            "/users/bob/tokens",
            {"description": 7},
            "description: at most 256 characters",
            id="description-not-a-string",
        ),
        pytest.param(
            "POST",
            "/users/bob/tokens",
            {"description": "x" * 257},
            "description: at most 256 characters",
            id="description-too-long",
        ),
        pytest.param(
            "POST",
            "/rules",
            {"prefix": "up", "url": "https://registry.test", "username": 7},
            "username: expected a string",
            id="rule-username-not-a-string",
        ),
        pytest.param(
            "POST",
            "/rules",
            {"prefix": "up"},
            "prefix and url are required",
            id="rule-without-url",
        ),
    ],
)
async def test_malformed_request_bodies_are_refused_as_request_invalid(
    auth_mirror_factory: AuthMirrorFactory,
    upstream_registry: Any,
    method: str,
    path: str,
    body: dict[str, Any],
    message: str,
) -> None:
    auth = await auth_mirror_factory({upstream_registry.host: upstream_registry.url})
    url = f"{auth.url}/admin/v1/tenancies/admin{path}"
    headers = basic("admin/admin", auth.admin_token)
    async with aiohttp.ClientSession() as http:
        users = f"{auth.url}/admin/v1/tenancies/admin/users"
        async with http.post(users, json={"name": "bob"}, headers=headers) as resp:
            assert resp.status == 201
        async with http.request(method, url, json=body, headers=headers) as resp:
            error = (await resp.json())["errors"][0]
            assert resp.status == 400, error
    assert (error["code"], error["message"]) == ("REQUEST_INVALID", message)
