"""Repositories of a tenancy: the list, create, public/private, delete with a confirmation step.

Every check is the admin API's own (``inspectable_repositories``, ``managed_repository``),
every change its own service call (``create_managed``, ``delete_managed``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiohttp import web

from mirror.auth.access import RepoRef
from mirror.console.contents import Records, Summary, blob_sizes, summary
from mirror.console.keys import CLOCK
from mirror.console.paging import page_of
from mirror.console.permissions import creatable_names, may_create_in
from mirror.console.render import page
from mirror.console.viewer import Viewer, form_of, mirror_app, viewer
from mirror.hosted.names import hosted_key
from mirror.retention.inventory import Inventory
from mirror.web.admin.repos import (
    create_managed,
    delete_managed,
    inspectable_repositories,
    managed_repository,
)
from mirror.web.keys import AUTH, CACHE, SERVICES


@dataclass(frozen=True, slots=True)
class Row:
    """One repository in the list."""

    name: str
    hosted: bool
    public: bool
    summary: Summary


def records_of(app: web.Application, ref: RepoRef) -> Records:
    """Where a repository's content is recorded: its hosted key, or its rules' cache keys."""
    auth = app[AUTH]
    if auth.resolver.is_hosted(ref):
        return [(hosted_key(ref.tenancy), ref.name)]
    return auth.resolver.records_of(ref)


async def inventory(request: web.Request) -> Inventory:
    """Retention's snapshot of what is kept now, read off the event loop."""
    now = request.app[CLOCK].now()
    return await asyncio.to_thread(Inventory.load, mirror_app(request)[SERVICES].metadata, now)


async def home(request: web.Request) -> web.Response:
    """``GET /console/``: the viewer's tenancy's repositories (auth off: what is cached)."""
    who = viewer(request)
    if who.principal.tenancy is None:
        return await cached_list(request, who)
    raise web.HTTPSeeOther(f"/console/t/{who.principal.tenancy}/repositories")


async def cached_list(request: web.Request, who: Viewer) -> web.Response:
    """The read-only list of a mirror with auth off: every cached repository."""
    snapshot = await inventory(request)
    rows = []
    shown = page_of(request, sorted(snapshot.repositories()))
    for upstream, repo in shown.items:
        line = summary(snapshot, [(upstream, repo)])
        rows.append(Row(f"{upstream}/{repo}", False, True, line))
    return page(
        request,
        "repositories.html",
        who,
        tenancy=None,
        rows=rows,
        listing=shown,
        error=None,
        tenant_admin=False,
        can_create=False,
        creatable=[],
    )


async def repositories(request: web.Request) -> web.Response:
    """``GET /console/t/{tenancy}/repositories``: those the viewer may inspect."""
    who = viewer(request)
    return await _list(request, who, None, 200)


async def _list(request: web.Request, who: Viewer, error: str | None, status: int) -> web.Response:
    app = mirror_app(request)
    assert who.auth is not None
    tenancy = request.match_info["tenancy"]
    shown = page_of(request, inspectable_repositories(who.auth, who.principal, tenancy))
    snapshot = await inventory(request)
    rows = []
    for record in shown.items:
        ref = RepoRef(tenancy, record.name, f"{tenancy}/{record.name}")
        records = records_of(app, ref)
        line = summary(snapshot, records)
        blobs = await blob_sizes(app[CACHE], snapshot, records)
        sized = Summary(line.images, line.size + blobs, line.last_push, line.last_pull)
        hosted = who.auth.resolver.is_hosted(ref)
        rows.append(Row(record.name, hosted, record.public, sized))
    admin = who.auth.authorizer.is_tenancy_admin(who.principal, tenancy)
    # Creating needs manage on the new name, which the policies decide per name: offered when
    # some name would pass; the POST still checks the name it is given (403 otherwise).
    creates = may_create_in(who.auth, who.principal, tenancy)
    return page(
        request,
        "repositories.html",
        who,
        status,
        tenancy=tenancy,
        rows=rows,
        listing=shown,
        error=error,
        tenant_admin=admin,
        can_create=creates,
        creatable=creatable_names(who.auth, who.principal, tenancy) if creates else [],
    )


async def create(request: web.Request) -> web.Response:
    """``POST .../repositories``: create one (private unless ``public`` is ticked)."""
    who = viewer(request)
    data = await form_of(request, who)
    assert who.auth is not None
    tenancy = request.match_info["tenancy"]
    ref = managed_repository(who.auth, who.principal, tenancy, data.get("name", "").strip())
    create_managed(mirror_app(request), ref, data.get("public") == "on")
    raise web.HTTPSeeOther(f"/console/t/{tenancy}/repositories/{ref.name}")


async def visibility(request: web.Request) -> web.Response:
    """``POST .../repositories/{name}/visibility``: make it public or private."""
    who = viewer(request)
    data = await form_of(request, who)
    assert who.auth is not None
    tenancy = request.match_info["tenancy"]
    ref = managed_repository(who.auth, who.principal, tenancy, request.match_info["name"])
    who.auth.identity.set_public(tenancy, ref.name, data.get("public") == "true")
    raise web.HTTPSeeOther(f"/console/t/{tenancy}/repositories/{ref.name}")


async def confirm_delete(request: web.Request) -> web.Response:
    """``GET .../repositories/{name}/delete``: the confirmation step (type the name)."""
    who = viewer(request)
    assert who.auth is not None
    tenancy = request.match_info["tenancy"]
    ref = managed_repository(who.auth, who.principal, tenancy, request.match_info["name"])
    return page(request, "delete.html", who, tenancy=tenancy, name=ref.name, error=None)


async def delete(request: web.Request) -> web.Response:
    """``POST .../repositories/{name}/delete``: delete it once its name was typed again."""
    who = viewer(request)
    data = await form_of(request, who)
    assert who.auth is not None
    tenancy = request.match_info["tenancy"]
    ref = managed_repository(who.auth, who.principal, tenancy, request.match_info["name"])
    if data.get("confirm", "").strip() != ref.name:
        error = f"Type {ref.name} to confirm."
        return page(request, "delete.html", who, 400, tenancy=tenancy, name=ref.name, error=error)
    delete_managed(mirror_app(request), ref)
    raise web.HTTPSeeOther(f"/console/t/{tenancy}/repositories")
