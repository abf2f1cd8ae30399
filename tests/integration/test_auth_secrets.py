"""No secret ever appears in logs or error bodies: auth tokens, bearer tokens, the upstream
credentials of a tenancy's rule, nor the wrong passwords clients try."""

from __future__ import annotations

import json
import logging

import aiohttp
import pytest

from tests.peers.factory import ImageFactory

from .conftest import AuthMirror
from .test_auth_tokens import basic, bearer

pytestmark = pytest.mark.integration


async def test_secrets_never_reach_logs_or_error_bodies(
    auth_mirror: AuthMirror, image_factory: ImageFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    image = image_factory.push("v1", layers=1, layer_size=2048)
    admin = basic("admin/admin", auth_mirror.admin_token)
    api = f"{auth_mirror.url}/admin/v1/tenancies"
    upstream_password = "upstream-password-do-not-log"
    wrong = "mrt_0123456789ab_wrong-password-do-not-log"
    bodies: list[bytes] = []
    async with aiohttp.ClientSession() as http:

        async def call(
            method: str, url: str, shows: bool = False, **kwargs: object
        ) -> dict[str, object]:
            async with http.request(method, url, **kwargs) as resp:  # type: ignore[arg-type]
                body = await resp.read()
                if not shows:  # the one answer meant to show a secret is left out
                    bodies.append(body)
                return json.loads(body) if body else {}

        await call("POST", api, json={"name": "acme"}, headers=admin)
        await call("POST", f"{api}/acme/users", json={"name": "alice"}, headers=admin)
        rule = {"prefix": "up", "url": image.registry.url}
        await call(
            "POST",
            f"{api}/acme/rules",
            json={**rule, "username": "bot", "password": upstream_password},
            headers=admin,
        )
        await call(
            "POST",
            f"{api}/acme/rules",
            json={**rule, "prefix": "up2", "username": "bot", "password": upstream_password},
            headers=admin,
        )
        await call(
            "PUT",
            f"{api}/acme/policies/read",
            json={"statements": ["allow any-user to read repos in tenancy"]},
            headers=admin,
        )
        created = await call(
            "POST",
            f"{api}/acme/users/alice/tokens",
            shows=True,
            json={"description": "ci"},
            headers=admin,
        )
        secret = str(created["token"])
        listed = await call("GET", f"{api}/acme/users/alice/tokens", headers=admin)
        rules = await call("GET", f"{api}/acme/rules", headers=admin)

        for password in (wrong, secret + "x", "not-even-a-token-do-not-log"):
            await call(
                "GET", f"{auth_mirror.url}/auth/token", headers=basic("acme/alice", password)
            )
            await call(
                "GET",
                f"{auth_mirror.url}/v2/acme/up/{image.repo}/manifests/v1",
                headers=basic("acme/alice", password),
            )
        await call(
            "POST",
            f"{auth_mirror.url}/auth/token",
            data={"grant_type": "password", "username": "acme/alice", "password": wrong},
        )
        issued = await call(
            "GET", f"{auth_mirror.url}/auth/token", shows=True,
            params={"scope": f"repository:acme/up/{image.repo}:pull"},
            headers=basic("acme/alice", secret),
        )  # fmt: skip
        bearer_token = str(issued["token"])
        await call(
            "GET",
            f"{auth_mirror.url}/v2/acme/up/{image.repo}/tags/list",
            headers=bearer(bearer_token),
        )
        await call(
            "GET",
            f"{auth_mirror.url}/v2/acme/up/{image.repo}/manifests/v1",
            headers=bearer(bearer_token + "x"),
        )
        await call(
            "GET",
            f"{auth_mirror.url}/v2/acme/up/{image.repo}/manifests/v1",
            headers=bearer(bearer_token),
        )

    logged = caplog.text
    assert "401" in logged and "/auth/token" in logged  # the access log was captured
    secrets = [
        secret,
        secret.split("_", 2)[2],
        bearer_token,
        upstream_password,
        wrong,
        "do-not-log",
    ]
    for value in secrets:
        assert value not in logged
    shown = b"".join(bodies)
    for value in secrets:
        assert value.encode() not in shown
    assert "token" not in json.dumps(listed["tokens"]).replace('"token"', "")
    assert upstream_password not in json.dumps(rules)
