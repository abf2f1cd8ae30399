"""Every tenancy, for system administrators (as ``GET /admin/v1/tenancies``): the way into
another tenancy's pages."""

from __future__ import annotations

from aiohttp import web

from mirror.console.render import page
from mirror.console.views.access import signed_in
from mirror.errors import ErrorCode, RegistryError


async def tenancies(request: web.Request) -> web.Response:
    """``GET /console/tenancies``."""
    who, auth = signed_in(request)
    if not who.system_admin:
        raise RegistryError(ErrorCode.DENIED, "the list of tenancies is for system administrators")
    names = [t.name for t in auth.identity.tenancies()]
    return page(request, "tenancies.html", who, tenancies=names)
