"""A tenancy's groups: create, delete, add and remove members (tenancy administrators)."""

from __future__ import annotations

from aiohttp import web

from mirror.console.render import page
from mirror.console.viewer import form_of
from mirror.console.views.access import tenancy_admin
from mirror.db.identity.records import group_name
from mirror.errors import RegistryError


def _page(request: web.Request, error: str | None = None, status: int = 200) -> web.Response:
    who, auth, tenancy = tenancy_admin(request)
    groups = auth.identity.groups(tenancy)
    users = [u.name for u in auth.identity.users(tenancy)]
    return page(
        request,
        "groups.html",
        who,
        status,
        tenancy=tenancy,
        groups=groups,
        users=users,
        error=error,
    )


async def groups(request: web.Request) -> web.Response:
    """``GET /console/t/{tenancy}/groups``."""
    return _page(request)


async def _change(request: web.Request, change: str) -> web.Response:
    who, auth, tenancy = tenancy_admin(request)
    data = await form_of(request, who)
    try:
        if change == "create":
            auth.identity.create_group(tenancy, group_name(data.get("name", "").strip()))
        elif change == "delete":
            auth.identity.delete_group(tenancy, request.match_info["group"])
        else:
            member = change == "add"
            group, user = request.match_info["group"], data.get("user", "")
            auth.identity.set_member(tenancy, group, user, member)
    except RegistryError as exc:
        return _page(request, exc.message, exc.status)
    raise web.HTTPSeeOther(f"/console/t/{tenancy}/groups")


async def create(request: web.Request) -> web.Response:
    """``POST .../groups``."""
    return await _change(request, "create")


async def delete(request: web.Request) -> web.Response:
    """``POST .../groups/{group}/delete``."""
    return await _change(request, "delete")


async def add_member(request: web.Request) -> web.Response:
    """``POST .../groups/{group}/members``."""
    return await _change(request, "add")


async def remove_member(request: web.Request) -> web.Response:
    """``POST .../groups/{group}/members/remove``."""
    return await _change(request, "remove")
