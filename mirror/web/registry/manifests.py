"""``GET``/``HEAD /v2/<name>/manifests/<reference>`` (distribution-spec "Pulling manifests")."""

from __future__ import annotations

from aiohttp import web

from mirror.errors import ErrorCode, RegistryError
from mirror.oci.digest import is_digest
from mirror.oci.media import parse_accept
from mirror.oci.names import TAG_PATTERN
from mirror.web.keys import services, target


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
    svc.manifests.record_pull(where, found)
    return web.Response(status=200, body=found.body, headers=headers)
