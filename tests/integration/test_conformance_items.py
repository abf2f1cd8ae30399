"""What the OCI conformance suites and real clients found, against a real docker-registry
(distribution 2.8): invalid tags, referrers without an upstream referrers API, port-free
upstream aliases, Accept negotiation, anonymous tag listing, readiness and one-line reasons."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import aiohttp
import pytest

from mirror.cli.main import parser
from mirror.cli.serve import config_from_args
from mirror.oci.digest import Digest
from mirror.oci.media import DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST
from mirror.testing.images import build_index
from tests.peers.factory import ImageFactory
from tests.peers.ports import free_port
from tests.peers.registry import Registry
from tests.peers.skopeo import SkopeoError, skopeo_copy_async

from .conftest import AuthMirrorFactory, Mirror, MirrorFactory

pytestmark = pytest.mark.integration

SIGNATURE = "application/vnd.example.signature"
SBOM = "application/vnd.example.sbom"
DOCKER_LIST = DOCKER_MANIFEST_LIST


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_a_reference_that_is_no_valid_tag_is_manifest_unknown(
    mirror: Mirror, image_factory: ImageFactory, method: str
) -> None:
    # The conformance suites ask for ".INVALID_MANIFEST_NAME": no tag has that name, so no
    # manifest is found (404), not a malformed request (400).
    pushed = image_factory.push("v1", layers=1)
    async with aiohttp.ClientSession() as http:
        url = f"{mirror.url}/v2/{pushed.repo}/manifests/.INVALID_MANIFEST_NAME"
        async with http.request(method, url) as resp:
            assert resp.status == 404
            if method == "GET":
                assert (await resp.json())["errors"][0]["code"] == "MANIFEST_UNKNOWN"


async def test_referrers_without_an_upstream_referrers_api_is_an_empty_index(
    mirror: Mirror, image_factory: ImageFactory, upstream_registry: Registry
) -> None:
    pushed = image_factory.push("v1", layers=1)
    async with aiohttp.ClientSession() as http:
        # distribution 2.8 has no referrers API.
        url = f"/v2/{pushed.repo}/referrers/{pushed.image.manifest_digest}"
        async with http.get(f"{upstream_registry.url}{url}") as resp:
            assert resp.status == 404
        for digest in (pushed.image.manifest_digest, str(Digest.of(b"nothing refers to this"))):
            async with http.get(f"{mirror.url}/v2/{pushed.repo}/referrers/{digest}") as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"] == OCI_INDEX
                doc = await resp.json(content_type=None)
                assert doc == {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}


async def _put_referrers_tag(
    http: aiohttp.ClientSession, registry: Registry, repo: str, subject: str, index: bytes
) -> None:
    """Push an index under the referrers tag schema's tag ``sha256-<hex>`` of ``subject``."""
    tag = subject.replace(":", "-")
    async with http.put(
        f"{registry.url}/v2/{repo}/manifests/{tag}",
        data=index,
        headers={"Content-Type": OCI_INDEX},
    ) as resp:
        assert resp.status == 201, await resp.text()


async def test_referrers_use_the_upstreams_tag_schema_index(
    mirror: Mirror, image_factory: ImageFactory, upstream_registry: Registry
) -> None:
    subject = image_factory.push("v1", layers=1)
    signature = image_factory.push("sig", layers=1)
    sbom = image_factory.push("sbom", layers=1)
    descriptors = [
        {
            "mediaType": OCI_MANIFEST,
            "digest": pushed.image.manifest_digest,
            "size": len(pushed.image.manifest_bytes),
            "artifactType": artifact_type,
        }
        for pushed, artifact_type in ((signature, SIGNATURE), (sbom, SBOM))
    ]
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors})
    async with aiohttp.ClientSession() as http:
        await _put_referrers_tag(
            http, upstream_registry, subject.repo, subject.image.manifest_digest, index.encode()
        )
        url = f"{mirror.url}/v2/{subject.repo}/referrers/{subject.image.manifest_digest}"
        async with http.get(url) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == OCI_INDEX
            assert (await resp.json(content_type=None))["manifests"] == descriptors
        async with http.get(url, params={"artifactType": SBOM}) as resp:
            assert resp.status == 200
            assert resp.headers["OCI-Filters-Applied"] == "artifactType"
            assert (await resp.json(content_type=None))["manifests"] == descriptors[1:]


