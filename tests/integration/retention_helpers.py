"""Helpers for the retention tests: images with chosen layers, pulls, and what is on disk."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import aiohttp

from mirror.oci.media import OCI_INDEX, OCI_MANIFEST
from mirror.testing.images import BuiltImage, build_image
from tests.peers.registry import Registry
from tests.peers.skopeo import skopeo_copy_async

from .conftest import Mirror

DAY = 24 * 3600.0


def push_image(
    registry: Registry, layout_root: Path, repo: str, tag: str, layers: list[bytes]
) -> BuiltImage:
    """Build an image of exactly ``layers`` (so tests can share layers) and push it."""
    layout = layout_root / f"{repo.replace('/', '-')}-{tag}"
    image = build_image(layout, tag, layers)
    registry.push(layout, tag, repo)
    return image


async def skopeo_pull(mirror: Mirror, ref: str, out: Path, *options: str) -> None:
    await skopeo_copy_async(
        f"docker://{mirror.host}/{ref}", f"dir:{out}", "--src-tls-verify=false", *options
    )


def assert_pulled(out: Path, image: BuiltImage) -> None:
    """Every blob of ``image`` arrived in ``out`` (skopeo ``dir:``) with the right bytes."""
    for blob in image.blobs():
        assert (out / blob.digest.split(":")[1]).read_bytes() == blob.read_bytes(), blob.digest


def on_disk(mirror: Mirror) -> set[str]:
    """Digests of every object in the mirror's cache directory."""
    return {f"sha256:{path.name}" for path in mirror.cached_blob_files()}


def disk_usage(mirror: Mirror) -> int:
    """Bytes in the cache directory and in fills in progress."""
    files = [*mirror.cached_blob_files(), *(mirror.data_dir / "tmp").iterdir()]
    return sum(path.stat().st_size for path in files if path.is_file())


async def http_pull(mirror: Mirror, repo: str, tag: str) -> dict[str, bytes]:
    """Pull ``repo:tag`` (manifest, config, layers) over HTTP, checking every digest;
    returns the bytes by digest."""
    accept = f"{OCI_MANIFEST}, {OCI_INDEX}"
    got: dict[str, bytes] = {}
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{mirror.url}/v2/{repo}/manifests/{tag}", headers={"Accept": accept}
        ) as resp:
            assert resp.status == 200, await resp.text()
            body = await resp.read()
            digest = resp.headers["Docker-Content-Digest"]
        assert "sha256:" + hashlib.sha256(body).hexdigest() == digest
        got[digest] = body
        manifest = json.loads(body)
        for descriptor in [manifest["config"], *manifest["layers"]]:
            async with http.get(f"{mirror.url}/v2/{repo}/blobs/{descriptor['digest']}") as resp:
                assert resp.status == 200, await resp.text()
                data = await resp.read()
            actual = "sha256:" + hashlib.sha256(data).hexdigest()
            assert actual == descriptor["digest"], f"wrong bytes for {descriptor['digest']}"
            got[actual] = data
    return got
