"""Real clients pulling through the mirror the way they are deployed: podman with a path-prefix
``registries.conf`` mirror, the Docker engine with ``registry-mirrors`` and with ``docker login``
to a tenancy repository, and the kubelet's path (containerd's CRI ``PullImage`` through a
``hosts.toml``) with an imagePullSecret keyed by the mirror host and keyed by the origin.

Clients fall back to the origin silently when a mirror fails, so every test checks who served
the blobs: the upstream's access log names the user agent of each blob GET (``oci-mirror/...``
is the mirror filling its cache) and the mirror counts its committed fills.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mirror.db.identity.records import PullThroughRule
from tests.peers.containerd import write_hosts_toml
from tests.peers.cri import CriContainerd, CriImageClient, RegistryAuth
from tests.peers.factory import ImageFactory, PushedImage
from tests.peers.podman import Podman, mirror_registries_conf
from tests.peers.registry import Registry

from .conftest import AuthMirror, AuthMirrorFactory, DockerdFactory, Mirror, MirrorFactory

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

# A port-free registry name for the upstream: podman refuses a mirror path segment with a port.
UPSTREAM_ALIAS = "registry.test"
READERS = ["allow group readers to read repos in tenancy"]
MANIFEST_ROUTE = "/v2/{name}/manifests/{reference}"


def blob_fetchers(upstream: Registry, digest: str) -> list[str]:
    """User agents of the upstream's successful GETs of ``digest``."""
    return [
        e.user_agent
        for e in upstream.requests()
        if e.method == "GET" and digest in e.path and e.status == 200
    ]


async def assert_mirror_served(mirror: Mirror, upstream: Registry, pushed: PushedImage) -> None:
    """Every blob reached the client through the mirror: the mirror fetched each once from the
    upstream and committed it, and the client never fetched one from the upstream itself."""
    blobs = pushed.image.blobs()
    for blob in blobs:
        await upstream.wait_for_requests("GET", blob.digest)
        fetchers = blob_fetchers(upstream, blob.digest)
        assert len(fetchers) == 1 and fetchers[0].startswith("oci-mirror/"), fetchers
    assert mirror.metric("mirror_fills_committed_total") == len(blobs)


async def test_podman_pulls_through_a_path_prefix_mirror(
    mirror_factory: MirrorFactory,
    upstream_registry: Registry,
    image_factory: ImageFactory,
    podman: Podman,
) -> None:
    mirror = await mirror_factory(
        {upstream_registry.host: upstream_registry.url},
        upstream_options={"aliases": [UPSTREAM_ALIAS]},
    )
    pushed = image_factory.push("v1", layers=2, layer_size=100_000)
    podman.registries_conf.write_text(
        mirror_registries_conf(UPSTREAM_ALIAS, f"{mirror.host}/{UPSTREAM_ALIAS}")
    )

    # The origin name does not resolve: only the mirror can answer this pull.
    done = await podman.pull(f"{UPSTREAM_ALIAS}/{pushed.repo}:v1")

    assert done.returncode == 0, done.stderr
    await assert_mirror_served(mirror, upstream_registry, pushed)
    assert mirror.metric("mirror_http_requests_total", route=MANIFEST_ROUTE, method="GET",
                         status="200") >= 1  # fmt: skip
    listed = await podman.run("images", "--format", "{{.Repository}}:{{.Tag}}")
    assert f"{UPSTREAM_ALIAS}/{pushed.repo}:v1" in listed.stdout


async def test_dockerd_pulls_a_docker_hub_name_through_registry_mirrors(
    mirror: Mirror,
    upstream_registry: Registry,
    image_factory: ImageFactory,
    dockerd_factory: DockerdFactory,
) -> None:
    # The mirror's default upstream stands in for Docker Hub: "library/<name>" at the root path.
    name = image_factory.repo.rsplit("/", 1)[1]
    pushed = image_factory.push("v1", repo=f"library/{name}", layers=2, layer_size=100_000)
    daemon = await dockerd_factory(registry_mirrors=(mirror.url,))

    done = await daemon.docker("pull", f"{name}:v1")

    assert done.returncode == 0, done.stderr
    await assert_mirror_served(mirror, upstream_registry, pushed)
    inspected = await daemon.docker("image", "inspect", "--format", "{{.Id}}", f"{name}:v1")
    assert inspected.stdout.strip() == pushed.image.config.digest


