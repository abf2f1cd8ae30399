"""A small in-process upstream registry whose misbehaviour a test can choose per blob.

Real-upstream behaviour is tested against ``docker-registry``; this one exists for what a real
registry will not do on request: send wrong bytes, hang up mid-blob, trickle, or fail. Its
content model is :class:`mirror.testing.registry.RegistryContent`, the one the well-behaved
in-process registry serves.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web

from mirror.oci.digest import Digest
from mirror.oci.media import OCI_INDEX, OCI_MANIFEST
from mirror.testing.registry import RegistryContent, blob_range, error


def digest_of(data: bytes) -> str:
    return str(Digest.of(data))


@dataclass
class FakeUpstream:
    """Content and behaviour of the fake registry, and what it was asked."""

    content: RegistryContent = field(default_factory=RegistryContent)
    # digest -> "corrupt" | "truncate" | "truncate-once" | "slow" | "chunked" | "503" | "429"
    blob_mode: dict[str, str] = field(default_factory=dict)
    manifest_mode: dict[str, str] = field(default_factory=dict)
    # subject digest -> descriptors of the manifests that refer to it
    referrers: dict[str, list[dict[str, object]]] = field(default_factory=dict)
    requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    # Accept requests and never answer them (a black-holed upstream).
    hang: bool = False
    # Answer 200 to every HEAD (echoing the digest asked for) and garbage to every GET: an
    # upstream that "has" whatever digest it is asked about.
    liar: bool = False
    # The Range headers of blob GETs, in order.
    ranges: list[str] = field(default_factory=list)
    slow_chunk: int = 64 * 1024
    slow_delay: float = 0.01

    @property
    def blobs(self) -> dict[str, bytes]:
        """The blobs by digest (a test may change one behind the mirror's back)."""
        return self.content.blobs

    def add_blob(self, data: bytes) -> str:
        return self.content.add_blob(data)

    def add_image(self, repo: str, tag: str, layers: list[bytes]) -> tuple[str, bytes]:
        """Store layers, a config and a manifest tagged ``tag``; returns (digest, manifest)."""
        config = json.dumps(
            {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
        ).encode()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": self.add_blob(config),
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": self.add_blob(layer),
                        "size": len(layer),
                    }
                    for layer in layers
                ],
            }
        ).encode()
        digest = self.content.add_manifest(repo, manifest, OCI_MANIFEST, tag)
        return digest, manifest

    def count(self, method: str, fragment: str) -> int:
        return sum(n for (m, path), n in self.requests.items() if m == method and fragment in path)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v2/", self._ping)
        app.router.add_get(r"/v2/{name:.+}/manifests/{reference}", self._manifest)
        app.router.add_get(r"/v2/{name:.+}/blobs/{digest}", self._blob)
        app.router.add_get(r"/v2/{name:.+}/referrers/{digest}", self._referrers)
        return app

    async def _ping(self, request: web.Request) -> web.Response:
        return web.json_response({})

    def _count(self, request: web.Request) -> None:
        self.requests[(request.method, request.path)] += 1

    async def _maybe_hang(self) -> None:
        if self.hang:
            await asyncio.sleep(3600)

    async def _manifest(self, request: web.Request) -> web.Response:
        self._count(request)
        await self._maybe_hang()
        name, reference = request.match_info["name"], request.match_info["reference"]
        if self.liar:
            return _lie(request, reference)
        digest = self.content.resolve(name, reference)
        mode = self.manifest_mode.get(digest or "")
        if mode == "503":
            return error("UNAVAILABLE", 503)
        stored = self.content.manifests.get(digest or "")
        if digest is None or stored is None:
            return error("MANIFEST_UNKNOWN", 404)
        body = stored.body
        if mode == "corrupt":
            body = body.replace(b"schemaVersion", b"schemaversion")
        headers = {"Docker-Content-Digest": digest, "Content-Type": stored.media_type}
        if request.method == "HEAD":
            return web.Response(headers={**headers, "Content-Length": str(len(body))})
        return web.Response(body=body, headers=headers)

    async def _referrers(self, request: web.Request) -> web.Response:
        """An upstream that does not apply the ``artifactType`` filter (the spec allows it)."""
        self._count(request)
        index = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": self.referrers.get(request.match_info["digest"], []),
        }
        return web.json_response(index, content_type=OCI_INDEX)

    async def _blob(self, request: web.Request) -> web.StreamResponse:
        self._count(request)
        await self._maybe_hang()
        digest = request.match_info["digest"]
        if "Range" in request.headers:
            self.ranges.append(request.headers["Range"])
        if self.liar:
            return _lie(request, digest)
        mode = self.blob_mode.get(digest)
        refusal = _refusal(mode)
        if refusal is not None:
            return refusal
        data = self.blobs.get(digest)
        if data is None:
            return error("BLOB_UNKNOWN", 404)
        if request.method == "HEAD":
            return web.Response(
                headers={"Content-Length": str(len(data)), "Docker-Content-Digest": digest}
            )
        if mode == "corrupt":
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        if mode == "truncate-once":
            del self.blob_mode[digest]
        response, data = _blob_response(request, digest, data, chunked=mode == "chunked")
        await response.prepare(request)
        if mode in ("truncate", "truncate-once"):
            await _hang_up_halfway(request, response, data)
        else:
            await self._send(response, data, slow=mode == "slow")
        return response

    async def _send(self, response: web.StreamResponse, data: bytes, *, slow: bool) -> None:
        """Write ``data`` at once, or ``slow_chunk`` bytes every ``slow_delay`` seconds."""
        step = self.slow_chunk if slow else len(data)
        for offset in range(0, len(data), step):
            await response.write(data[offset : offset + step])
            if slow:
                await asyncio.sleep(self.slow_delay)
        await response.write_eof()


