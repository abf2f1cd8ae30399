"""A tenancy's pull-through rules: create (the host on the system administrator's allow-list),
delete (with what was cached under it). Passwords are never shown back."""

from __future__ import annotations

from aiohttp import web

from mirror.console.render import page
from mirror.console.viewer import form_of, mirror_app
from mirror.console.views.access import tenancy_admin
from mirror.errors import RegistryError
from mirror.web.admin.identity import forget_rules_of
from mirror.web.admin.repos import create_rule_in


def _page(request: web.Request, error: str | None = None, status: int = 200) -> web.Response:
    who, auth, tenancy = tenancy_admin(request)
    rules = auth.identity.rules(tenancy)
    return page(request, "rules.html", who, status, tenancy=tenancy, rules=rules, error=error)


async def rules(request: web.Request) -> web.Response:
    """``GET /console/t/{tenancy}/rules``."""
    return _page(request)


async def create(request: web.Request) -> web.Response:
    """``POST .../rules``."""
    who, auth, tenancy = tenancy_admin(request)
    data = await form_of(request, who)
    fields = (data.get(k, "").strip() or None for k in ("prefix", "url", "username", "password"))
    try:
        await create_rule_in(auth, tenancy, *fields)
    except RegistryError as exc:
        return _page(request, exc.message, exc.status)
    raise web.HTTPSeeOther(f"/console/t/{tenancy}/rules")


async def delete(request: web.Request) -> web.Response:
    """``POST .../rules/{prefix}/delete``: the rule and everything cached under its key."""
    who, auth, tenancy = tenancy_admin(request)
    await form_of(request, who)
    deleted = auth.identity.delete_rule(tenancy, request.match_info["prefix"])
    forget_rules_of(mirror_app(request), [deleted])
    raise web.HTTPSeeOther(f"/console/t/{tenancy}/rules")
