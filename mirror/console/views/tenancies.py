"""Every tenancy, for system administrators (as ``GET /admin/v1/tenancies``): the way into
another tenancy's pages; create one, and delete one once its name was typed again. The checks
and changes are the admin API's own (``require_system_admin``, ``create_tenancy_named``,
``delete_tenancy_of``)."""

from __future__ import annotations

from aiohttp import web

from mirror.auth.service import AuthService
from mirror.console.render import page
from mirror.console.viewer import Viewer, form_of, mirror_app
from mirror.console.views.access import signed_in
from mirror.errors import RegistryError
from mirror.web.admin.identity import (
    create_tenancy_named,
    delete_tenancy_of,
    require_system_admin,
)


def _operator(request: web.Request) -> tuple[Viewer, AuthService]:
    who, auth = signed_in(request)
    require_system_admin(auth, who.principal)
    return who, auth


def _list(
    request: web.Request, who: Viewer, auth: AuthService, error: str | None, status: int = 200
) -> web.Response:
    names = [t.name for t in auth.identity.tenancies()]
    admin = auth.authorizer.admin_tenancy
    return page(
        request, "tenancies.html", who, status, tenancies=names, admin_tenancy=admin, error=error
    )


async def tenancies(request: web.Request) -> web.Response:
    """``GET /console/tenancies``."""
    who, auth = _operator(request)
    return _list(request, who, auth, None)


async def create(request: web.Request) -> web.Response:
    """``POST /console/tenancies``: a new, empty tenancy."""
    who, auth = _operator(request)
    data = await form_of(request, who)
    try:
        name = create_tenancy_named(auth, data.get("name", "").strip())
    except RegistryError as exc:
        return _list(request, who, auth, exc.message, exc.status)
    raise web.HTTPSeeOther(f"/console/t/{name}/users")


def _confirm(
    request: web.Request, who: Viewer, name: str, error: str | None, status: int = 200
) -> web.Response:
    return page(request, "tenancy_delete.html", who, status, tenancy=name, error=error)


async def confirm_delete(request: web.Request) -> web.Response:
    """``GET /console/tenancies/{tenancy}/delete``: the confirmation step (type the name)."""
    who, auth = _operator(request)
    name = request.match_info["tenancy"]
    auth.identity.require_tenancy(name)
    return _confirm(request, who, name, None)


async def delete(request: web.Request) -> web.Response:
    """``POST /console/tenancies/{tenancy}/delete``: delete it and all it holds."""
    who, auth = _operator(request)
    data = await form_of(request, who)
    name = request.match_info["tenancy"]
    auth.identity.require_tenancy(name)
    if data.get("confirm", "").strip() != name:
        return _confirm(request, who, name, f"Type {name} to confirm.", 400)
    delete_tenancy_of(mirror_app(request), auth, name)
    raise web.HTTPSeeOther("/console/tenancies")
