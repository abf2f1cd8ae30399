"""``/_tier/uploads/<name>/<uuid>``: an upload session's request another replica received
and forwarded here, where the session's bytes are (see ``registry.upload_owners``).

Only a request signed with the tier secret is served. The forwarding replica authorised the
client for the repository and names it (``?tenancy=&repo=``); this replica then answers as
the public route does, and only for a session of that repository.
"""

from __future__ import annotations

from aiohttp import web

from mirror.auth.access import RepoRef
from mirror.errors import ErrorCode, RegistryError
from mirror.oci.names import validate_name
from mirror.tier.signing import HEADER
from mirror.web.keys import HOSTED_REPO
from mirror.web.registry.uploads import cancel, finish, patch, status
from mirror.web.tier import TIER

ROUTE = "/_tier/uploads/{name:.+}/{uuid}"
_HANDLERS = {"PATCH": patch, "PUT": finish, "GET": status, "DELETE": cancel}


async def held_upload(request: web.Request) -> web.StreamResponse:
    """Answer a forwarded request of an upload session this replica holds."""
    signer = request.app[TIER].signer
    if signer.verify(request.method, request.raw_path, request.headers.get(HEADER)) is None:
        raise RegistryError(ErrorCode.UNAUTHORIZED, "peer request not signed by the tier")
    tenancy, repo = request.query.get("tenancy", ""), request.query.get("repo", "")
    if not tenancy:
        raise RegistryError(ErrorCode.NAME_INVALID, "a forwarded upload names its tenancy")
    request[HOSTED_REPO] = RepoRef(tenancy, validate_name(repo), request.match_info["name"])
    return await _HANDLERS[request.method](request)


def add_upload_routes(app: web.Application) -> None:
    """Register the forwarded-upload route (HEAD is not part of an upload)."""
    for method in _HANDLERS:
        app.router.add_route(method, ROUTE, held_upload)
