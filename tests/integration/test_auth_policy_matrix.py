"""The policy matrix: each verb and condition against pull, push, list tags, catalog and
repository create/delete, for private and public repositories, anonymous clients, a user of
another tenancy and a revoked token."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from mirror.db.identity.records import ADMINISTRATORS, PullThroughRule
from tests.peers.factory import ImageFactory, PushedImage

from .conftest import AuthMirror
from .test_auth_tokens import basic

pytestmark = pytest.mark.integration

OPS = ("pull", "blob", "tags", "push", "catalog", "create", "delete")
# A push into a pull-through rule's namespace is DENIED (a cache), whoever asks.
ALLOW_ALL = {"pull": 200, "blob": 200, "tags": 200, "push": 403, "catalog": True,
             "create": 201, "delete": 200}  # fmt: skip
DENY_ALL = {"pull": 403, "blob": 403, "tags": 403, "push": 403, "catalog": False,
            "create": 403, "delete": 403}  # fmt: skip
ANON = {"pull": 401, "blob": 401, "tags": 401, "push": 401, "catalog": 401,
        "create": 401, "delete": 401}  # fmt: skip
READS = {**DENY_ALL, "pull": 200, "blob": 200, "tags": 200, "catalog": True}


def statement(verb: str, where: str = "") -> list[str]:
    return [f"allow group team to {verb} repos in tenancy{where}"]


# (who, policy statements for group "team" of acme, expected per operation)
MATRIX: list[Any] = [
    pytest.param("inspect", statement("inspect"), {**DENY_ALL, "tags": 200, "catalog": True}),
    pytest.param("read", statement("read"), READS),
    pytest.param("use", statement("use"), READS),
    pytest.param("manage", statement("manage"), ALLOW_ALL),
    pytest.param("admin", [], ALLOW_ALL),
    pytest.param(
        "read-other-repo", statement("read", " where target.repo.name = 'up/x'"), DENY_ALL
    ),
    pytest.param("read-glob", statement("read", " where target.repo.name =~ 'up/test/*'"), READS),
    pytest.param("read-not-other", statement("read", " where target.repo.name != 'up/x'"), READS),
    pytest.param("no-grants", [], DENY_ALL),
    pytest.param("other-tenancy", [], DENY_ALL),
    pytest.param("anonymous", [], ANON),
    pytest.param("revoked", statement("manage"), ANON),
]


@pytest.fixture
def image(image_factory: ImageFactory) -> PushedImage:
    return image_factory.push("v1", layers=1, layer_size=2048)


async def setup_acme(mirror: AuthMirror, image: PushedImage) -> None:
    store = mirror.identity
    store.create_tenancy("acme", 0)
    store.create_rule(PullThroughRule("acme", "up", image.registry.url))
    store.create_tenancy("beta", 0)
    store.set_policy("beta", "all", ("allow any-user to manage repos in tenancy",))
    # An administrator of acme pulls once so that the repository is cached and catalogued.
    login, token = mirror.user("acme", "boss", ADMINISTRATORS)
    status, _ = await call(mirror, "pull", image, basic(login, token))
    assert status == 200


def credentials(mirror: AuthMirror, who: str, policy: list[str]) -> dict[str, str]:
    if who == "anonymous":
        return {}
    if who == "other-tenancy":
        return basic(*mirror.user("beta", "intruder"))
    groups = [ADMINISTRATORS] if who == "admin" else ["team"]
    login, token = mirror.user("acme", who, *groups, policy=policy or None)
    if who == "revoked":
        mirror.identity.revoke_token("acme", who, token.split("_")[1], 0)
    return basic(login, token)


async def call(
    mirror: AuthMirror, op: str, image: PushedImage, headers: dict[str, str]
) -> tuple[int, Any]:
    name = f"acme/up/{image.repo}"
    repos = f"{mirror.url}/admin/v1/tenancies/acme/repositories"
    requests = {
        "pull": ("GET", f"{mirror.url}/v2/{name}/manifests/v1", None),
        "blob": ("GET", f"{mirror.url}/v2/{name}/blobs/{image.image.layers[0].digest}", None),
        "tags": ("GET", f"{mirror.url}/v2/{name}/tags/list", None),
        "push": ("PUT", f"{mirror.url}/v2/{name}/manifests/v2", b"{}"),
        "catalog": ("GET", f"{mirror.url}/v2/_catalog", None),
        "create": ("POST", repos, json.dumps({"name": f"up/{image.repo}/new"}).encode()),
        "delete": ("DELETE", f"{repos}/up/{image.repo}", None),
    }
    method, url, data = requests[op]
    accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    async with aiohttp.ClientSession() as http:
        async with http.request(method, url, data=data, headers={**accept, **headers}) as resp:
            body = await resp.read()
            if op == "catalog" and resp.status == 200:
                return resp.status, name in json.loads(body)["repositories"]
            return resp.status, body


@pytest.mark.parametrize(("who", "policy", "expected"), MATRIX)
async def test_private_repository(
    auth_mirror: AuthMirror, image: PushedImage, who: str, policy: list[str], expected: Any
) -> None:
    await setup_acme(auth_mirror, image)
    headers = credentials(auth_mirror, who, policy)

    outcome = {}
    for op in OPS:
        status, body = await call(auth_mirror, op, image, headers)
        outcome[op] = body if op == "catalog" and status == 200 else status

    assert outcome == expected


# Public means pull and list tags (issue 10: anonymous skopeo inspect lists tags).
PUBLIC = {**DENY_ALL, "pull": 200, "blob": 200, "tags": 200}


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        pytest.param("anonymous", {**ANON, "pull": 200, "blob": 200, "tags": 200}),
        pytest.param("no-grants", PUBLIC),
        pytest.param("other-tenancy", PUBLIC),
        pytest.param("manage", ALLOW_ALL),
    ],
)
async def test_public_repository_anyone_pulls_and_lists_tags_nothing_else(
    auth_mirror: AuthMirror, image: PushedImage, who: str, expected: Any
) -> None:
    await setup_acme(auth_mirror, image)
    auth_mirror.identity.set_public("acme", f"up/{image.repo}", True)
    headers = credentials(auth_mirror, who, statement("manage") if who == "manage" else [])

    outcome = {}
    for op in OPS:
        status, body = await call(auth_mirror, op, image, headers)
        outcome[op] = body if op == "catalog" and status == 200 else status

    assert outcome == expected
