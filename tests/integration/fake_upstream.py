"""A small in-process upstream registry whose misbehaviour a test can choose per blob.

Real-upstream behaviour is tested against ``docker-registry``; this one exists for what a real
registry will not do on request: send wrong bytes, hang up mid-blob, trickle, or fail.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web

from mirror.oci.media import OCI_INDEX, OCI_MANIFEST


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class FakeUpstream:
    """Content and behaviour of the fake registry, and what it was asked."""

    blobs: dict[str, bytes] = field(default_factory=dict)
    manifests: dict[str, bytes] = field(default_factory=dict)
    tags: dict[tuple[str, str], str] = field(default_factory=dict)
    # digest -> "corrupt" | "truncate" | "truncate-once" | "slow" | "chunked" | "503" | "429"
    blob_mode: dict[str, str] = field(default_factory=dict)
    manifest_mode: dict[str, str] = field(default_factory=dict)
    # subject digest -> descriptors of the manifests that refer to it
    referrers: dict[str, list[dict[str, object]]] = field(default_factory=dict)
    requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    # Accept requests and never answer them (a black-holed upstream).
    hang: bool = False
    slow_chunk: int = 64 * 1024
    slow_delay: float = 0.01

    def add_blob(self, data: bytes) -> str:
        digest = digest_of(data)
        self.blobs[digest] = data
        return digest

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
        digest = digest_of(manifest)
        self.manifests[digest] = manifest
        self.tags[(repo, tag)] = digest
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
        digest = reference if ":" in reference else self.tags.get((name, reference))
        mode = self.manifest_mode.get(digest or "")
        if mode == "503":
            return web.json_response({"errors": [{"code": "UNAVAILABLE"}]}, status=503)
        if digest is None or digest not in self.manifests:
            return web.json_response({"errors": [{"code": "MANIFEST_UNKNOWN"}]}, status=404)
        body = self.manifests[digest]
        if mode == "corrupt":
            body = body.replace(b"schemaVersion", b"schemaversion")
        headers = {"Docker-Content-Digest": digest, "Content-Type": OCI_MANIFEST}
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
        mode = self.blob_mode.get(digest)
        if mode == "503":
            return web.json_response({"errors": [{"code": "UNAVAILABLE"}]}, status=503)
        if mode == "429":
            return web.json_response(
                {"errors": [{"code": "TOOMANYREQUESTS"}]}, status=429, headers={"Retry-After": "30"}
            )
        data = self.blobs.get(digest)
        if data is None:
            return web.json_response({"errors": [{"code": "BLOB_UNKNOWN"}]}, status=404)
        if request.method == "HEAD":
            return web.Response(
                headers={"Content-Length": str(len(data)), "Docker-Content-Digest": digest}
            )
        if mode == "corrupt":
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        if mode == "truncate-once":
            del self.blob_mode[digest]
        response = web.StreamResponse(headers={"Docker-Content-Digest": digest})
        size = len(data)
        offset = int(request.headers.get("Range", "bytes=0-")[6:].rstrip("-") or 0)
        if offset:
            response.set_status(206)
            response.headers["Content-Range"] = f"bytes {offset}-{size - 1}/{size}"
            data = data[offset:]
        if mode != "chunked":
            response.content_length = len(data)
        await response.prepare(request)
        if mode in ("truncate", "truncate-once"):
            await response.write(data[: len(data) // 2])
            await asyncio.sleep(0.05)
            assert request.transport is not None
            request.transport.close()
            return response
        step = self.slow_chunk if mode == "slow" else len(data)
        for offset in range(0, len(data), step):
            await response.write(data[offset : offset + step])
            if mode == "slow":
                await asyncio.sleep(self.slow_delay)
        await response.write_eof()
        return response
