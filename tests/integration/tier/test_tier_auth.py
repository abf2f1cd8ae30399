"""Auth across a regional tier: three replicas sharing one PostgreSQL and one mounted
signing key. A user created at one replica logs in at another and its token works at the
third; failed logins at any replicas add up to one throttle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from tests.integration.conftest import AuthMirror, AuthMirrorFactory
from tests.integration.test_auth_tokens import basic, bearer, get_token
from tests.peers.registry import Registry

pytestmark = pytest.mark.integration


async def tier(
    factory: AuthMirrorFactory, registry: Registry, dsn: str, tmp_path: Path
) -> list[AuthMirror]:
    """Three replicas over ``dsn`` with one signing key file (the mounted secret)."""
    key = tmp_path / "tier-signing-key.pem"
    pem = Ed25519PrivateKey.generate().private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    )
    key.write_bytes(pem)
    shared = {"backend": "postgres", "dsn": dsn}
    upstreams = {registry.host: registry.url}
    return [await factory(upstreams, metadata=shared, signing_key=str(key)) for _ in range(3)]


async def post(mirror: AuthMirror, path: str, data: dict[str, Any], login: str, token: str) -> Any:
    async with aiohttp.ClientSession() as http:
        url = f"{mirror.url}/admin/v1{path}"
        async with http.post(url, json=data, headers=basic(login, token)) as resp:
            assert resp.status == 201, await resp.text()
            return await resp.json()


async def registry_root(mirror: AuthMirror, headers: dict[str, str]) -> int:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{mirror.url}/v2/", headers=headers) as resp:
            return resp.status


async def test_a_user_created_at_a_logs_in_at_b_and_its_token_works_at_c(
    auth_mirror_factory: AuthMirrorFactory,
    upstream_registry: Registry,
    postgres_dsn: str,
    tmp_path: Path,
) -> None:
    a, b, c = await tier(auth_mirror_factory, upstream_registry, postgres_dsn, tmp_path)
    # The tier bootstraps once: one first administrator, announced by the first replica only.
    assert (len(a.announcements), b.announcements, c.announcements) == (1, [], [])
    admin = ("admin/admin", a.admin_token)

    await post(a, "/tenancies", {"name": "acme"}, *admin)
    await post(a, "/tenancies/acme/users", {"name": "alice"}, *admin)
    secret = (await post(a, "/tenancies/acme/users/alice/tokens", {}, *admin))["token"]

    status, issued = await get_token(b, None, basic("acme/alice", secret))
    assert status == 200
    assert await registry_root(c, {}) == 401
    assert await registry_root(c, bearer(issued["token"])) == 200
    assert await registry_root(c, basic("acme/alice", secret)) == 200


async def test_failed_logins_at_a_and_b_together_lock_the_source_out_at_c(
    auth_mirror_factory: AuthMirrorFactory,
    upstream_registry: Registry,
    postgres_dsn: str,
    tmp_path: Path,
) -> None:
    a, b, c = await tier(auth_mirror_factory, upstream_registry, postgres_dsn, tmp_path)
    good = basic("admin/admin", a.admin_token)
    wrong = basic("admin/mallory", "mrt_000000000000_wrong")
    for _ in range(5):
        assert (await get_token(a, None, wrong))[0] == 401
    for _ in range(4):
        assert (await get_token(b, None, wrong))[0] == 401
    # Nine of ten: not yet.
    assert (await get_token(c, None, good))[0] == 200
    assert (await get_token(b, None, wrong))[0] == 401
    # The tenth, at B, locks the source out at every replica.
    for replica in (a, b, c):
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{replica.url}/auth/token", headers=good) as resp:
                assert resp.status == 429
                assert resp.headers["Retry-After"] == "60"
                assert (await resp.json())["errors"][0]["code"] == "TOOMANYREQUESTS"
    for replica in (a, b, c):
        replica.mirror.clock.advance(60)
    assert (await get_token(c, None, good))[0] == 200
