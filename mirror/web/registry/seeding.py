"""A seeding station (auth off, ``server.allow_anonymous_push``, loopback only): names no
configured upstream serves are hosted repositories ``<tenancy>/<repo>``, pushed and pulled
anonymously, so ``skopeo copy`` into the station works end to end (blob checks, uploads,
manifest ``PUT``) and the seeded data directory can be carried to an air-gapped site."""

from __future__ import annotations

import ipaddress

from aiohttp import web
from aiohttp.typedefs import Handler

from mirror.auth.access import RepoRef
from mirror.errors import ErrorCode, RegistryError
from mirror.hosted.repositories import hosted_target
from mirror.oci.digest import Digest
from mirror.oci.names import validate_name
from mirror.web.keys import HOSTED, TARGET, services


def on_loopback(request: web.Request) -> bool:
    """Whether the request came in on a loopback address of this host."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if not sockname:
        return False
    try:
        return ipaddress.ip_address(str(sockname[0]).split("%")[0]).is_loopback
    except ValueError:
        return False


def seeded_repository(request: web.Request, name: str) -> RepoRef | None:
    """``name`` as a hosted repository of the station (no upstream serves it), or ``None``."""
    try:
        services(request).router.resolve(name, request.query.get("ns"))
    except RegistryError:
        tenancy, sep, repo = name.partition("/")
        if sep and tenancy and is_name(name):
            return RepoRef(tenancy, repo, name)
    return None


def is_name(name: str) -> bool:
    """Whether ``name`` is a valid repository name."""
    try:
        validate_name(name)
    except RegistryError:
        return False
    return True


@web.middleware
async def seeding_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Resolve a station's hosted names to their hosted target; a blob it does not hold is
    ``BLOB_UNKNOWN`` (never asked of an upstream). Anything off loopback is refused."""
    name = request.match_info.get("name")
    if name is None or not request.path.startswith("/v2/"):
        return await handler(request)
    ref = seeded_repository(request, name)
    if ref is None:
        return await handler(request)
    if not on_loopback(request):
        raise RegistryError(ErrorCode.DENIED, "anonymous pushes are taken on loopback only")
    where = hosted_target(ref.tenancy, ref.name, ref.path)
    request[TARGET] = where
    digest = request.match_info.get("digest")
    if request.method in ("GET", "HEAD") and digest is not None:
        parsed = Digest.parse(digest)
        if not await request.app[HOSTED].holds_blob(where, parsed):
            raise RegistryError(ErrorCode.BLOB_UNKNOWN, detail={"digest": digest})
    return await handler(request)


def install_seeding(app: web.Application) -> None:
    """Add the seeding middleware (inside the error middleware)."""
    app.middlewares.append(seeding_middleware)
