"""The authorisation-aware cache: a cached blob or manifest is served through a repository only
when that repository is known (or its own upstream confirms) to reference it. Knowing a digest
is not access."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mirror.db.identity.records import ADMINISTRATORS, PullThroughRule
from mirror.testing.images import BuiltImage, build_image, random_layer
from tests.peers.htpasswd import write_htpasswd
from tests.peers.registry import Registry

from .conftest import AuthMirror, AuthMirrorFactory
from .test_auth_tokens import basic

pytestmark = pytest.mark.integration

BOT = ("acme-bot", "acme-upstream-s3cret")
ONLY_OTHER = "target.repo.name = 'priv/corp/other'"
ACCEPT = {"Accept": "application/vnd.oci.image.manifest.v1+json"}


async def status_of(
    mirror: AuthMirror, path: str, headers: dict[str, str], method: str = "GET"
) -> int:
    """The status of a request; tenancy paths on the registry face, others node-local."""
    tenancy = path.split("/")[2] in ("acme", "beta")
    base = mirror.url if tenancy else mirror.node_url
    async with aiohttp.ClientSession() as http:
        async with http.request(method, f"{base}{path}", headers={**ACCEPT, **headers}) as r:
            await r.read()
            return r.status


@pytest.fixture
def private_registry(registry_factory: Any, tmp_path: Path) -> Registry:
    """A docker-registry behind htpasswd: only acme's upstream account can read it."""
    registry: Registry = registry_factory(
        htpasswd=write_htpasswd(tmp_path / "htpasswd", dict([BOT]))
    )
    return registry


def push(
    registry: Registry, tmp_path: Path, rng: random.Random, repo: str, creds: Any
) -> BuiltImage:
    layout = tmp_path / f"layout-{repo.replace('/', '-')}"
    image = build_image(layout, "v1", [random_layer(rng, 8192, repo.encode())])
    registry.push(layout, "v1", repo, creds=creds)
    return image


@pytest.fixture
async def world(
    auth_mirror_factory: AuthMirrorFactory,
    upstream_registry: Registry,
    private_registry: Registry,
    tmp_path: Path,
    rng: random.Random,
) -> tuple[AuthMirror, BuiltImage, dict[str, dict[str, str]]]:
    """acme pulls ``acme/priv/corp/secret`` with its own upstream account; the secret blob is
    then in the mirror's cache. beta reads its own repositories; carol (acme) reads only
    ``priv/corp/other``; the default tenancy's proxy repositories are public."""
    secret = push(private_registry, tmp_path, rng, "corp/secret", BOT)
    push(private_registry, tmp_path, rng, "corp/other", BOT)
    push(upstream_registry, tmp_path, rng, "pub/other", None)
    mirror = await auth_mirror_factory(
        {upstream_registry.host: upstream_registry.url}, public_proxy=True
    )
    store = mirror.identity
    store.create_tenancy("acme", 0)
    store.create_rule(PullThroughRule("acme", "priv", private_registry.url, *BOT))
    store.create_tenancy("beta", 0)
    store.create_rule(PullThroughRule("beta", "priv", private_registry.url))
    store.create_rule(PullThroughRule("beta", "pub", upstream_registry.url))
    users = {
        "acme-admin": basic(*mirror.user("acme", "boss", ADMINISTRATORS)),
        "carol": basic(
            *mirror.user(
                "acme",
                "carol",
                policy=[f"allow any-user to read repos in tenancy where {ONLY_OTHER}"],
            )
        ),
        "bob": basic(
            *mirror.user("beta", "bob", policy=["allow any-user to read repos in tenancy"])
        ),
        "anonymous": {},
    }
    admin = users["acme-admin"]
    assert await status_of(mirror, "/v2/acme/priv/corp/secret/manifests/v1", admin) == 200
    for blob in secret.blobs():
        assert (
            await status_of(mirror, f"/v2/acme/priv/corp/secret/blobs/{blob.digest}", admin) == 200
        )
    return mirror, secret, users


@pytest.mark.parametrize(
    ("who", "repository", "expected"),
    [
        pytest.param("carol", "acme/priv/corp/other", 404, id="same-tenancy-readable-repo"),
        pytest.param("carol", "acme/priv/corp/secret", 403, id="same-tenancy-private-repo"),
        pytest.param("bob", "beta/pub/pub/other", 404, id="other-tenancy-own-repo"),
        pytest.param("bob", "beta/priv/corp/secret", 404, id="other-tenancy-same-upstream"),
        pytest.param("bob", "acme/priv/corp/secret", 403, id="other-tenancy-acme-repo"),
        pytest.param("anonymous", "pub/other", 404, id="anonymous-public-proxy"),
        pytest.param("anonymous", "acme/priv/corp/secret", 401, id="anonymous-acme-repo"),
        pytest.param("acme-admin", "acme/priv/corp/secret", 200, id="control-referencing-repo"),
    ],
)
async def test_knowing_a_private_digest_is_not_access(
    world: Any, private_registry: Registry, who: str, repository: str, expected: int
) -> None:
    mirror, secret, users = world
    layer = secret.layers[0].digest
    assert any(p.name == layer.split(":")[1] for p in mirror.mirror.cached_blob_files())
    paths = [
        f"/v2/{repository}/blobs/{layer}",
        f"/v2/{repository}/manifests/{secret.manifest_digest}",
    ]

    answers = [await status_of(mirror, p, users[who], m) for p in paths for m in ("GET", "HEAD")]

    assert answers == [expected] * 4
    # The secret blob left the private upstream once, to acme's account, and never again
    # (proofs through other repositories ask for a Range of it and are refused).
    sent = [e for e in private_registry.requests() if layer in e.path and e.status in (200, 206)]
    assert [e.method for e in sent] == ["GET"]


async def test_public_proxy_pulls_anonymously_and_proves_content_per_repository(
    world: Any, upstream_registry: Registry
) -> None:
    mirror, _, _ = world
    ns = f"?ns={upstream_registry.host}"

    assert await status_of(mirror, f"/v2/pub/other/manifests/v1{ns}", {}) == 200
    # Public means pull and list tags.
    assert await status_of(mirror, f"/v2/pub/other/tags/list{ns}", {}) == 200
