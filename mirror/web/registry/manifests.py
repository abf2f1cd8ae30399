"""``/v2/<name>/manifests/<reference>``: ``GET``/``HEAD`` (distribution-spec "Pulling
manifests") of cached and hosted repositories; ``PUT`` and ``DELETE`` of hosted ones."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from mirror.errors import ErrorCode, RegistryError
from mirror.hosted.repositories import HostedRepositories, is_hosted
from mirror.hosted.repositories import hosted_target as hosted_target_of
from mirror.oci.digest import is_digest
from mirror.oci.media import parse_accept
from mirror.oci.names import TAG_PATTERN
from mirror.pullthrough.manifests import Manifest
from mirror.upstream.routing import Target
from mirror.web.keys import HOSTED, TARGET, services, target
from mirror.web.registry.uploads import hosted_of


async def manifest(request: web.Request) -> web.Response:
    """Answer a manifest by tag or digest, with exact digest, length and media type."""
    where = target(request)
    svc = services(request)
    accept = parse_accept(request.headers.getall("Accept", []))
    reference = request.match_info["reference"]
    if not is_digest(reference) and not TAG_PATTERN.fullmatch(reference):
        # No tag can have this name, so no manifest has it: 404 as the spec's pull tests
        # expect (distribution's router answers the same), not 400 TAG_INVALID.
        raise RegistryError(
            ErrorCode.MANIFEST_UNKNOWN,
            "no manifest has this reference: it is not a valid tag",
            detail={"reference": reference},
        )
    hosted = request.app[HOSTED] if is_hosted(where) else None
    found: Manifest
    if hosted is not None:
        found = await hosted.manifest(where, reference, accept)
    else:
        found = await svc.manifests.get(where, reference, accept)
    headers = {
        "Docker-Content-Digest": str(found.digest),
        "Content-Type": found.media_type,
        "Content-Length": str(len(found.body)),
    }
    if found.stale:
        headers["Warning"] = '110 - "Response is Stale"'
    if request.method == "HEAD":
        return web.Response(status=200, headers=headers)
    if hosted is not None:
        hosted.record_pull(where, found)
    else:
        svc.manifests.record_pull(where, found)
    return web.Response(status=200, body=found.body, headers=headers)


def hosted_target(request: web.Request) -> tuple[HostedRepositories, Target]:
    """The hosted repository a write addresses: checked by the auth middleware, or (auth off)
    one ``server.allow_anonymous_push`` admits; else 405 ``UNSUPPORTED`` (auth off) or 403
    ``DENIED`` for a pull-through cache."""
    ref = hosted_of(request)
    where = request.get(TARGET) or hosted_target_of(ref.tenancy, ref.name, ref.path)
    if not is_hosted(where):
        raise RegistryError(ErrorCode.DENIED, "this repository is a pull-through cache")
    return request.app[HOSTED], where


async def put_manifest(request: web.Request) -> web.Response:
    """``PUT``: store a pushed manifest under a tag or its digest; 201 with ``Location``,
    ``Docker-Content-Digest`` and, for a manifest with a ``subject``, ``OCI-Subject``."""
    hosted, where = hosted_target(request)
    limit = hosted.max_manifest_bytes
    if (request.content_length or 0) > limit:
        raise RegistryError(
            ErrorCode.SIZE_INVALID,
            f"manifest is larger than the limit of {limit} bytes",
            detail={"size": request.content_length, "limit": limit},
            status=413,
        )
    body = await _read_limited(request, limit)
    reference = request.match_info["reference"]
    pushed = await hosted.put_manifest(where, reference, body, request.headers.get("Content-Type"))
    name = request.match_info["name"]
    headers = {
        "Location": f"/v2/{quote(name)}/manifests/{pushed.digest}",
        "Docker-Content-Digest": str(pushed.digest),
    }
    if pushed.subject is not None:
        headers["OCI-Subject"] = str(pushed.subject)
    return web.Response(status=201, headers=headers)


async def _read_limited(request: web.Request, limit: int) -> bytes:
    """The request body, at most ``limit`` bytes (one more is read to tell it is over)."""
    body = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > limit:
            break
    return bytes(body)


async def delete_manifest(request: web.Request) -> web.Response:
    """``DELETE`` by digest (the manifest and its tags) or by tag (the tag); 202."""
    hosted, where = hosted_target(request)
    hosted.delete_manifest(where, request.match_info["reference"])
    return web.Response(status=202)
