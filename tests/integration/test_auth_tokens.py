"""The token service as clients use it: challenges, the realm (GET with Basic, POST form),
bearer tokens checked on every request (signature, expiry, audience, scope), revocation,
Basic credentials on registry requests, and failed-login throttling."""

from __future__ import annotations

import base64
import json
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mirror.crypto.jwt import b64url, b64url_decode, encode
from tests.peers.factory import ImageFactory, PushedImage

from .conftest import AuthMirror

pytestmark = pytest.mark.integration

ACCEPT = "application/vnd.oci.image.manifest.v1+json"


def basic(login: str, token: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{login}:{token}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def get_token(
    mirror: AuthMirror, scope: str | None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    params = {"service": "mirror", **({"scope": scope} if scope else {})}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{mirror.url}/auth/token", params=params, headers=headers) as resp:
            return resp.status, await resp.json()


async def fetch(
    mirror: AuthMirror,
    path: str,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    *,
    node: bool = False,
) -> tuple[int, dict[str, str], bytes]:
    """A registry request on the registry face (``node``: on the node-local face)."""
    base = mirror.node_url if node else mirror.url
    async with aiohttp.ClientSession() as http:
        async with http.request(
            method, f"{base}{path}", headers={"Accept": ACCEPT, **(headers or {})}
        ) as resp:
            return resp.status, dict(resp.headers), await resp.read()


def code_of(body: bytes) -> str:
    return str(json.loads(body)["errors"][0]["code"])


@pytest.fixture
def image(image_factory: ImageFactory) -> PushedImage:
    return image_factory.push("v1", layers=1, layer_size=2048)


@pytest.fixture
async def acme(auth_mirror: AuthMirror, image: PushedImage) -> AuthMirror:
    """Tenancy ``acme`` pulling ``acme/up/...`` through the upstream; ``acme/reader`` reads."""
    auth_mirror.identity.create_tenancy("acme", 0)
    from mirror.db.identity.records import PullThroughRule

    auth_mirror.identity.create_rule(PullThroughRule("acme", "up", image.registry.url))
    return auth_mirror


def manifest_path(image: PushedImage, tenancy: str = "acme") -> str:
    return f"/v2/{tenancy}/up/{image.repo}/manifests/v1"


async def test_base_without_credentials_is_challenged(auth_mirror: AuthMirror) -> None:
    status, headers, body = await fetch(auth_mirror, "/v2/")

    assert status == 401
    assert code_of(body) == "UNAUTHORIZED"
    assert headers["WWW-Authenticate"] == (
        f'Bearer realm="{auth_mirror.url}/auth/token",service="mirror"'
    )


async def test_realm_get_with_basic_issues_a_scoped_token(
    acme: AuthMirror, image: PushedImage
) -> None:
    login, token = acme.user("acme", "reader", policy=["allow any-user to read repos in tenancy"])
    scope = f"repository:acme/up/{image.repo}:pull,push"

    status, body = await get_token(acme, scope, basic(login, token))

    assert status == 200
    assert body["token"] == body["access_token"]
    assert body["expires_in"] == 300
    claims = json.loads(b64url_decode(body["token"].split(".")[1]))
    assert claims["access"] == [
        {"type": "repository", "name": f"acme/up/{image.repo}", "actions": ["pull"]}
    ]
    assert claims["sub"] == "acme/reader" and claims["aud"] == "mirror"
    status, _, _ = await fetch(acme, manifest_path(image), bearer(body["token"]))
    assert status == 200


async def test_realm_post_oauth2_password_form(acme: AuthMirror, image: PushedImage) -> None:
    login, token = acme.user("acme", "reader", policy=["allow any-user to read repos in tenancy"])
    form = {
        "grant_type": "password",
        "username": login,
        "password": token,
        "service": "mirror",
        "client_id": "containerd-client",
        "scope": f"repository:acme/up/{image.repo}:pull",
    }
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{acme.url}/auth/token", data=form) as resp:
            assert resp.status == 200
            issued = await resp.json()

    status, _, _ = await fetch(acme, manifest_path(image), bearer(issued["access_token"]))
    assert status == 200


def forge(token: str, mutate: Any) -> str:
    """Change the claims of ``token`` and keep its (now wrong) signature."""
    header, payload, signature = token.split(".")
    claims = json.loads(b64url_decode(payload))
    mutate(claims)
    return f"{header}.{b64url(json.dumps(claims).encode())}.{signature}"


def widen(claims: dict[str, Any]) -> None:
    claims["access"][0]["actions"] = ["pull", "push", "delete"]


def resign_with_another_key(token: str) -> str:
    claims = json.loads(b64url_decode(token.split(".")[1]))
    return encode(claims, Ed25519PrivateKey.generate())


@pytest.mark.parametrize(
    ("make_bad", "reason"),
    [
        pytest.param(lambda t: forge(t, widen), "bad signature", id="widened-scope-forged"),
        pytest.param(
            lambda t: forge(t, lambda c: c.update(exp=c["exp"] + 3600)),
            "bad signature",
            id="extended-expiry-forged",
        ),
        pytest.param(resign_with_another_key, "unknown signing key", id="another-key"),
        pytest.param(lambda t: t[:-4], "bad signature", id="truncated"),
        pytest.param(lambda t: "not-a-token", "not a compact JWS", id="garbage"),
    ],
)
async def test_bad_bearer_tokens_are_challenged(
    acme: AuthMirror, image: PushedImage, make_bad: Any, reason: str
) -> None:
    login, token = acme.user("acme", "reader", policy=["allow any-user to read repos in tenancy"])
    _, issued = await get_token(acme, f"repository:acme/up/{image.repo}:pull", basic(login, token))

    status, headers, body = await fetch(
        acme, manifest_path(image), bearer(make_bad(issued["token"]))
    )

    assert status == 401
    assert code_of(body) == "UNAUTHORIZED"
    assert reason in json.loads(body)["errors"][0]["message"]
    assert 'error="invalid_token"' in headers["WWW-Authenticate"]


async def test_expired_token_is_challenged(acme: AuthMirror, image: PushedImage) -> None:
    login, token = acme.user("acme", "reader", policy=["allow any-user to read repos in tenancy"])
    _, issued = await get_token(acme, f"repository:acme/up/{image.repo}:pull", basic(login, token))
    acme.mirror.clock.advance(299)
    assert (await fetch(acme, manifest_path(image), bearer(issued["token"])))[0] == 200

    acme.mirror.clock.advance(2)
    status, _, body = await fetch(acme, manifest_path(image), bearer(issued["token"]))

    assert status == 401
    assert "expired" in json.loads(body)["errors"][0]["message"]


async def test_token_of_another_service_is_refused(
    auth_mirror_factory: Any, image: PushedImage, tmp_path: Any
) -> None:
    key = str(tmp_path / "shared-key.pem")
    upstreams = {image.registry.host: image.registry.url}
    first = await auth_mirror_factory(upstreams, service="first", signing_key=key)
    second = await auth_mirror_factory(upstreams, service="second", signing_key=key)
    login, token = first.user("nodes", "reader", policy=["allow any-user to read repos in tenancy"])
    second.user("nodes", "reader", policy=["allow any-user to read repos in tenancy"])
    params = {"service": "first", "scope": f"repository:{image.repo}:pull"}
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{first.url}/auth/token", params=params, headers=basic(login, token)
        ) as resp:
            issued = await resp.json()
    path = f"/v2/{image.repo}/manifests/v1"
    answer = await fetch(first, path, bearer(issued["token"]), node=True)
    assert answer[0] == 200, answer

    status, _, body = await fetch(second, path, bearer(issued["token"]), node=True)

    assert status == 401
    assert "wrong audience" in json.loads(body)["errors"][0]["message"]


async def test_token_for_one_repository_does_not_open_another(
    acme: AuthMirror, image_factory: ImageFactory, image: PushedImage
) -> None:
    other = image_factory.push("v1", repo="test/other", layers=1)
    login, token = acme.user("acme", "reader", policy=["allow any-user to read repos in tenancy"])
    _, issued = await get_token(acme, f"repository:acme/up/{image.repo}:pull", basic(login, token))

    status, headers, _ = await fetch(
        acme, f"/v2/acme/up/{other.repo}/manifests/v1", bearer(issued["token"])
    )

    assert status == 401
    assert headers["WWW-Authenticate"].endswith(
        f'scope="repository:acme/up/{other.repo}:pull",error="insufficient_scope"'
    )


async def test_revoking_an_auth_token_ends_its_bearer_tokens_and_logins(
    acme: AuthMirror, image: PushedImage
) -> None:
    login, token = acme.user("acme", "reader", policy=["allow any-user to read repos in tenancy"])
    _, issued = await get_token(acme, f"repository:acme/up/{image.repo}:pull", basic(login, token))
    assert (await fetch(acme, manifest_path(image), basic(login, token)))[0] == 200
    token_id = token.split("_")[1]

    acme.identity.revoke_token("acme", "reader", token_id, acme.mirror.clock.now())

    assert (await fetch(acme, manifest_path(image), bearer(issued["token"])))[0] == 401
    assert (await fetch(acme, manifest_path(image), basic(login, token)))[0] == 401
    assert (await get_token(acme, None, basic(login, token)))[0] == 401


async def test_basic_credentials_on_registry_requests(acme: AuthMirror, image: PushedImage) -> None:
    login, token = acme.user("acme", "reader", policy=["allow any-user to read repos in tenancy"])

    assert (await fetch(acme, manifest_path(image), basic(login, token)))[0] == 200
    status, headers, body = await fetch(acme, manifest_path(image), basic(login, token + "x"))
    assert status == 401 and code_of(body) == "UNAUTHORIZED"
    assert headers["WWW-Authenticate"].startswith("Bearer realm=")
    last_used = acme.identity.token(token.split("_")[1])
    assert last_used is not None and last_used.last_used_at == acme.mirror.clock.now()


async def test_failed_logins_are_throttled_per_source(acme: AuthMirror, image: PushedImage) -> None:
    login, token = acme.user("acme", "reader", policy=["allow any-user to read repos in tenancy"])
    for _ in range(10):
        assert (await get_token(acme, None, basic(login, "mrt_000000000000_wrong")))[0] == 401

    async with aiohttp.ClientSession() as http:
        async with http.get(f"{acme.url}/auth/token", headers=basic(login, token)) as resp:
            assert resp.status == 429
            assert resp.headers["Retry-After"] == "60"
            assert code_of(await resp.read()) == "TOOMANYREQUESTS"
    assert (await fetch(acme, manifest_path(image), basic(login, token)))[0] == 429

    acme.mirror.clock.advance(60)
    assert (await get_token(acme, None, basic(login, token)))[0] == 200


async def test_anonymous_token_for_a_private_repository_grants_nothing(
    acme: AuthMirror, image: PushedImage
) -> None:
    status, issued = await get_token(acme, f"repository:acme/up/{image.repo}:pull")
    assert status == 200
    claims = json.loads(b64url_decode(issued["token"].split(".")[1]))
    assert claims["access"] == [] and claims["sub"] == ""

    status, headers, _ = await fetch(acme, manifest_path(image), bearer(issued["token"]))

    assert status == 401
    assert f'scope="repository:acme/up/{image.repo}:pull"' in headers["WWW-Authenticate"]


@pytest.mark.parametrize(
    ("form", "code"),
    [
        pytest.param({"grant_type": "refresh_token"}, "REQUEST_INVALID", id="refresh-grant"),
        pytest.param({"grant_type": "password"}, "REQUEST_INVALID", id="no-username"),
        pytest.param(
            {"grant_type": "password", "username": "acme/x", "password": "p", "service": "other"},
            "REQUEST_INVALID",
            id="other-service",
        ),
        pytest.param(
            {"grant_type": "password", "username": "acme/nobody", "password": "mrt_x"},
            "UNAUTHORIZED",
            id="bad-credentials",
        ),
    ],
)
async def test_realm_post_refusals(acme: AuthMirror, form: dict[str, str], code: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{acme.url}/auth/token", data=form) as resp:
            assert code_of(await resp.read()) == code
