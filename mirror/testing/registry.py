"""An in-process OCI registry for tests and ``mirror demo``: an aiohttp app on 127.0.0.1 that
serves blobs, manifests (by tag or digest) and tag lists from memory (distribution-spec
"Pull" and "Content discovery"), filled from built images or by pushes (monolithic or chunked
uploads, manifest PUT).

One pool of content is shared by every repository; only tags belong to a repository.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web

from mirror.errors import RegistryError
from mirror.oci.digest import Digest
from mirror.oci.media import OCI_MANIFEST
from mirror.oci.ranges import parse_range, resolve_range
from mirror.testing.images import BuiltImage, BuiltIndex
from mirror.testing.loopback import serve_on_loopback


@dataclass(frozen=True, slots=True)
class StoredManifest:
    """A manifest's bytes as pushed and the media type it is served with."""

    media_type: str
    body: bytes


@dataclass
class RegistryContent:
    """What a registry holds: blobs and manifests by digest, tags by ``(repo, tag)``."""

    blobs: dict[str, bytes] = field(default_factory=dict)
    manifests: dict[str, StoredManifest] = field(default_factory=dict)
    tags: dict[tuple[str, str], str] = field(default_factory=dict)

    def add_blob(self, data: bytes) -> str:
        """Store ``data``; returns its digest."""
        digest = str(Digest.of(data))
        self.blobs[digest] = data
        return digest

    def add_manifest(self, repo: str, body: bytes, media_type: str, tag: str | None = None) -> str:
        """Store a manifest (tagged ``tag`` in ``repo`` if given); returns its digest."""
        digest = str(Digest.of(body))
        self.manifests[digest] = StoredManifest(media_type, body)
        if tag:
            self.tags[(repo, tag)] = digest
        return digest

    def resolve(self, repo: str, reference: str) -> str | None:
        """The digest ``reference`` (a tag or a digest) names in ``repo``, if any."""
        return reference if ":" in reference else self.tags.get((repo, reference))

    def tag_list(self, repo: str) -> list[str]:
        """The tags of ``repo``, sorted."""
        return sorted(tag for (name, tag) in self.tags if name == repo)

    def add_image(self, repo: str, image: BuiltImage | BuiltIndex) -> str:
        """Seed a built image or index (with every child and blob) under its tag; returns
        the digest of the manifest or index."""
        if isinstance(image, BuiltIndex):
            for child in image.images:
                self.add_image(repo, child)
            return self.add_manifest(repo, image.index_bytes, image.index.media_type, image.tag)
        for blob in image.blobs():
            self.add_blob(blob.read_bytes())
        return self.add_manifest(
            repo, image.manifest_bytes, image.manifest.media_type, image.tag or None
        )


def error(code: str, status: int, **headers: str) -> web.Response:
    """A distribution-spec error answer with one ``code``."""
    return web.json_response({"errors": [{"code": code}]}, status=status, headers=headers)


def blob_range(request: web.Request) -> int:
    """The first byte asked by a ``Range: bytes=N-`` header (0 without one)."""
    return int(request.headers.get("Range", "bytes=0-")[6:].rstrip("-") or 0)


