"""Real clients logging in to the mirror with no plugin: ``skopeo login`` + copy, a
dockerconfigjson made by ``kubectl create secret docker-registry`` read by skopeo, and
containerd's ``ctr`` with ``--user`` (token flow with the OAuth2 POST) and through a
``hosts.toml`` for the default tenancy's public proxy repositories."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from mirror.db.identity.records import PullThroughRule
from tests.peers.containerd import Containerd, write_hosts_toml
from tests.peers.factory import ImageFactory, PushedImage
from tests.peers.registry import Registry
from tests.peers.skopeo import SkopeoError, skopeo_copy_async

from .conftest import AuthMirror

pytestmark = pytest.mark.integration

READERS = ["allow group readers to read repos in tenancy"]


@pytest.fixture
def image(image_factory: ImageFactory) -> PushedImage:
    return image_factory.push("v1", layers=2, layer_size=50_000)


@pytest.fixture
def acme(auth_mirror: AuthMirror, image: PushedImage) -> AuthMirror:
    auth_mirror.identity.create_tenancy("acme", 0)
    auth_mirror.identity.create_rule(PullThroughRule("acme", "up", image.registry.url))
    return auth_mirror


async def run(*args: str) -> subprocess.CompletedProcess[str]:
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return subprocess.CompletedProcess(args, proc.returncode or 0, out.decode(), err.decode())


def assert_copied(out: Path, image: PushedImage) -> None:
    for blob in image.image.blobs():
        assert (out / blob.digest.split(":")[1]).read_bytes() == blob.read_bytes()


async def test_skopeo_login_then_copy(acme: AuthMirror, image: PushedImage, tmp_path: Path) -> None:
    login, token = acme.user("acme", "alice", "readers", policy=READERS)
    authfile = tmp_path / "auth.json"
    ref = f"docker://{acme.host}/acme/up/{image.repo}:v1"
    with pytest.raises(SkopeoError, match=r"authentication required|unauthorized"):
        await skopeo_copy_async(ref, f"dir:{tmp_path / 'anon'}", "--src-tls-verify=false")

    bad = await run(
        "skopeo", "login", "--tls-verify=false", "--authfile", str(authfile),
        "-u", login, "-p", token + "x", acme.host,
    )  # fmt: skip
    assert bad.returncode != 0
    done = await run(
        "skopeo", "login", "--tls-verify=false", "--authfile", str(authfile),
        "-u", login, "-p", token, acme.host,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    await skopeo_copy_async(
        ref, f"dir:{out}", "--src-tls-verify=false", "--authfile", str(authfile)
    )

    assert_copied(out, image)


async def test_kubectl_dockerconfigjson_read_by_skopeo(
    acme: AuthMirror, image: PushedImage, tmp_path: Path
) -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("needs kubectl (apt-get install kubectl)")
    login, token = acme.user("acme", "puller", "readers", policy=READERS)
    secret = await run(
        "kubectl", "create", "secret", "docker-registry", "acme-pull",
        f"--docker-server={acme.host}", f"--docker-username={login}",
        f"--docker-password={token}", "--docker-email=puller@acme.example",
        "--dry-run=client", "-o", "json",
    )  # fmt: skip
    assert secret.returncode == 0, secret.stderr
    dockerconfig = base64.b64decode(json.loads(secret.stdout)["data"][".dockerconfigjson"])
    authfile = tmp_path / "dockerconfig.json"
    authfile.write_bytes(dockerconfig)
    assert json.loads(dockerconfig)["auths"][acme.host]["username"] == login

    out = tmp_path / "out"
    await skopeo_copy_async(
        f"docker://{acme.host}/acme/up/{image.repo}:v1",
        f"dir:{out}",
        "--src-tls-verify=false",
        "--authfile",
        str(authfile),
    )

    assert_copied(out, image)


async def test_ctr_with_user_credentials(
    acme: AuthMirror, image: PushedImage, containerd: Containerd, hosts_dir: Path
) -> None:
    login, token = acme.user("acme", "node", "readers", policy=READERS)
    ref = f"{acme.host}/acme/up/{image.repo}:v1"
    denied = await containerd.ctr_async("content", "fetch", "--plain-http", ref)
    assert denied.returncode != 0

    done = await containerd.ctr_async(
        "content", "fetch", "--plain-http", "--user", f"{login}:{token}", ref
    )

    assert done.returncode == 0, done.stderr
    assert {b.digest for b in image.image.blobs()} <= containerd.content_digests()
    token_posts = acme.mirror.metric(
        "mirror_http_requests_total", route="/auth/token", method="POST", status="200"
    )
    assert token_posts >= 1  # containerd sends the OAuth2 password form


async def test_ctr_through_hosts_toml_pulls_public_proxy_anonymously(
    auth_mirror_factory: object,
    image: PushedImage,
    upstream_registry: Registry,
    containerd: Containerd,
    hosts_dir: Path,
) -> None:
    mirror: AuthMirror = await auth_mirror_factory(  # type: ignore[operator]
        {upstream_registry.host: upstream_registry.url}, public_proxy=True
    )
    write_hosts_toml(hosts_dir, upstream_registry.host, upstream_registry.url, mirror.node_url)

    done = await containerd.pull_async(image.ref, hosts_dir)

    assert done.returncode == 0, done.stderr
    assert {b.digest for b in image.image.blobs()} <= containerd.content_digests()
    assert mirror.mirror.metric("mirror_fills_committed_total") == len(image.image.blobs())