async def test_docker_login_then_pull_a_tenancy_repository(
    auth_mirror: AuthMirror,
    upstream_registry: Registry,
    image_factory: ImageFactory,
    dockerd_factory: DockerdFactory,
) -> None:
    pushed = image_factory.push("v1", layers=2, layer_size=100_000)
    auth_mirror.identity.create_tenancy("acme", 0)
    auth_mirror.identity.create_rule(PullThroughRule("acme", "up", upstream_registry.url))
    login, token = auth_mirror.user("acme", "alice", "readers", policy=READERS)
    daemon = await dockerd_factory()
    ref = f"{auth_mirror.host}/acme/up/{pushed.repo}:v1"
    anonymous = await daemon.docker("pull", ref)
    assert anonymous.returncode != 0
    assert "unauthorized" in anonymous.stderr.lower() or "denied" in anonymous.stderr.lower()

    logged_in = await daemon.docker(
        "login", "--username", login, "--password-stdin", auth_mirror.host,
        stdin=token.encode(),
    )  # fmt: skip
    assert logged_in.returncode == 0, logged_in.stderr
    done = await daemon.docker("pull", ref)

    assert done.returncode == 0, done.stderr
    await assert_mirror_served(auth_mirror.mirror, upstream_registry, pushed)
    issued = auth_mirror.mirror.metric(
        "mirror_http_requests_total", route="/auth/token", method="GET", status="200"
    )
    assert issued >= 1  # docker asks the realm with Basic credentials


@pytest.fixture
async def cri_mirror(
    auth_mirror_factory: AuthMirrorFactory, upstream_registry: Registry
) -> AuthMirror:
    """An auth-on mirror whose default tenancy ``nodes`` proxies the upstream, not publicly."""
    return await auth_mirror_factory({upstream_registry.host: upstream_registry.url})


@pytest.fixture
def cri_image(
    cri_mirror: AuthMirror,
    image_factory: ImageFactory,
    upstream_registry: Registry,
    hosts_dir: Path,
) -> PushedImage:
    """An image on the upstream, whose host's ``hosts.toml`` names the mirror."""
    pushed = image_factory.push("v1", layers=2, layer_size=100_000)
    write_hosts_toml(hosts_dir, upstream_registry.host, upstream_registry.url, cri_mirror.url)
    return pushed


async def test_cri_pull_with_a_secret_keyed_by_the_mirror_sends_it(
    cri_mirror: AuthMirror,
    cri_image: PushedImage,
    upstream_registry: Registry,
    cri_containerd: CriContainerd,
) -> None:
    login, token = cri_mirror.user("nodes", "kubelet", "readers", policy=READERS)
    secret = RegistryAuth(login, token, server_address=cri_mirror.url)

    image_ref = await CriImageClient(cri_containerd.socket).pull_image(cri_image.ref, secret)

    assert image_ref == cri_image.image.config.digest
    await assert_mirror_served(cri_mirror.mirror, upstream_registry, cri_image)
    posted = cri_mirror.mirror.metric(
        "mirror_http_requests_total", route="/auth/token", method="POST", status="200"
    )
    assert posted >= 1  # containerd logged in with the OAuth2 password form


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("origin", id="keyed-by-the-origin"),
        # containerd parses server_address as a URL: a bare "host:port" names no host at all.
        pytest.param("bare-mirror-host", id="keyed-by-the-mirror-without-scheme"),
    ],
)
async def test_cri_pull_with_a_secret_for_another_host_does_not_send_it(
    key: str,
    cri_mirror: AuthMirror,
    cri_image: PushedImage,
    upstream_registry: Registry,
    cri_containerd: CriContainerd,
) -> None:
    login, token = cri_mirror.user("nodes", "kubelet", "readers", policy=READERS)
    server = upstream_registry.url if key == "origin" else cri_mirror.host
    secret = RegistryAuth(login, token, server_address=server)

    image_ref = await CriImageClient(cri_containerd.socket).pull_image(cri_image.ref, secret)

    # The mirror answered the anonymous node 401 (no public_proxy) and containerd fell back to
    # the origin: the pull succeeds, but nothing came from the mirror and no login reached it.
    assert image_ref == cri_image.image.config.digest
    denied = cri_mirror.mirror.metric(
        "mirror_http_requests_total", route=MANIFEST_ROUTE, method="HEAD", status="401"
    )
    assert denied >= 1
    assert cri_mirror.mirror.metric("mirror_fills_committed_total") == 0
    posted = cri_mirror.mirror.metric(
        "mirror_http_requests_total", route="/auth/token", method="POST", status="200"
    )
    assert posted == 0
    for blob in cri_image.image.blobs():
        fetchers = blob_fetchers(upstream_registry, blob.digest)
        assert fetchers and all(agent.startswith("containerd/") for agent in fetchers), fetchers