class InProcessRegistry:
    """A registry serving ``content``; :meth:`app` for a test client, :meth:`serve` for a
    real socket on 127.0.0.1."""

    def __init__(self, content: RegistryContent | None = None) -> None:
        self.content = content if content is not None else RegistryContent()
        self._uploads: dict[str, bytearray] = {}
        self._upload_ids = itertools.count(1)

    def app(self) -> web.Application:
        """The registry's routes as an aiohttp application."""
        app = web.Application(client_max_size=1 << 30)
        app.router.add_get("/v2/", self._ping)
        name = r"/v2/{name:.+}"
        app.router.add_get(name + "/tags/list", self._tags)
        app.router.add_get(name + "/manifests/{reference}", self._manifest)
        app.router.add_put(name + "/manifests/{reference}", self._put_manifest)
        app.router.add_get(name + "/blobs/{digest:[a-z0-9]+:[a-f0-9]+}", self._blob)
        app.router.add_post(name + "/blobs/uploads/", self._start_upload)
        app.router.add_patch(name + "/blobs/uploads/{id}", self._patch_upload)
        app.router.add_put(name + "/blobs/uploads/{id}", self._finish_upload)
        return app

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[str]:
        """Listen on a free port of 127.0.0.1 while the context lasts; yields the base URL."""
        async with serve_on_loopback(self.app()) as url:
            yield url

    async def _ping(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def _tags(self, request: web.Request) -> web.Response:
        repo = request.match_info["name"]
        tags = self.content.tag_list(repo)
        if not tags:
            return error("NAME_UNKNOWN", 404)
        return web.json_response({"name": repo, "tags": tags})

    async def _manifest(self, request: web.Request) -> web.Response:
        name, reference = request.match_info["name"], request.match_info["reference"]
        digest = self.content.resolve(name, reference)
        stored = self.content.manifests.get(digest or "")
        if digest is None or stored is None:
            return error("MANIFEST_UNKNOWN", 404)
        headers = {"Docker-Content-Digest": digest, "Content-Type": stored.media_type}
        if request.method == "HEAD":
            return web.Response(headers={**headers, "Content-Length": str(len(stored.body))})
        return web.Response(body=stored.body, headers=headers)

    async def _put_manifest(self, request: web.Request) -> web.Response:
        name, reference = request.match_info["name"], request.match_info["reference"]
        body = await request.read()
        media_type = request.headers.get("Content-Type") or _declared_type(body)
        tag = None if ":" in reference else reference
        if tag is None and str(Digest.of(body)) != reference:
            return error("DIGEST_INVALID", 400)
        digest = self.content.add_manifest(name, body, media_type, tag)
        location = f"/v2/{name}/manifests/{digest}"
        return web.Response(
            status=201, headers={"Location": location, "Docker-Content-Digest": digest}
        )

    async def _blob(self, request: web.Request) -> web.Response:
        digest = request.match_info["digest"]
        data = self.content.blobs.get(digest)
        if data is None:
            return error("BLOB_UNKNOWN", 404)
        headers = {"Docker-Content-Digest": digest, "Content-Type": "application/octet-stream"}
        if request.method == "HEAD":
            return web.Response(headers={**headers, "Content-Length": str(len(data))})
        try:
            spec = parse_range(request.headers.get("Range"))
            wanted = None if spec is None else resolve_range(spec, len(data))
        except RegistryError:
            return error("RANGE_INVALID", 416, **{"Content-Range": f"bytes */{len(data)}"})
        # ``bytes=0-`` is answered whole with a 200, as before closed ranges were served.
        if wanted is None or (spec == (0, None)):
            return web.Response(body=data, headers=headers)
        headers["Content-Range"] = wanted.content_range()
        return web.Response(status=206, body=data[wanted.first : wanted.last + 1], headers=headers)

    async def _start_upload(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        digest = request.query.get("digest")
        if digest is not None:  # monolithic: POST with the whole blob
            return self._commit(name, digest, await request.read())
        upload = str(next(self._upload_ids))
        self._uploads[upload] = bytearray()
        return self._upload_state(202, name, upload)

    async def _patch_upload(self, request: web.Request) -> web.Response:
        name, upload = request.match_info["name"], request.match_info["id"]
        if upload not in self._uploads:
            return error("BLOB_UPLOAD_UNKNOWN", 404)
        self._uploads[upload] += await request.read()
        return self._upload_state(202, name, upload)

    async def _finish_upload(self, request: web.Request) -> web.Response:
        name, upload = request.match_info["name"], request.match_info["id"]
        if upload not in self._uploads or "digest" not in request.query:
            return error("BLOB_UPLOAD_UNKNOWN", 404)
        data = bytes(self._uploads.pop(upload) + await request.read())
        return self._commit(name, request.query["digest"], data)

    def _upload_state(self, status: int, name: str, upload: str) -> web.Response:
        size = len(self._uploads[upload])
        headers = {
            "Location": f"/v2/{name}/blobs/uploads/{upload}",
            "Range": f"0-{max(size - 1, 0)}",
            "Docker-Upload-UUID": upload,
        }
        return web.Response(status=status, headers=headers)

    def _commit(self, name: str, digest: str, data: bytes) -> web.Response:
        if str(Digest.of(data)) != digest:
            return error("DIGEST_INVALID", 400)
        self.content.add_blob(data)
        headers = {"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest}
        return web.Response(status=201, headers=headers)


def _declared_type(body: bytes) -> str:
    try:
        media_type = json.loads(body).get("mediaType")
    except (ValueError, AttributeError):
        return OCI_MANIFEST
    return media_type if isinstance(media_type, str) else OCI_MANIFEST
