"""Tags list, referrers and catalog (distribution-spec "Content discovery")."""

from __future__ import annotations

from aiohttp import web

from mirror.db.roles import Repositories
from mirror.errors import ErrorCode, RegistryError
from mirror.hosted.repositories import is_hosted
from mirror.oci.digest import Digest
from mirror.oci.media import OCI_INDEX
from mirror.oci.names import validate_tag
from mirror.pullthrough.listing import Listing
from mirror.web.access import visible_repositories
from mirror.web.keys import HOSTED, services, target

_MAX_DIGITS = 18


def _page_size(request: web.Request) -> int | None:
    raw = request.query.get("n")
    if raw is None:
        return None
    # ASCII digits only (``"²".isdigit()`` is true), and few enough for ``int`` to take.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > _MAX_DIGITS:
        raise RegistryError(ErrorCode.PAGINATION_NUMBER_INVALID, detail={"n": raw[:64]})
    return int(raw)


def _answer(listing: Listing) -> web.Response:
    response = web.Response(status=200, body=listing.body, headers=listing.headers)
    response.content_type = listing.content_type
    if listing.stale:
        response.headers["Warning"] = '110 - "Response is Stale"'
    return response


async def tags(request: web.Request) -> web.Response:
    """``GET /v2/<name>/tags/list`` with ``n`` and ``last``: from upstream, or the hosted
    repository's own tags."""
    where = target(request)
    n = _page_size(request)
    last = request.query.get("last")
    if last is not None:
        validate_tag(last)
    if not is_hosted(where):
        return _answer(await services(request).listing.tags(where, n, last))
    found, more = request.app[HOSTED].tags(where, n, last)
    headers: dict[str, str] = {}
    if more:
        headers["Link"] = f'</v2/{where.name}/tags/list?last={found[-1]}&n={n}>; rel="next"'
    return web.json_response({"name": where.name, "tags": found}, headers=headers)


async def referrers(request: web.Request) -> web.Response:
    """``GET /v2/<name>/referrers/<digest>`` with the ``artifactType`` filter: from upstream,
    or the manifests pushed into a hosted repository with this ``subject``."""
    where = target(request)
    digest = Digest.parse(request.match_info["digest"])
    artifact_type = request.query.get("artifactType")
    if not is_hosted(where):
        return _answer(await services(request).listing.referrers(where, digest, artifact_type))
    body = request.app[HOSTED].referrers(where, digest, artifact_type)
    headers = {"OCI-Filters-Applied": "artifactType"} if artifact_type else {}
    return _answer(Listing(body, OCI_INDEX, headers))


async def catalog(request: web.Request) -> web.Response:
    """``GET /v2/_catalog``: the repositories this mirror has cached, paginated."""
    svc = services(request)
    cached: Repositories = svc.metadata
    n = _page_size(request)
    last = request.query.get("last")
    names = sorted(
        repo if svc.router.is_default(upstream) else f"{upstream}/{repo}"
        for upstream, repo in cached.repositories()
    )
    names = visible_repositories(request, names)
    if last is not None:
        names = [name for name in names if name > last]
    headers: dict[str, str] = {}
    if n is not None and len(names) > n:
        names = names[:n]
        if names:  # n=0 asks for an empty page: there is no last name to go on from
            headers["Link"] = f'</v2/_catalog?last={names[-1]}&n={n}>; rel="next"'
    response = web.json_response({"repositories": names}, headers=headers)
    return response
