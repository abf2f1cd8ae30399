"""Tenancies are isolated over time and by name: deleting a tenancy or a rule forgets what it
cached (a re-created one sees nothing of the old owner's), deleting a repository touches only
its own tenancy's records, and tenancy names never shadow node-local names."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mirror.db.identity.records import ADMINISTRATORS, PullThroughRule
from mirror.db.metadata import Metadata
from mirror.oci.digest import Digest
from mirror.testing.images import BuiltImage, build_image, random_layer
from tests.peers.htpasswd import write_htpasswd
from tests.peers.registry import Registry

from .conftest import AuthMirror, AuthMirrorFactory
from .test_auth_tokens import basic, bearer

pytestmark = pytest.mark.integration

BOT = ("acme-bot", "acme-upstream-s3cret")
ACCEPT = {"Accept": "application/vnd.oci.image.manifest.v1+json"}


async def status_of(url: str, headers: dict[str, str] | None = None) -> int:
    async with aiohttp.ClientSession() as http:
        async with http.get(url, headers={**ACCEPT, **(headers or {})}) as resp:
            await resp.read()
            return resp.status


async def admin_call(
    mirror: AuthMirror,
    method: str,
    path: str,
    json: Any = None,
    login: tuple[str, str] | None = None,
) -> tuple[int, Any]:
    """An admin API call, as the first administrator unless ``login`` is given."""
    headers = basic(*(login or ("admin/admin", mirror.admin_token)))
    async with aiohttp.ClientSession() as http:
        async with http.request(
            method, f"{mirror.url}/admin/v1{path}", json=json, headers=headers
        ) as resp:
            return resp.status, await resp.json()


def push(
    registry: Registry, tmp_path: Path, rng: random.Random, repo: str, creds: Any
) -> BuiltImage:
    layout = tmp_path / f"layout-{repo.replace('/', '-')}"
    image = build_image(layout, "v1", [random_layer(rng, 8192, repo.encode())])
    registry.push(layout, "v1", repo, creds=creds)
    return image


@pytest.fixture
def private_registry(registry_factory: Any, tmp_path: Path) -> Registry:
    """A docker-registry behind htpasswd: only the old owner's upstream account reads it."""
    registry: Registry = registry_factory(
        htpasswd=write_htpasswd(tmp_path / "htpasswd", dict([BOT]))
    )
    return registry


@pytest.fixture
async def cached_secret(
    auth_mirror_factory: AuthMirrorFactory,
    upstream_registry: Registry,
    private_registry: Registry,
    tmp_path: Path,
    rng: random.Random,
) -> tuple[AuthMirror, BuiltImage, dict[str, str]]:
    """acme (rule ``priv`` with its upstream account) has pulled ``corp/secret`` by tag and
    all its blobs, so they are cached, linked and tagged under acme's rule."""
    secret = push(private_registry, tmp_path, rng, "corp/secret", BOT)
    mirror = await auth_mirror_factory({upstream_registry.host: upstream_registry.url})
    mirror.identity.create_tenancy("acme", 0)
    mirror.identity.create_rule(PullThroughRule("acme", "priv", private_registry.url, *BOT))
    admin = basic(*mirror.user("acme", "boss", ADMINISTRATORS))
    base = f"{mirror.url}/v2/acme/priv/corp/secret"
    assert await status_of(f"{base}/manifests/v1", admin) == 200
    for blob in secret.blobs():
        assert await status_of(f"{base}/blobs/{blob.digest}", admin) == 200
    return mirror, secret, admin


async def old_content_answers(
    mirror: AuthMirror, secret: BuiltImage, who: dict[str, str]
) -> list[int]:
    """What acme's ``priv/corp/secret`` answers by tag, by manifest digest and by blob."""
    base = f"{mirror.url}/v2/acme/priv/corp/secret"
    paths = ["manifests/v1", f"manifests/{secret.manifest_digest}"]
    paths += [f"blobs/{blob.digest}" for blob in secret.blobs()]
    return [await status_of(f"{base}/{path}", who) for path in paths]


def records_of(mirror: AuthMirror, tenancy: str) -> list[tuple[Any, ...]]:
    """Metadata records kept under any of ``tenancy``'s rule keys."""
    metadata = mirror.mirror.services.metadata
    assert isinstance(metadata, Metadata)  # these mirrors keep the embedded store
    db = metadata._db
    return [
        key
        for key in iter(db)
        if isinstance(key, tuple)
        and any(isinstance(part, str) and part.startswith(f"{tenancy}/") for part in key[1:3])
    ]


async def test_a_rule_created_again_sees_nothing_of_the_old_one(
    cached_secret: Any, private_registry: Registry
) -> None:
    mirror, secret, admin = cached_secret
    assert records_of(mirror, "acme")

    assert (await admin_call(mirror, "DELETE", "/tenancies/acme/rules/priv"))[0] == 200
    # The same prefix and URL, without the old owner's upstream credentials.
    rule = {"prefix": "priv", "url": private_registry.url}
    assert (await admin_call(mirror, "POST", "/tenancies/acme/rules", rule))[0] == 201

    answers = await old_content_answers(mirror, secret, admin)

    assert 200 not in answers, answers
    assert records_of(mirror, "acme") == []


