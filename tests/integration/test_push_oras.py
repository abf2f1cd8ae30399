"""oras-py (the ORAS Python client) pushes two artifacts with a ``subject`` into a hosted
repository with a user's login; the referrers API of the mirror lists both for the subject,
and with ``?artifactType=`` only the matching one (``OCI-Filters-Applied: artifactType``).

oras-py logs in with its ``basic`` auth backend: its default ``token`` backend keeps the first
token it gets (pull-scoped, from the ``HEAD`` of a blob) and re-authenticates only on a 403, so
the upload ``POST`` answered 401 with ``insufficient_scope`` fails; distribution and Docker Hub
answer that 401 too (RFC 6750 says 403, which docker and containerd do not re-authenticate on).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import oras.client
import oras.oci
import pytest

from mirror.db.identity.records import ADMINISTRATORS
from tests.peers.factory import ImageFactory
from tests.peers.registry import Registry
from tests.peers.skopeo import skopeo_copy_async

from .conftest import AuthMirror
from .test_auth_tokens import basic

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SBOM = "application/vnd.example.sbom.v1+json"
SIGNATURE = "application/vnd.example.signature.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def oras_push(
    host: str, login: tuple[str, str], target: str, payload: Path, artifact_type: str,
    subject: oras.oci.Subject,
) -> dict[str, str]:  # fmt: skip
    """Push ``payload`` as an artifact (config media type ``artifact_type``) with ``subject``
    through oras-py, as its users do; the response headers of the manifest PUT. Its docker
    config (written by ``login``) lives beside ``payload``, not in the user's home."""
    client = oras.client.OrasClient(hostname=host, insecure=True, auth_backend="basic")
    config = str(payload.with_name("docker-config.json"))
    client.login(
        username=login[0], password=login[1], hostname=host, tls_verify=False, config_path=config
    )
    response = client.push(
        target=target,
        config_path=config,
        files=[f"{payload}:application/vnd.example.layer"],
        manifest_config=f"/dev/null:{artifact_type}",
        subject=subject,
        disable_path_validation=True,
        quiet=True,
    )
    return dict(response.headers)


async def get_json(url: str, who: dict[str, str]) -> tuple[int, dict[str, str], Any]:
    async with aiohttp.ClientSession() as http, http.get(url, headers=who) as resp:
        return resp.status, dict(resp.headers), await resp.json(content_type=None)


async def test_oras_artifacts_with_a_subject_are_found_by_the_referrers_api(
    auth_mirror: AuthMirror,
    image_factory: ImageFactory,
    upstream_registry: Registry,
    tmp_path: Path,
) -> None:
    pushed = image_factory.push("v1", layers=1, layer_size=10_000)
    login = auth_mirror.user("acme", "boss", ADMINISTRATORS)
    repo = "acme/apps/signed"
    await skopeo_copy_async(
        f"docker://{upstream_registry.host}/{pushed.repo}:v1",
        f"docker://{auth_mirror.host}/{repo}:v1",
        "--src-tls-verify=false", "--dest-tls-verify=false",
        f"--dest-creds={login[0]}:{login[1]}", "--preserve-digests", "--format", "oci",
    )  # fmt: skip
    who = basic(*login)
    base = f"{auth_mirror.url}/v2/{repo}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/manifests/v1", headers={**who, "Accept": OCI_MANIFEST}) as r:
            assert r.status == 200
            subject = oras.oci.Subject(
                OCI_MANIFEST, pushed.image.manifest_digest, len(await r.read())
            )
    payload = tmp_path / "sbom.json"
    payload.write_text('{"packages": []}')

    headers = await asyncio.to_thread(
        oras_push,
        auth_mirror.host,
        login,
        f"{auth_mirror.host}/{repo}:sbom",
        payload,
        SBOM,
        subject,
    )
    assert headers.get("OCI-Subject") == pushed.image.manifest_digest
    await asyncio.to_thread(
        oras_push, auth_mirror.host, login, f"{auth_mirror.host}/{repo}:sig", payload, SIGNATURE,
        subject,
    )  # fmt: skip

    referrers = f"{base}/referrers/{pushed.image.manifest_digest}"
    status, headers, index = await get_json(referrers, who)
    assert status == 200 and headers["Content-Type"].startswith("application/vnd.oci.image.index")
    assert sorted(m["artifactType"] for m in index["manifests"]) == [SBOM, SIGNATURE]
    status, headers, index = await get_json(f"{referrers}?artifactType={quote(SBOM)}", who)
    assert status == 200 and headers.get("OCI-Filters-Applied") == "artifactType"
    assert [m["artifactType"] for m in index["manifests"]] == [SBOM]
    # The referrer is the manifest oras pushed as :sbom.
    status, tagged, _ = await get_json(f"{base}/manifests/sbom", {**who, "Accept": OCI_MANIFEST})
    assert index["manifests"][0]["digest"] == tagged["Docker-Content-Digest"]
    # Outside the tenancy nobody learns the referrers exist.
    eve = basic(*auth_mirror.user("beta", "eve", ADMINISTRATORS))
    status, _, body = await get_json(referrers, eve)
    assert status in (401, 403, 404) and "errors" in body
