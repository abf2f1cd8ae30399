"""A repository's page: its images (tags, digests, platforms, media types, sizes, layers,
created, last pulled and tagged, referrers) and the pull command to copy."""

from __future__ import annotations

from aiohttp import web

from mirror.auth.access import RepoRef
from mirror.auth.policy.grammar import Verb
from mirror.console.contents import images_of, referrers_of, views_of
from mirror.console.paging import page_of
from mirror.console.render import page
from mirror.console.viewer import mirror_app, viewer
from mirror.console.views.repositories import inventory, records_of
from mirror.errors import ErrorCode, RegistryError
from mirror.hosted.repositories import hosted_target
from mirror.web.keys import CACHE, HOSTED


async def repository(request: web.Request) -> web.Response:
    """``GET /console/t/{tenancy}/repositories/{name}``: needs ``inspect`` on it, as its tags
    list does; 404 ``NAME_UNKNOWN`` for a repository with no settings."""
    who = viewer(request)
    assert who.auth is not None
    app = mirror_app(request)
    tenancy, name = request.match_info["tenancy"], request.match_info["name"]
    who.auth.identity.require_tenancy(tenancy)
    ref = RepoRef(tenancy, name, f"{tenancy}/{name}")
    if not who.auth.authorizer.permits_tag_listing(who.principal, ref):
        raise RegistryError(ErrorCode.DENIED)
    record = who.auth.identity.repository(tenancy, name)
    if record is None:
        raise RegistryError(ErrorCode.NAME_UNKNOWN, detail={"name": ref.path})
    snapshot = await inventory(request)
    listing = page_of(request, images_of(snapshot, records_of(app, ref)))
    views = await views_of(app[CACHE], listing.items)
    hosted = who.auth.resolver.is_hosted(ref)
    if hosted:
        # The referrers API's own answer: what was pushed with each image as its subject.
        target = hosted_target(tenancy, name, ref.path)
        for view in views:
            index = app[HOSTED].referrers(target, view.image.digest, None)
            view.referrers = referrers_of(index)
    return page(
        request,
        "repository.html",
        who,
        tenancy=tenancy,
        repo=record,
        hosted=hosted,
        manageable=who.auth.authorizer.permits(who.principal, ref, Verb.MANAGE),
        images=views,
        listing=listing,
        registry=who.auth.resolver.registry_face(request.host),
    )
