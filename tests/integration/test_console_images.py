"""A repository's page with what real pushes leave: an index's platforms (pushed by skopeo
with --all) and a referrer (an artifact whose subject is the index)."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import aiohttp
import pytest

from mirror.db.identity.records import ADMINISTRATORS
from mirror.hosted.names import hosted_key
from mirror.oci.digest import Digest
from mirror.testing.images import build_index
from mirror.web.keys import CACHE
from tests.peers.skopeo import skopeo_copy_async

from .conftest import AuthMirror, AuthMirrorFactory
from .console_client import ConsoleUser
from .test_auth_tokens import basic

pytestmark = pytest.mark.integration

UPSTREAMS = {"127.0.0.1:9": "http://127.0.0.1:9"}
SBOM = "application/spdx+json"
EMPTY = "application/vnd.oci.empty.v1+json"


@pytest.fixture
async def mirror(auth_mirror_factory: AuthMirrorFactory) -> AuthMirror:
    if shutil.which("skopeo") is None:
        pytest.skip("needs skopeo")
    return await auth_mirror_factory(UPSTREAMS)


async def push_referrer(mirror: AuthMirror, who: dict[str, str], subject: str, size: int) -> str:
    """An SBOM artifact manifest whose subject is ``subject``; its digest."""
    empty = b"{}"
    await mirror.mirror.app[CACHE].put(Digest.of(empty), empty)
    mirror.mirror.services.metadata.link(hosted_key("acme"), "multi", [Digest.of(empty)])
    doc = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": SBOM,
        "config": {"mediaType": EMPTY, "digest": str(Digest.of(empty)), "size": 2},
        "layers": [{"mediaType": EMPTY, "digest": str(Digest.of(empty)), "size": 2}],
        "subject": {
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": subject,
            "size": size,
        },
    }
    body = json.dumps(doc).encode()
    digest = str(Digest.of(body))
    headers = {**who, "Content-Type": "application/vnd.oci.image.manifest.v1+json"}
    async with aiohttp.ClientSession() as http:
        url = f"{mirror.url}/v2/acme/multi/manifests/{digest}"
        async with http.put(url, data=body, headers=headers) as resp:
            assert resp.status == 201, await resp.text()
    return digest


async def test_an_index_shows_its_platforms_and_its_referrers(
    mirror: AuthMirror, tmp_path: Path
) -> None:
    login, token = mirror.user("acme", "boss", ADMINISTRATORS)
    built = build_index(
        tmp_path / "layout",
        "v1",
        [("linux", "amd64"), ("linux", "arm64")],
        rng=random.Random(7),
    )
    await skopeo_copy_async(
        f"oci:{tmp_path / 'layout'}:v1",
        f"docker://{mirror.host}/acme/multi:v1",
        "--all",
        "--dest-tls-verify=false",
        f"--dest-creds={login}:{token}",
    )
    sbom = await push_referrer(
        mirror, basic(login, token), built.index_digest, len(built.index_bytes)
    )
    user = ConsoleUser(mirror.node_url)
    try:
        assert await user.sign_in(login, token) == 200
        status, page = await user.get("/console/t/acme/repositories/multi")
    finally:
        await user.close()
    assert status == 200
    assert built.index_digest in page
    assert "linux/amd64" in page and "linux/arm64" in page
    for image in built.images:
        assert image.manifest_digest in page
    referrers = page.split("<h4>Referrers</h4>")[1].split("</ul>")[0]
    assert sbom in referrers and SBOM in referrers