def _lie(request: web.Request, reference: str) -> web.Response:
    """What a lying upstream answers: HEAD "has it", GET sends 4 KiB of garbage."""
    headers = {"Docker-Content-Digest": reference, "Content-Type": OCI_MANIFEST}
    if request.method == "HEAD":
        return web.Response(headers={**headers, "Content-Length": "4096"})
    return web.Response(body=b"\xa5" * 4096, headers=headers)


def _refusal(mode: str | None) -> web.Response | None:
    """The error a blob in ``mode`` answers with instead of its bytes, if any."""
    if mode == "503":
        return error("UNAVAILABLE", 503)
    if mode == "429":
        return error("TOOMANYREQUESTS", 429, **{"Retry-After": "30"})
    return None


def _blob_response(
    request: web.Request, digest: str, data: bytes, *, chunked: bool
) -> tuple[web.StreamResponse, bytes]:
    """The response head for ``data`` (206 from a ``Range`` offset) and the bytes to send."""
    response = web.StreamResponse(headers={"Docker-Content-Digest": digest})
    size = len(data)
    first, last = _range(request, size)
    if (first, last) != (0, size - 1):
        response.set_status(206)
        response.headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        data = data[first : last + 1]
    if not chunked:
        response.content_length = len(data)
    return response, data


def _range(request: web.Request, size: int) -> tuple[int, int]:
    """The bytes asked by ``Range: bytes=N-`` or ``bytes=N-M`` (all of them without one)."""
    spec = request.headers.get("Range", "")
    first, _, last = spec.removeprefix("bytes=").partition("-")
    if not first:
        return blob_range(request), size - 1
    return int(first), min(int(last), size - 1) if last else size - 1


async def _hang_up_halfway(request: web.Request, response: web.StreamResponse, data: bytes) -> None:
    """Send half of ``data``, then close the connection."""
    await response.write(data[: len(data) // 2])
    await asyncio.sleep(0.05)
    assert request.transport is not None
    request.transport.close()
