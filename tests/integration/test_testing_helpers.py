"""The test helpers against the real tools: what we build is a valid OCI image that
docker-registry stores, skopeo copies back byte for byte, and containerd pulls."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import socket
import tarfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from mirror.testing.images import (
    OCI_INDEX,
    OCI_LAYER_TAR,
    OCI_MANIFEST,
    REF_NAME,
    BuiltImage,
    build_image,
    random_layer,
)
from tests.peers.accesslog import parse_access_log
from tests.peers.containerd import Containerd, write_hosts_toml
from tests.peers.factory import ImageFactory
from tests.peers.htpasswd import write_htpasswd
from tests.peers.registry import Registry, RegistryStartError

pytestmark = pytest.mark.integration

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def _hex(digest: str) -> str:
    return digest.removeprefix("sha256:")


def _assert_blobs_equal(image: BuiltImage, out_dir: Path) -> None:
    for blob in image.blobs():
        assert (out_dir / _hex(blob.digest)).read_bytes() == blob.read_bytes(), blob.digest


def test_random_layer_is_reproducible_and_carries_its_marker() -> None:
    first = random_layer(random.Random(7), 2048, marker=b"MIRROR-MARKER")
    assert first == random_layer(random.Random(7), 2048, marker=b"MIRROR-MARKER")
    assert len(first) == 2048
    assert b"MIRROR-MARKER" in first
    assert len(gzip.compress(first)) > 2048  # incompressible


def test_built_layout_is_consistent(tmp_path: Path, rng: random.Random) -> None:
    contents = [random_layer(rng, 1000), random_layer(rng, 2000)]
    image = build_image(tmp_path, "v1", contents, gzip_layers=False, platform=("linux", "arm64"))

    index = json.loads((tmp_path / "index.json").read_bytes())
    assert index["manifests"][0]["annotations"] == {REF_NAME: "v1"}
    assert index["manifests"][0]["digest"] == image.manifest_digest
    manifest = json.loads(image.manifest_bytes)
    assert manifest["mediaType"] == OCI_MANIFEST
    assert [layer["mediaType"] for layer in manifest["layers"]] == [OCI_LAYER_TAR] * 2
    config = json.loads(image.config.read_bytes())
    assert (config["os"], config["architecture"]) == ("linux", "arm64")
    # Uncompressed layers: each diff_id is the layer digest itself.
    assert config["rootfs"]["diff_ids"] == [layer.digest for layer in image.layers]
    for i, layer in enumerate(image.layers):
        with tarfile.open(fileobj=io.BytesIO(layer.read_bytes())) as tar:
            member = tar.extractfile(f"layer-{i}.bin")
            assert member is not None and member.read() == contents[i]

    retagged = build_image(tmp_path, "v1", contents[:1])
    index = json.loads((tmp_path / "index.json").read_bytes())
    assert [entry["digest"] for entry in index["manifests"]] == [retagged.manifest_digest]


def test_three_layer_image_round_trips_through_the_registry(
    image_factory: ImageFactory, tmp_path: Path
) -> None:
    pushed = image_factory.push(layers=3, layer_size=64 * 1024)
    out = tmp_path / "out"
    pushed.registry.copy_to_dir(pushed.repo, pushed.tag, out)

    assert (out / "manifest.json").read_bytes() == pushed.image.manifest_bytes
    assert len(pushed.image.layers) == 3
    _assert_blobs_equal(pushed.image, out)
    config = json.loads(pushed.image.config.read_bytes())
    for layer, diff_id in zip(pushed.image.layers, config["rootfs"]["diff_ids"], strict=True):
        assert layer.diff_id == diff_id
        assert (
            "sha256:" + hashlib.sha256(gzip.decompress(layer.read_bytes())).hexdigest() == diff_id
        )


def test_index_round_trips_every_platform(image_factory: ImageFactory, tmp_path: Path) -> None:
    pushed = image_factory.push_index(platforms=(("linux", "amd64"), ("linux", "arm64")))
    out = tmp_path / "out"
    pushed.registry.copy_to_dir(pushed.repo, pushed.tag, out, all_platforms=True)

    assert (out / "manifest.json").read_bytes() == pushed.index.index_bytes
    assert json.loads(pushed.index.index_bytes)["mediaType"] == OCI_INDEX
    amd64 = pushed.index.image_for(("linux", "amd64"))
    arm64 = pushed.index.image_for(("linux", "arm64"))
    assert {layer.digest for layer in amd64.layers}.isdisjoint(
        layer.digest for layer in arm64.layers
    )
    for image in (amd64, arm64):
        child = out / f"{_hex(image.manifest_digest)}.manifest.json"
        assert child.read_bytes() == image.manifest_bytes
        _assert_blobs_equal(image, out)


def test_docker_schema2_push_keeps_blobs_and_converts_the_manifest(
    image_factory: ImageFactory, tmp_path: Path
) -> None:
    pushed = image_factory.push(docker_v2s2=True)
    out = tmp_path / "out"
    pushed.registry.copy_to_dir(pushed.repo, pushed.tag, out)

    manifest = json.loads((out / "manifest.json").read_bytes())
    assert manifest["mediaType"] == DOCKER_MANIFEST
    assert manifest["config"]["digest"] == pushed.image.config_digest
    assert [layer["digest"] for layer in manifest["layers"]] == [
        layer.digest for layer in pushed.image.layers
    ]
    assert {layer["mediaType"] for layer in manifest["layers"]} == {DOCKER_LAYER_GZIP}
    _assert_blobs_equal(pushed.image, out)


async def test_count_requests_counts_blob_requests(image_factory: ImageFactory) -> None:
    pushed = image_factory.push(layers=1)
    registry, layer = pushed.registry, pushed.image.layers[0]
    url = f"{registry.url}/v2/{pushed.repo}/blobs/{layer.digest}"
    # skopeo's push already sent HEADs (404) for the blob before uploading it.
    heads_before = registry.count_requests("HEAD", layer.digest)
    assert registry.count_requests("GET", layer.digest) == 0
    async with aiohttp.ClientSession() as session:
        for _ in range(2):
            async with session.get(url) as response:
                assert await response.read() == layer.read_bytes()
        async with session.head(url) as response:
            assert response.status == 200

    assert await registry.wait_for_requests("GET", layer.digest, 2) == 2
    assert await registry.wait_for_requests("HEAD", layer.digest, heads_before + 1) == (
        heads_before + 1
    )
    assert registry.count_requests("GET", pushed.image.config_digest) == 0


def test_parse_access_log_reads_the_combined_format() -> None:
    line = (
        '127.0.0.1 - - [27/Nov/2026:01:48:01 +0000] "GET /v2/a/blobs/sha256:00?ns=x%3A1 '
        'HTTP/1.1" 404 157 "" "containerd/1.6.20~ds1"\nnot an access line\n'
    )
    [entry] = parse_access_log(line)
    assert (entry.method, entry.path, entry.status, entry.size) == (
        "GET",
        "/v2/a/blobs/sha256:00?ns=x%3A1",
        404,
        157,
    )
    assert entry.user_agent == "containerd/1.6.20~ds1"


def test_containerd_fetches_from_the_registry_through_hosts_toml(
    image_factory: ImageFactory, containerd: Containerd, hosts_dir: Path
) -> None:
    pushed = image_factory.push()
    registry = pushed.registry
    write_hosts_toml(hosts_dir, registry.host, registry.url, registry.url)

    done = containerd.pull(pushed.ref, hosts_dir)
    assert done.returncode == 0, done.stderr

    content = containerd.content_digests()
    assert pushed.image.manifest_digest in content
    for blob in pushed.image.blobs():
        assert blob.digest in content
        assert registry.count_requests("GET", blob.digest) >= 1


def test_containerd_pulls_through_a_proxy_mirror_and_unpacks(
    image_factory: ImageFactory,
    containerd: Containerd,
    hosts_dir: Path,
    registry_factory: Callable[..., Registry],
) -> None:
    pushed = image_factory.push(layers=2)
    origin = pushed.registry
    proxy = registry_factory(proxy_remote_url=origin.url)
    write_hosts_toml(hosts_dir, origin.host, origin.url, proxy.url)

    done = containerd.pull(pushed.ref, hosts_dir, unpack=True)
    assert done.returncode == 0, done.stderr

    # The mirror served every layer (containerd tags mirror requests with ?ns=).
    for layer in pushed.image.layers:
        served = [e for e in proxy.requests() if layer.digest in e.path and e.method == "GET"]
        assert [e.status for e in served] == [200]
        assert f"ns={origin.host.replace(':', '%3A')}" in served[0].path
    images = containerd.ctr("images", "ls", "-q")
    assert pushed.ref in images.stdout.split()


def test_htpasswd_registry_requires_credentials(
    tmp_path: Path, registry_factory: Callable[..., Registry], rng: random.Random
) -> None:
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"alice": "secret"})
    registry = registry_factory(htpasswd=htpasswd)
    layout = tmp_path / "layout"
    build_image(layout, "v1", [random_layer(rng, 1024)])

    with pytest.raises(urllib.error.HTTPError) as anonymous:
        urllib.request.urlopen(f"{registry.url}/v2/")
    assert anonymous.value.code == 401
    anonymous.value.close()
    registry.push(layout, "v1", "private/app", creds=("alice", "secret"))
    registry.copy_to_dir("private/app", "v1", tmp_path / "out", creds=("alice", "secret"))
    assert (tmp_path / "out" / "manifest.json").exists()


async def test_async_lifecycle_push_copy_and_pull(
    tmp_path: Path, rng: random.Random, hosts_dir: Path
) -> None:
    """The async variants, as tests with an in-process mirror in the same loop need them."""
    layout = tmp_path / "layout"
    image = build_image(layout, "v1", [random_layer(rng, 2048) for _ in range(2)])
    async with Registry(tmp_path / "registry") as registry:
        assert registry.pid is not None
        await registry.push_async(layout, "v1", "async/app")
        await registry.copy_to_dir_async("async/app", "v1", tmp_path / "out")
        _assert_blobs_equal(image, tmp_path / "out")

        write_hosts_toml(hosts_dir, registry.host, registry.url, registry.url)
        async with Containerd(tmp_path / "containerd") as daemon:
            done = await daemon.pull_async(registry.reference("async/app", "v1"), hosts_dir)
            assert done.returncode == 0, done.stderr
            assert {blob.digest for blob in image.blobs()} <= daemon.content_digests()
        assert daemon.pid is None
    assert registry.pid is None


def test_start_failures_raise_with_the_registry_log(
    tmp_path: Path, registry_factory: Callable[..., Registry]
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))  # bound, not listening: probes are refused at once
        port = busy.getsockname()[1]
        with pytest.raises(RegistryStartError, match="address already in use"):
            Registry(tmp_path / "clash", port=port).start_sync()
    # docker-registry as a proxy exits at start when its upstream is unreachable.
    with pytest.raises(RegistryStartError, match="exited with status"):
        Registry(tmp_path / "proxy", proxy_remote_url=f"http://127.0.0.1:{port}").start_sync()
