"""Real clients pushing into hosted repositories: ``skopeo copy`` (one image, and ``--all``
of a multi-platform index) and the Docker engine's ``login``/``tag``/``push``, then a pull
from a second, empty engine; a user without ``use`` gets 403 and an anonymous client 401;
``podman push`` and ``buildah push`` with credentials, pulled back by a second podman store.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from mirror.db.identity.records import ADMINISTRATORS
from tests.peers.buildah import Buildah
from tests.peers.dockerd import Dockerd
from tests.peers.factory import ImageFactory
from tests.peers.podman import Podman
from tests.peers.registry import Registry
from tests.peers.skopeo import skopeo_copy_async

from .conftest import AuthMirror, DockerdFactory, _require_root_and
from .test_auth_tokens import basic

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

USERS = ["allow group devs to use repos in tenancy"]
ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    )
)


async def manifest_digest(mirror: AuthMirror, path: str, who: dict[str, str]) -> str | None:
    """The digest the mirror answers for ``/v2/<path>``, or ``None`` when it is not 200."""
    async with aiohttp.ClientSession() as http:
        headers = {**who, "Accept": ACCEPT}
        async with http.get(f"{mirror.url}/v2/{path}", headers=headers) as resp:
            await resp.read()
            return resp.headers.get("Docker-Content-Digest") if resp.status == 200 else None


async def test_skopeo_copies_an_image_into_a_new_repository(
    auth_mirror: AuthMirror, image_factory: ImageFactory, upstream_registry: Registry
) -> None:
    pushed = image_factory.push("v1", layers=3, layer_size=50_000)
    login, token = auth_mirror.user("acme", "boss", ADMINISTRATORS)
    await skopeo_copy_async(
        f"docker://{upstream_registry.host}/{pushed.repo}:v1",
        f"docker://{auth_mirror.host}/acme/apps/single:v1",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        f"--dest-creds={login}:{token}",
        "--preserve-digests",
    )
    found = await manifest_digest(auth_mirror, "acme/apps/single/manifests/v1", basic(login, token))
    assert found == pushed.image.manifest_digest


async def test_skopeo_copies_all_platforms_of_an_index(
    auth_mirror: AuthMirror, image_factory: ImageFactory, upstream_registry: Registry
) -> None:
    pushed = image_factory.push_index("multi")
    login, token = auth_mirror.user("acme", "boss", ADMINISTRATORS)
    await skopeo_copy_async(
        f"docker://{upstream_registry.host}/{pushed.repo}:multi",
        f"docker://{auth_mirror.host}/acme/apps/multi:multi",
        "--all",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        f"--dest-creds={login}:{token}",
        "--preserve-digests",
    )
    who = basic(login, token)
    assert await manifest_digest(auth_mirror, "acme/apps/multi/manifests/multi", who) == (
        pushed.index.index_digest
    )
    for image in pushed.index.images:
        path = f"acme/apps/multi/manifests/{image.manifest_digest}"
        assert await manifest_digest(auth_mirror, path, who) == image.manifest_digest


async def test_docker_push_then_pull_from_a_second_engine(
    auth_mirror: AuthMirror,
    image_factory: ImageFactory,
    upstream_registry: Registry,
    dockerd_factory: DockerdFactory,
) -> None:
    pushed = image_factory.push("v1", layers=3, layer_size=100_000)
    boss, boss_token = auth_mirror.user("acme", "boss", ADMINISTRATORS)
    dev, dev_token = auth_mirror.user("acme", "dev", "devs", policy=USERS)
    outsider, outsider_token = auth_mirror.user("acme", "outsider")
    source = f"{upstream_registry.host}/{pushed.repo}:v1"
    ref = f"{auth_mirror.host}/acme/team/app:v1"
    pusher = await dockerd_factory()
    assert (await pusher.docker("pull", source)).returncode == 0
    assert (await pusher.docker("tag", source, ref)).returncode == 0

    anonymous = await pusher.docker("push", ref)
    assert anonymous.returncode != 0
    assert "unauthorized" in anonymous.stderr.lower() or "no basic auth" in anonymous.stderr

    async def login(daemon: Dockerd, user: str, token: str) -> None:
        done = await daemon.docker(
            "login", "--username", user, "--password-stdin", auth_mirror.host,
            stdin=token.encode(),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr

    # The repository is created by its first push, which needs manage: the boss pushes first.
    await login(pusher, outsider, outsider_token)
    refused = await pusher.docker("push", ref)
    assert refused.returncode != 0 and "denied" in refused.stderr.lower()
    await login(pusher, boss, boss_token)
    assert (await pusher.docker("push", ref)).returncode == 0
    await login(pusher, dev, dev_token)
    second_tag = f"{auth_mirror.host}/acme/team/app:v2"
    assert (await pusher.docker("tag", source, second_tag)).returncode == 0
    done = await pusher.docker("push", second_tag)
    assert done.returncode == 0, done.stderr
    assert (await pusher.docker("logout", auth_mirror.host)).returncode == 0

    puller = await dockerd_factory()
    assert (await puller.docker("pull", ref)).returncode != 0  # private by default
    await login(puller, dev, dev_token)
    done = await puller.docker("pull", ref)
    assert done.returncode == 0, done.stderr
    inspected = await puller.docker("image", "inspect", "--format", "{{.Id}}", ref)
    assert inspected.stdout.strip() == pushed.image.config.digest


def _client(kind: type[Podman], base: Path) -> Podman:
    client = kind(base)
    client.registries_conf.write_text("unqualified-search-registries = []\n")
    return client


@pytest.mark.parametrize("kind", [Podman, Buildah], ids=["podman", "buildah"])
async def test_podman_and_buildah_push_into_a_new_private_repository(
    kind: type[Podman],
    auth_mirror: AuthMirror,
    image_factory: ImageFactory,
    upstream_registry: Registry,
    tmp_path: Path,
) -> None:
    _require_root_and(kind.__name__.lower())
    pushed = image_factory.push("v1", layers=3, layer_size=60_000)
    boss = auth_mirror.user("acme", "boss", ADMINISTRATORS)
    dev = auth_mirror.user("acme", "dev", "devs", policy=USERS)
    ref = f"{auth_mirror.host}/acme/{kind.__name__.lower()}/app:v1"
    pusher, puller = _client(kind, tmp_path / "pusher"), _client(Podman, tmp_path / "puller")
    try:
        source = f"{upstream_registry.host}/{pushed.repo}:v1"
        assert (await pusher.run("pull", "--tls-verify=false", source)).returncode == 0
        assert (await pusher.run("tag", source, ref)).returncode == 0
        digest_file = tmp_path / "pushed.digest"
        anonymous = await pusher.run("push", "--tls-verify=false", ref)
        assert anonymous.returncode != 0 and "unauthorized" in anonymous.stderr.lower()
        done = await pusher.run(
            "push", "--tls-verify=false", "--creds", ":".join(boss),
            "--digestfile", str(digest_file), ref,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        digest = digest_file.read_text().strip()
        assert digest.startswith("sha256:")
        assert await manifest_digest(auth_mirror, f"acme/{kind.__name__.lower()}/app/manifests/v1",
                                     basic(*dev)) == digest  # fmt: skip
        # Private by default: no pull without a login, the same digest back with one.
        assert (await puller.run("pull", "--tls-verify=false", ref)).returncode != 0
        done = await puller.run("pull", "--tls-verify=false", "--creds", ":".join(dev), ref)
        assert done.returncode == 0, done.stderr
        found = await puller.run("image", "inspect", "--format", "{{.Digest}}", ref)
        assert found.stdout.strip() == digest
    finally:
        pusher.close()
        puller.close()
