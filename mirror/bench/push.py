"""Pushing, as zot's ``zb`` measures it: a blob in one ``PUT`` (monolithic) or in ``PATCH``
chunks then a closing ``PUT`` (chunked); and seeding an origin with a fresh random image
(reproducible from the run's random generator) that a mirror has never seen."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import aiohttp

from mirror.bench.image import ImageRef
from mirror.bench.loops import Outcome
from mirror.bench.target import Target
from mirror.check.seed import build_random, push_blob, push_manifest
from mirror.oci.digest import Digest


async def _start_upload(
    http: aiohttp.ClientSession, target: Target, repo: str
) -> tuple[str | None, str]:
    async with http.post(target.address(f"/v2/{repo}/blobs/uploads/")) as started:
        await started.read()
        if started.status != 202 or "Location" not in started.headers:
            return None, f"HTTP {started.status} to POST upload"
        return target.address(started.headers["Location"]), ""


def _with_digest(location: str, digest: str) -> str:
    return f"{location}{'&' if '?' in location else '?'}digest={digest}"


async def push_monolithic(
    http: aiohttp.ClientSession, target: Target, repo: str, data: bytes
) -> Outcome:
    """``POST`` an upload, then ``PUT`` the whole blob with its digest."""
    location, error = await _start_upload(http, target, repo)
    if location is None:
        return Outcome(error=error)
    headers = {"Content-Type": "application/octet-stream"}
    url = _with_digest(location, str(Digest.of(data)))
    async with http.put(url, data=data, headers=headers) as done:
        await done.read()
        return Outcome(len(data)) if done.status == 201 else Outcome(error=f"HTTP {done.status}")


async def push_chunked(
    http: aiohttp.ClientSession, target: Target, repo: str, data: bytes, chunk: int
) -> Outcome:
    """``POST`` an upload, ``PATCH`` it ``chunk`` bytes at a time, ``PUT`` to close it."""
    location, error = await _start_upload(http, target, repo)
    if location is None:
        return Outcome(error=error)
    for start in range(0, len(data), chunk):
        piece = data[start : start + chunk]
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{start}-{start + len(piece) - 1}",
        }
        async with http.patch(location, data=piece, headers=headers) as part:
            await part.read()
            if part.status != 202 or "Location" not in part.headers:
                return Outcome(error=f"HTTP {part.status} to PATCH")
            location = target.address(part.headers["Location"])
    async with http.put(_with_digest(location, str(Digest.of(data)))) as done:
        await done.read()
        return Outcome(len(data)) if done.status == 201 else Outcome(error=f"HTTP {done.status}")


async def seed_image(
    http: aiohttp.ClientSession,
    origin: Target,
    rng: random.Random,
    *,
    layers: int,
    size: int,
) -> ImageRef:
    """Push a new random image to ``origin`` as ``bench/<random>:v1``; raises
    :class:`mirror.check.seed.SeedError` when the origin refuses."""
    repo = f"bench/{rng.randbytes(4).hex()}"
    with tempfile.TemporaryDirectory(prefix="mirror-bench-") as scratch:
        image = build_random(Path(scratch), rng, layers, size)
        blobs = [(blob.digest, blob.read_bytes()) for blob in image.blobs()]
    for digest, data in blobs:
        await push_blob(http, origin.url, repo, data, digest)
    await push_manifest(http, origin.url, repo, "v1", image)
    return ImageRef(repo, "v1")