async def _manifest_answer(
    http: aiohttp.ClientSession, base: str, repo: str, reference: str, accept: str
) -> tuple[int, str | None]:
    """Status and ``Docker-Content-Digest`` (or error code) of a manifest GET."""
    url = f"{base}/v2/{repo}/manifests/{reference}"
    async with http.get(url, headers={"Accept": accept}) as resp:
        if resp.status != 200:
            return resp.status, (await resp.json(content_type=None))["errors"][0]["code"]
        return resp.status, resp.headers["Docker-Content-Digest"]


async def test_oci_index_to_image_only_accept_is_404_as_in_distribution(
    mirror: Mirror, image_factory: ImageFactory, upstream_registry: Registry
) -> None:
    pushed = image_factory.push_index("multi")
    async with aiohttp.ClientSession() as http:
        for accept in (OCI_MANIFEST, DOCKER_MANIFEST):
            origin = await _manifest_answer(
                http, upstream_registry.url, pushed.repo, "multi", accept
            )
            assert origin == (404, "MANIFEST_UNKNOWN")
            assert await _manifest_answer(http, mirror.url, pushed.repo, "multi", accept) == origin


async def test_docker_list_to_image_only_accept_is_amd64_as_in_distribution(
    mirror: Mirror, image_factory: ImageFactory, upstream_registry: Registry
) -> None:
    index = build_index(
        image_factory.layout_dir,
        "list",
        [("linux", "arm64"), ("linux", "amd64")],
        rng=image_factory.rng,
    )
    upstream_registry.push(
        image_factory.layout_dir, "list", image_factory.repo, docker_v2s2=True, all_platforms=True
    )
    repo = image_factory.repo
    async with aiohttp.ClientSession() as http:
        listed = await _manifest_answer(http, upstream_registry.url, repo, "list", DOCKER_LIST)
        assert listed[0] == 200
        origin = await _manifest_answer(http, upstream_registry.url, repo, "list", DOCKER_MANIFEST)
        assert origin[0] == 200 and origin != listed
        assert await _manifest_answer(http, mirror.url, repo, "list", DOCKER_MANIFEST) == origin
    # skopeo converted the images to schema2, so the digest is the converted amd64 child's.
    assert index.image_for(("linux", "amd64")).manifest_digest != origin[1]


