"""The operations a benchmark measures, each one request or one client-like sequence that
ends in an :class:`~mirror.bench.loops.Outcome`. Bodies are streamed and hashed, never kept
whole (ranges excepted): a wrong byte is an error, whatever the status said."""

from __future__ import annotations

import asyncio
import hashlib

import aiohttp

from mirror.bench.image import ACCEPT, Blob, Image, ImageError, ImageRef, child_digest, parse_image
from mirror.bench.loops import Outcome
from mirror.bench.target import Target

CHUNK = 256 * 1024


def _hasher(digest: str) -> hashlib._Hash | None:
    algorithm = digest.partition(":")[0]
    return hashlib.new(algorithm) if algorithm in ("sha256", "sha512") else None


def _matches(digest: str, data: bytes) -> bool:
    hasher = _hasher(digest)
    if hasher is None:
        return False
    hasher.update(data)
    return f"{digest.partition(':')[0]}:{hasher.hexdigest()}" == digest


async def manifest(
    http: aiohttp.ClientSession, target: Target, repo: str, reference: str, method: str
) -> tuple[Outcome, bytes, str]:
    """``HEAD`` or ``GET`` a manifest; the outcome, the body and its digest."""
    url = target.address(f"/v2/{repo}/manifests/{reference}")
    async with http.request(method, url, headers={"Accept": ACCEPT}) as resp:
        body = await resp.read()
        if resp.status != 200:
            return Outcome(error=f"HTTP {resp.status}"), b"", ""
        digest = resp.headers.get("Docker-Content-Digest", "")
        if method == "GET":
            if ":" in reference and not _matches(reference, body):
                return Outcome(error="digest mismatch"), b"", ""
            digest = digest or f"sha256:{hashlib.sha256(body).hexdigest()}"
        elif not digest:
            return Outcome(error="no Docker-Content-Digest"), b"", ""
        return Outcome(len(body)), body, digest


async def blob(http: aiohttp.ClientSession, target: Target, repo: str, wanted: Blob) -> Outcome:
    """``GET`` a whole blob, hashing it as it streams."""
    url = target.address(f"/v2/{repo}/blobs/{wanted.digest}")
    hasher = _hasher(wanted.digest)
    size = 0
    async with http.get(url) as resp:
        if resp.status != 200:
            await resp.read()
            return Outcome(error=f"HTTP {resp.status}")
        async for chunk in resp.content.iter_chunked(CHUNK):
            size += len(chunk)
            if hasher is not None:
                hasher.update(chunk)
    if hasher is None or f"{hasher.name}:{hasher.hexdigest()}" != wanted.digest:
        return Outcome(size, "digest mismatch")
    return Outcome(size)


async def _range(
    http: aiohttp.ClientSession, url: str, start: int, end: int, gate: asyncio.Semaphore
) -> bytes | str:
    async with gate, http.get(url, headers={"Range": f"bytes={start}-{end}"}) as resp:
        body = await resp.read()
        if resp.status != 206:
            return f"HTTP {resp.status} to Range"
        if len(body) != end - start + 1:
            return "short range"
        return body


async def ranged_blob(
    http: aiohttp.ClientSession,
    target: Target,
    repo: str,
    wanted: Blob,
    *,
    chunk: int,
    parallel: int,
) -> Outcome:
    """A blob fetched as ``parallel`` concurrent ranges of ``chunk`` bytes (containerd 2.1's
    parallel unpack pattern), reassembled and checked against its digest."""
    if wanted.size <= 0:
        return Outcome(error="blob size unknown")
    url = target.address(f"/v2/{repo}/blobs/{wanted.digest}")
    gate = asyncio.Semaphore(parallel)
    spans = [(s, min(s + chunk, wanted.size) - 1) for s in range(0, wanted.size, chunk)]
    parts = await asyncio.gather(*(_range(http, url, s, e, gate) for s, e in spans))
    failed = next((part for part in parts if isinstance(part, str)), None)
    if failed is not None:
        return Outcome(error=failed)
    data = b"".join(part for part in parts if isinstance(part, bytes))
    if not _matches(wanted.digest, data):
        return Outcome(len(data), "digest mismatch")
    return Outcome(len(data))


async def _digest_of_tag(
    http: aiohttp.ClientSession, target: Target, ref: ImageRef
) -> tuple[Outcome, str]:
    """What containerd does first: ``HEAD`` the tag for its ``Docker-Content-Digest``; the
    tag itself when the answer names no digest (containerd then GETs by tag)."""
    if ":" in ref.reference:
        return Outcome(), ref.reference
    head, _, digest = await manifest(http, target, ref.repo, ref.reference, "HEAD")
    if head.error == "no Docker-Content-Digest":
        return Outcome(), ref.reference
    return head, digest


async def resolve(
    http: aiohttp.ClientSession, target: Target, ref: ImageRef
) -> tuple[Outcome, Image | None]:
    """Resolve ``ref`` as containerd does (``HEAD`` by tag, then ``GET`` by digest, and an
    index's child): the outcome and the image."""
    head, reference = await _digest_of_tag(http, target, ref)
    if head.error:
        return head, None
    outcome, body, digest = await manifest(http, target, ref.repo, reference, "GET")
    if outcome.error:
        return outcome, None
    size = outcome.size
    try:
        child = child_digest(body)
        if child is not None:
            outcome, body, digest = await manifest(http, target, ref.repo, child, "GET")
            if outcome.error:
                return outcome, None
            size += outcome.size
        return Outcome(size), parse_image(ref.repo, ref.reference, digest, body)
    except ImageError as error:
        return Outcome(error=f"bad manifest: {error}"), None


async def pull(
    http: aiohttp.ClientSession, target: Target, ref: ImageRef, concurrency: int
) -> Outcome:
    """A whole-image pull as a node does it: :func:`resolve` the tag, then fetch the config
    and the layers, ``concurrency`` at a time (containerd's default is 3)."""
    outcome, image = await resolve(http, target, ref)
    if image is None:
        return outcome
    gate = asyncio.Semaphore(concurrency)

    async def one(wanted: Blob) -> Outcome:
        async with gate:
            return await blob(http, target, ref.repo, wanted)

    parts = await asyncio.gather(*(one(wanted) for wanted in image.blobs))
    size = outcome.size + sum(part.size for part in parts)
    return Outcome(size, next((part.error for part in parts if part.error), ""))
