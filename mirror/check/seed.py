"""Seed the origin with a fresh random image (reproducible from a seed) through the
distribution-spec push API: each blob by ``POST`` then ``PUT ?digest=``, then the manifest."""

from __future__ import annotations

import random
import tempfile
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from mirror.oci.digest import Digest
from mirror.testing.images import BuiltImage, build_image, random_layer


@dataclass(frozen=True, slots=True)
class SeededImage:
    """The image the checks pull: its repository, tags and every blob's bytes by digest."""

    repo: str
    tag: str
    uncached_tag: str
    image: BuiltImage
    blobs: dict[str, bytes]
    uncached_blob: str

    @property
    def layers(self) -> list[str]:
        """The layer digests, in manifest order."""
        return [layer.digest for layer in self.image.layers]


class SeedError(RuntimeError):
    """The origin refused a push (carries the status and the request)."""


async def push_blob(
    http: aiohttp.ClientSession, origin: str, repo: str, data: bytes, digest: str
) -> None:
    """Upload one blob; raises :class:`SeedError` if the origin refuses."""
    async with http.post(f"{origin}/v2/{repo}/blobs/uploads/") as started:
        if started.status != 202:
            raise SeedError(f"POST upload of {repo}: {started.status}")
        location = started.headers["Location"]
    if location.startswith("/"):
        location = origin + location
    separator = "&" if "?" in location else "?"
    async with http.put(f"{location}{separator}digest={digest}", data=data) as done:
        if done.status != 201:
            raise SeedError(f"PUT blob {digest}: {done.status}")


async def push_manifest(
    http: aiohttp.ClientSession, origin: str, repo: str, tag: str, image: BuiltImage
) -> None:
    """Put ``image``'s manifest under ``tag``; raises :class:`SeedError` if refused."""
    headers = {"Content-Type": image.manifest.media_type}
    url = f"{origin}/v2/{repo}/manifests/{tag}"
    async with http.put(url, data=image.manifest_bytes, headers=headers) as done:
        if done.status != 201:
            raise SeedError(f"PUT manifest {repo}:{tag}: {done.status}")


def build_random(layout: Path, rng: random.Random, layers: int, size: int) -> BuiltImage:
    """An uncompressed image of ``layers`` random layers of ``size`` bytes each."""
    contents = [random_layer(rng, size) for _ in range(layers)]
    return build_image(layout, "check", contents, gzip_layers=False)


async def seed(
    http: aiohttp.ClientSession, origin: str, rng: random.Random, *, layers: int, size: int
) -> SeededImage:
    """Push a random image to ``origin`` under a random repository, tagged twice (one tag the
    checks never pull), plus one extra blob they never pull."""
    repo = f"check/{rng.randbytes(4).hex()}"
    with tempfile.TemporaryDirectory(prefix="mirror-check-") as scratch:
        image = build_random(Path(scratch), rng, layers, size)
        blobs = {blob.digest: blob.read_bytes() for blob in image.blobs()}
    extra = random_layer(rng, size)
    extra_digest = str(Digest.of(extra))
    for digest, data in [*blobs.items(), (extra_digest, extra)]:
        await push_blob(http, origin, repo, data, digest)
    await push_manifest(http, origin, repo, "v1", image)
    await push_manifest(http, origin, repo, "never-pulled", image)
    return SeededImage(repo, "v1", "never-pulled", image, blobs, extra_digest)
