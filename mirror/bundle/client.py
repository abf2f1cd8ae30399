"""A registry client of the mirror, as ``mirror export`` uses it: every request names the
source registry with containerd's ``?ns=``, so the mirror answers from its cache or fills from
that upstream, and every manifest is checked against its digest before it is used."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from typing import Any

import aiohttp

from mirror.bundle.fetched import CHUNK, FetchedManifest, FetchFailed
from mirror.oci.digest import Digest
from mirror.oci.media import MANIFEST_TYPES, MAX_MANIFEST_BYTES

# A blob may take long; only a stalled read fails.
TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=300)


class RegistryClient:
    """Reads images from the registry at ``base_url`` (the mirror) on ``session``."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self._session = session
        self._base = base_url.rstrip("/")

    def _url(self, repo: str, kind: str, reference: str) -> str:
        return f"{self._base}/v2/{repo}/{kind}/{reference}"

    async def manifest(self, host: str, repo: str, reference: str) -> FetchedManifest:
        """The manifest ``reference`` (tag or digest) of ``host/repo``; ``FetchFailed`` when it
        is missing, too large, or does not hash to the digest asked for or announced."""
        what = f"{host}/{repo}:{reference}"
        headers = {"Accept": ", ".join(MANIFEST_TYPES)}
        url = self._url(repo, "manifests", reference)
        async with self._session.get(url, params={"ns": host}, headers=headers) as response:
            if response.status != 200:
                raise FetchFailed(what, await _error_of(response))
            body = await response.content.read(MAX_MANIFEST_BYTES + 1)
            announced = response.headers.get("Docker-Content-Digest")
            media_type = response.content_type
        if len(body) > MAX_MANIFEST_BYTES:
            raise FetchFailed(what, "manifest larger than 4 MiB")
        expected = reference if ":" in reference else announced
        digest = Digest.of(body)
        if expected is not None and expected != str(digest):
            raise FetchFailed(what, f"manifest hashes to {digest}, not {expected}")
        return FetchedManifest(digest, media_type, body)

    async def blob(self, host: str, repo: str, digest: Digest) -> AsyncGenerator[bytes, None]:
        """The blob's bytes in chunks (the caller verifies them as they pass)."""
        url = self._url(repo, "blobs", str(digest))
        async with self._session.get(url, params={"ns": host}) as response:
            if response.status != 200:
                raise FetchFailed(f"{host}/{repo}@{digest}", await _error_of(response))
            left = response.content_length
            if left is None:
                async for chunk in response.content.iter_chunked(CHUNK):
                    yield chunk
                return
            while left > 0:
                chunk = await _exactly(response.content, min(CHUNK, left))
                if len(chunk) < min(CHUNK, left):
                    yield chunk  # cut short: the caller's size check says so
                    return
                left -= len(chunk)
                yield chunk

    async def referrers(self, host: str, repo: str, digest: Digest) -> list[dict[str, Any]]:
        """The descriptors of the manifests that name ``digest`` as their subject."""
        url = self._url(repo, "referrers", str(digest))
        async with self._session.get(url, params={"ns": host}) as response:
            if response.status == 404:
                return []
            if response.status != 200:
                raise FetchFailed(f"referrers of {host}/{repo}@{digest}", await _error_of(response))
            doc = json.loads(await response.content.read(MAX_MANIFEST_BYTES))
        found = doc.get("manifests") if isinstance(doc, dict) else None
        return [d for d in found if isinstance(d, dict)] if isinstance(found, list) else []


async def _exactly(content: aiohttp.StreamReader, wanted: int) -> bytes:
    """``wanted`` bytes (fewer only at the end of the stream)."""
    try:
        return await content.readexactly(wanted)
    except asyncio.IncompleteReadError as exc:
        return exc.partial


async def _error_of(response: aiohttp.ClientResponse) -> str:
    """``HTTP 404 MANIFEST_UNKNOWN: ...`` from a registry's error body, when it has one."""
    try:
        doc = json.loads(await response.content.read(64 * 1024))
        first = doc["errors"][0]
        return f"HTTP {response.status} {first.get('code')}: {first.get('message', '')}".strip()
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return f"HTTP {response.status}"
