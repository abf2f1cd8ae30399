"""The kubelet's path to a private hosted image: containerd's CRI plugin pulls
``<mirror>/acme/...`` with the credentials of an imagePullSecret made by ``kubectl create
secret docker-registry --dry-run=client``, and without them the pull fails with 401.

The kubelet picks the secret's ``.dockerconfigjson`` entry whose key is the image's registry
host and hands it to the runtime as the CRI ``AuthConfig``; containerd sends it only to a host
its ``server_address`` names (or anywhere when that is empty). Here the image's registry *is*
the mirror's registry face, so the secret names the mirror host (``localhost:PORT``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
from pathlib import Path

import grpc
import pytest

from mirror.db.identity.records import ADMINISTRATORS
from tests.peers.containerd import write_hosts_toml
from tests.peers.cri import CriContainerd, CriImageClient, RegistryAuth
from tests.peers.factory import ImageFactory
from tests.peers.registry import Registry
from tests.peers.skopeo import skopeo_copy_async

from .conftest import AuthMirror

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

READERS = ["allow group readers to read repos in tenancy"]


async def image_pull_secret(server: str, login: str, token: str) -> dict[str, dict[str, str]]:
    """The ``auths`` of the ``.dockerconfigjson`` kubectl puts in a docker-registry secret."""
    proc = await asyncio.create_subprocess_exec(
        "kubectl", "create", "secret", "docker-registry", "acme-pull",
        f"--docker-server={server}", f"--docker-username={login}",
        f"--docker-password={token}", "--dry-run=client", "-o", "json",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    secret = json.loads(out)
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    auths: dict[str, dict[str, str]] = json.loads(
        base64.b64decode(secret["data"][".dockerconfigjson"])
    )["auths"]
    return auths


def kubelet_auth(auths: dict[str, dict[str, str]], image: str, server_address: str) -> RegistryAuth:
    """The entry whose key is ``image``'s registry host, as the CRI ``AuthConfig`` (its
    ``auth`` field decoded to the user and password the kubelet passes)."""
    entry = auths[image.split("/", 1)[0]]
    user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
    assert (user, password) == (entry["username"], entry["password"])
    return RegistryAuth(user, password, server_address=server_address)


@pytest.mark.parametrize("address", ["url", "empty"], ids=["keyed-by-the-mirror", "no-address"])
async def test_cri_pulls_a_private_hosted_image_with_an_image_pull_secret(
    address: str,
    auth_mirror: AuthMirror,
    image_factory: ImageFactory,
    upstream_registry: Registry,
    hosts_dir: Path,
    cri_containerd: CriContainerd,
) -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("needs kubectl (scripts/install-test-deps.sh installs it where it can)")
    pushed = image_factory.push("v1", layers=2, layer_size=80_000)
    boss = auth_mirror.user("acme", "boss", ADMINISTRATORS)
    image = f"{auth_mirror.host}/acme/apps/private:v1"
    await skopeo_copy_async(
        f"docker://{upstream_registry.host}/{pushed.repo}:v1", f"docker://{image}",
        "--src-tls-verify=false", "--dest-tls-verify=false",
        f"--dest-creds={boss[0]}:{boss[1]}", "--preserve-digests",
    )  # fmt: skip
    # The registry host's own hosts.toml: plain HTTP to the mirror, which is the origin.
    write_hosts_toml(hosts_dir, auth_mirror.host, auth_mirror.url, auth_mirror.url)
    kubelet = CriImageClient(cri_containerd.socket)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await kubelet.pull_image(image)
    assert "401" in str(refused.value.details()) or "unauthorized" in str(refused.value).lower()

    login, token = auth_mirror.user("acme", "node", "readers", policy=READERS)
    auths = await image_pull_secret(auth_mirror.host, login, token)
    server = auth_mirror.url if address == "url" else ""
    image_ref = await kubelet.pull_image(image, kubelet_auth(auths, image, server))
    assert image_ref == pushed.image.config.digest