async def _skopeo(*args: str) -> tuple[int, str, str]:
    """Run ``skopeo ARGS``: exit status, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        "skopeo", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_anonymous_skopeo_inspect_of_a_public_proxy_repository_lists_its_tags(
    auth_mirror_factory: AuthMirrorFactory,
    image_factory: ImageFactory,
    upstream_registry: Registry,
) -> None:
    # Public means pull and list tags: skopeo inspect lists the tags (RepoTags) anonymously.
    pushed = image_factory.push("v1", layers=1)
    image_factory.push("v2", layers=1)
    mirror = await auth_mirror_factory(
        {upstream_registry.host: upstream_registry.url}, public_proxy=True
    )
    status, out, err = await _skopeo(
        "inspect", "--tls-verify=false", f"docker://{mirror.node_host}/{pushed.repo}:v1"
    )
    assert status == 0, err
    inspected = json.loads(out)
    assert inspected["Digest"] == pushed.image.manifest_digest
    assert sorted(inspected["RepoTags"]) == ["v1", "v2"]


async def test_tags_of_a_private_proxy_repository_stay_refused_to_anonymous(
    auth_mirror_factory: AuthMirrorFactory,
    image_factory: ImageFactory,
    upstream_registry: Registry,
) -> None:
    pushed = image_factory.push("v1", layers=1)
    mirror = await auth_mirror_factory({upstream_registry.host: upstream_registry.url})
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{mirror.node_url}/v2/{pushed.repo}/tags/list") as resp:
            assert resp.status == 401
            assert (await resp.json())["errors"][0]["code"] == "UNAUTHORIZED"


async def test_skopeo_pulls_an_upstream_with_a_port_through_its_port_free_alias(
    mirror: Mirror, image_factory: ImageFactory, upstream_registry: Registry, tmp_path: Path
) -> None:
    pushed = image_factory.push("v1", layers=2)
    host_path = f"docker://{mirror.host}/{upstream_registry.host}/{pushed.repo}:v1"
    with pytest.raises(SkopeoError, match="invalid reference format"):
        await skopeo_copy_async(host_path, f"dir:{tmp_path / 'refused'}", "--src-tls-verify=false")
    alias = upstream_registry.host.replace(":", "-")
    await skopeo_copy_async(
        f"docker://{mirror.host}/{alias}/{pushed.repo}:v1",
        f"dir:{tmp_path / 'out'}",
        "--src-tls-verify=false",
    )
    out = tmp_path / "out"
    assert (out / "manifest.json").read_bytes() == pushed.image.manifest_bytes
    for layer in pushed.image.layers:
        assert (out / layer.digest.split(":")[1]).read_bytes() == layer.read_bytes()


def test_the_upstream_flag_sets_aliases_and_keeps_the_port_free_one(tmp_path: Path) -> None:
    args = parser().parse_args(
        [
            "serve",
            "--data-dir",
            str(tmp_path / "data"),
            "--upstream",
            "127.0.0.1:5000,local=http://127.0.0.1:5000",
            "--default-upstream",
            "local",
        ]
    )
    config = config_from_args(args)
    upstream = config.upstream("local")
    assert upstream is not None and upstream.host == "127.0.0.1:5000"
    assert upstream.aliases == ("local", "127.0.0.1-5000")
    with pytest.raises(SystemExit):
        parser().parse_args(["serve", "--upstream", "a.test,=http://a.test"])


async def test_readyz_is_unavailable_without_a_usable_upstream(
    mirror_factory: MirrorFactory,
) -> None:
    closed = f"127.0.0.1:{free_port()}"
    mirror = await mirror_factory({closed: f"http://{closed}"})
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{mirror.url}/readyz") as resp:
            assert resp.status == 503
            doc = await resp.json()
    assert doc["status"] == "unavailable"
    assert doc["reason"] == (
        f"no usable upstream: {closed}: cannot connect to {closed}: connection refused"
    )
    assert doc["checks"]["upstreams"] == {closed: f"cannot connect to {closed}: connection refused"}


async def test_readyz_is_unavailable_after_the_metadata_directory_was_deleted(
    mirror: Mirror,
) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{mirror.url}/readyz") as resp:
            assert resp.status == 200
        shutil.rmtree(mirror.data_dir / "metadata")
        async with http.get(f"{mirror.url}/readyz") as resp:
            assert resp.status == 503
            reason = (await resp.json())["reason"]
    assert reason == f"metadata directory {mirror.data_dir / 'metadata'} is missing"


async def test_a_pull_from_an_unresolvable_upstream_says_so_in_one_line(
    mirror_factory: MirrorFactory,
) -> None:
    mirror = await mirror_factory(
        {"registry.invalid": "http://registry.invalid"},
        upstream_options={"retries": 0, "connect_timeout": 5.0},
    )
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{mirror.url}/v2/team/app/manifests/v1") as resp:
            assert resp.status == 503
            error = (await resp.json())["errors"][0]
    assert error["code"] == "UNAVAILABLE"
    assert error["message"] == (
        "upstream registry.invalid unreachable: cannot resolve host registry.invalid"
    )