async def test_a_tenancy_created_again_sees_nothing_of_the_old_one(
    cached_secret: Any, private_registry: Registry
) -> None:
    mirror, secret, _ = cached_secret

    assert (await admin_call(mirror, "DELETE", "/tenancies/acme"))[0] == 200
    assert (await admin_call(mirror, "POST", "/tenancies", {"name": "acme"}))[0] == 201
    mirror.identity.create_rule(PullThroughRule("acme", "priv", private_registry.url))
    newcomer = basic(*mirror.user("acme", "boss", ADMINISTRATORS))

    answers = await old_content_answers(mirror, secret, newcomer)

    assert 200 not in answers, answers
    assert records_of(mirror, "acme") == []


async def test_deleting_a_repository_keeps_other_tenancies_links(
    auth_mirror_factory: AuthMirrorFactory,
    upstream_registry: Registry,
    tmp_path: Path,
    rng: random.Random,
) -> None:
    image = push(upstream_registry, tmp_path, rng, "pub/small", None)
    mirror = await auth_mirror_factory(
        {upstream_registry.host: upstream_registry.url}, public_proxy=True
    )
    ns = f"?ns={upstream_registry.host}"
    assert await status_of(f"{mirror.node_url}/v2/pub/small/manifests/v1{ns}") == 200
    links = mirror.mirror.services.metadata
    digest = Digest.parse(image.manifest_digest)
    assert links.linked(upstream_registry.host, "pub/small", digest)
    beta_admin = mirror.user("beta", "boss", ADMINISTRATORS)
    name = f"{upstream_registry.host}/pub/small"
    repos = "/tenancies/beta/repositories"
    created = await admin_call(mirror, "POST", repos, {"name": name}, beta_admin)
    assert created[0] == 201, created

    deleted = await admin_call(mirror, "DELETE", f"{repos}/{name}", login=beta_admin)

    assert deleted[0] == 200, deleted
    assert links.linked(upstream_registry.host, "pub/small", digest)


@pytest.fixture
async def tools(
    auth_mirror_factory: AuthMirrorFactory,
    upstream_registry: Registry,
    tmp_path: Path,
    rng: random.Random,
) -> tuple[AuthMirror, BuiltImage]:
    """A public node-local proxy of the default upstream, which has ``tools/app:v1``; a
    tenancy ``tools`` exists too."""
    image = push(upstream_registry, tmp_path, rng, "tools/app", None)
    mirror = await auth_mirror_factory(
        {upstream_registry.host: upstream_registry.url}, public_proxy=True
    )
    status, _ = await admin_call(mirror, "POST", "/tenancies", {"name": "tools"})
    assert status == 201
    return mirror, image


async def test_a_tenancy_does_not_shadow_node_local_names(
    tools: Any, upstream_registry: Registry
) -> None:
    mirror, _ = tools
    ns = f"?ns={upstream_registry.host}"

    assert await status_of(f"{mirror.node_url}/v2/tools/app/manifests/v1{ns}") == 200
    assert await status_of(f"{mirror.node_url}/v2/tools/app/manifests/v1") == 200
    # On the registry face the same name is the tenancy's: private, so anonymous is refused.
    assert await status_of(f"{mirror.url}/v2/tools/app/manifests/v1") == 401


async def test_a_token_asked_without_ns_works_for_an_ns_pull(
    tools: Any, upstream_registry: Registry
) -> None:
    mirror, image = tools
    params = {"service": "mirror", "scope": "repository:tools/app:pull"}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{mirror.node_url}/auth/token", params=params) as resp:
            token = (await resp.json())["token"]
    ns = f"?ns={upstream_registry.host}"
    node = f"{mirror.node_url}/v2/tools/app"

    assert await status_of(f"{node}/manifests/v1{ns}", bearer(token)) == 200
    blob = image.layers[0].digest
    assert await status_of(f"{node}/blobs/{blob}{ns}", bearer(token)) == 200
    # The request-time check decides: the token opens nothing of tenancy tools.
    assert await status_of(f"{mirror.url}/v2/tools/app/manifests/v1", bearer(token)) == 401


@pytest.mark.parametrize("name", ["library", "nodes"])
async def test_reserved_and_existing_names_are_refused_as_tenancies(
    auth_mirror: AuthMirror, name: str
) -> None:
    status, body = await admin_call(auth_mirror, "POST", "/tenancies", {"name": name})

    expected = "REQUEST_INVALID" if name == "library" else "RESOURCE_EXISTS"
    assert status in (400, 409) and body["errors"][0]["code"] == expected
    assert "library" not in [t.name for t in auth_mirror.identity.tenancies()]
