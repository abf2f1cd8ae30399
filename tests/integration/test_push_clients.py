"""Real clients pushing into hosted repositories: ``skopeo copy`` (one image, and ``--all``
of a multi-platform index) and the Docker engine's ``login``/``tag``/``push``, then a pull
from a second, empty engine; a user without ``use`` gets 403 and an anonymous client 401;
``podman push`` and ``buildah push`` with credentials, pulled back by a second podman store.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from urllib.parse import unquote

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


def upload_requests(auth_mirror: AuthMirror) -> dict[tuple[str, str, str], float]:
    """``mirror_http_requests`` on the upload routes, by (route, method, status)."""
    counts: dict[tuple[str, str, str], float] = {}
    for family in auth_mirror.mirror.metrics.registry.collect():
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "mirror_http_requests_total" and "uploads" in labels["route"]:
                key = (labels["route"], labels["method"], labels["status"])
                counts[key] = sample.value
    return counts


def requests_since(
    before: dict[tuple[str, str, str], float], after: dict[tuple[str, str, str], float]
) -> dict[tuple[str, str], float]:
    """How many upload requests of each (method, status) were answered in between."""
    delta: dict[tuple[str, str], float] = {}
    for (_, method, status), value in after.items():
        grown = value - before.get((_, method, status), 0.0)
        if grown:
            delta[method, status] = delta.get((method, status), 0.0) + grown
    return delta


def uploaded_digests(caplog: pytest.LogCaptureFixture, param: str = "digest") -> set[str]:
    """The ``?<param>=`` of every upload request answered 201 in the access log so far
    (``digest``: uploads finished; ``mount``: blobs mounted)."""
    found = set()
    for record in caplog.records:
        line = record.getMessage()
        if "/blobs/uploads/" in line and f"{param}=" in line and '" 201 ' in line:
            value = line.split(f"{param}=", 1)[1].split()[0].split("&")[0].rstrip('"')
            found.add(unquote(value))
    return found


async def test_docker_push_to_a_second_repository_mounts_the_layers(
    auth_mirror: AuthMirror,
    image_factory: ImageFactory,
    upstream_registry: Registry,
    dockerd_factory: DockerdFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    pushed = image_factory.push("v1", layers=3, layer_size=200_000)
    boss, boss_token = auth_mirror.user("acme", "boss", ADMINISTRATORS)
    source = f"{upstream_registry.host}/{pushed.repo}:v1"
    first, second = (f"{auth_mirror.host}/acme/team/{r}:v1" for r in ("first", "second"))
    engine = await dockerd_factory()
    assert (await engine.docker("pull", source)).returncode == 0
    for ref in (first, second):
        assert (await engine.docker("tag", source, ref)).returncode == 0
    done = await engine.docker(
        "login", "--username", boss, "--password-stdin", auth_mirror.host,
        stdin=boss_token.encode(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (await engine.docker("push", first)).returncode == 0
    # docker recompresses the layers it pulled: the layer digests are the ones it uploaded.
    layers = uploaded_digests(caplog) - {pushed.image.config_digest}
    assert len(layers) == len(pushed.image.layers)
    caplog.clear()
    before = upload_requests(auth_mirror)
    done = await engine.docker("push", second)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("Mounted from acme/team/first") == len(pushed.image.layers)
    # Every layer mounted (POST ?mount= answered 201) and no layer byte sent again: the one
    # upload session (docker keeps no mount record for a config blob) is the config's.
    delta = requests_since(before, upload_requests(auth_mirror))
    assert delta[("POST", "201")] == len(pushed.image.layers)
    assert delta.get(("PATCH", "202"), 0) <= 1 and delta.get(("PUT", "201"), 0) <= 1
    assert uploaded_digests(caplog) <= {pushed.image.config_digest}
    assert uploaded_digests(caplog, "mount") == layers
    who = basic(boss, boss_token)
    assert await manifest_digest(auth_mirror, "acme/team/second/manifests/v1", who) == (
        await manifest_digest(auth_mirror, "acme/team/first/manifests/v1", who)
    )


@pytest.mark.parametrize("who", ["narrow", "outsider"])
async def test_a_mount_from_a_repository_the_user_may_not_read_is_a_plain_session(
    who: str, auth_mirror: AuthMirror
) -> None:
    boss = basic(*auth_mirror.user("acme", "boss", ADMINISTRATORS))
    narrow = auth_mirror.user(
        "acme", "narrow", "narrow",
        policy=["allow group narrow to manage repos in tenancy where target.repo.name = 'own'"],
    )  # fmt: skip
    outsider = auth_mirror.user("beta", "eve", ADMINISTRATORS)
    login, target = (narrow, "acme/own") if who == "narrow" else (outsider, "beta/own")
    secret = b"layer bytes only acme/private may give out"
    digest = f"sha256:{hashlib.sha256(secret).hexdigest()}"
    async with aiohttp.ClientSession() as http:
        url = f"{auth_mirror.url}/v2/acme/private/blobs/uploads/?digest={digest}"
        async with http.post(url, data=secret, headers=boss) as resp:
            assert resp.status == 201
        mount = f"{auth_mirror.url}/v2/{target}/blobs/uploads/?mount={digest}&from=acme/private"
        async with http.post(mount, headers=basic(*login)) as resp:
            assert resp.status == 202 and await resp.read() == b""
            assert resp.headers["Location"].startswith(f"/v2/{target}/blobs/uploads/")
        blob = f"{auth_mirror.url}/v2/{target}/blobs/{digest}"
        async with http.get(blob, headers=basic(*login)) as resp:
            assert resp.status == 404 and secret not in await resp.read()


async def test_a_mount_with_a_token_lacking_the_source_scope_is_challenged_for_both(
    auth_mirror: AuthMirror,
) -> None:
    login = auth_mirror.user("acme", "boss", ADMINISTRATORS)
    data = b"a layer both repositories may share"
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    async with aiohttp.ClientSession() as http:

        async def token(*scopes: str) -> dict[str, str]:
            params = [("service", "mirror"), *(("scope", s) for s in scopes)]
            url = f"{auth_mirror.url}/auth/token"
            async with http.get(url, params=params, headers=basic(*login)) as resp:
                assert resp.status == 200
                return {"Authorization": f"Bearer {(await resp.json())['token']}"}

        upload = f"{auth_mirror.url}/v2/acme/src/blobs/uploads/?digest={digest}"
        async with http.post(upload, data=data, headers=basic(*login)) as resp:
            assert resp.status == 201
        mount = f"{auth_mirror.url}/v2/acme/dst/blobs/uploads/?mount={digest}&from=acme/src"
        narrow = await token("repository:acme/dst:pull,push")
        async with http.post(mount, headers=narrow) as resp:
            assert resp.status == 401
            challenge = resp.headers["WWW-Authenticate"]
        assert 'error="insufficient_scope"' in challenge
        assert 'scope="repository:acme/dst:push repository:acme/src:pull"' in challenge
        both = await token("repository:acme/dst:pull,push", "repository:acme/src:pull")
        async with http.post(mount, headers=both) as resp:
            assert resp.status == 201
            assert resp.headers["Docker-Content-Digest"] == digest
