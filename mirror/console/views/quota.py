"""A tenancy's quota: what it stores against its limits (its administrators), and the limits'
form (system administrators). The checks and changes are the admin API's own
(``require_tenancy_admin``, ``require_system_admin``, ``limit_of``, ``Quotas.set_limits``)."""

from __future__ import annotations

from aiohttp import web

from mirror.console.render import page
from mirror.console.viewer import Viewer, form_of, mirror_app
from mirror.console.views.access import tenancy_admin
from mirror.errors import ErrorCode, RegistryError
from mirror.hosted.quota import BYTES, REPOSITORIES, Limits
from mirror.web.admin.identity import require_system_admin
from mirror.web.admin.quota import limit_of
from mirror.web.keys import QUOTAS


def _quota_page(
    request: web.Request, who: Viewer, tenancy: str, error: str | None = None, status: int = 200
) -> web.Response:
    quotas = mirror_app(request)[QUOTAS]
    return page(
        request,
        "quota.html",
        who,
        status,
        tenancy=tenancy,
        usage=quotas.usage(tenancy),
        default=quotas.default,
        error=error,
    )


async def quota(request: web.Request) -> web.Response:
    """``GET /console/t/{tenancy}/quota``: usage and limits (the form for operators)."""
    who, _, tenancy = tenancy_admin(request)
    return _quota_page(request, who, tenancy)


def _posted_limit(data: dict[str, str], key: str) -> int | None:
    """A limit's field: blank is unlimited, else the API's whole number >= 0."""
    text = data.get(key, "").strip().replace("_", "")
    if not text:
        return None
    try:
        value = int(text, 10)
    except ValueError:
        raise RegistryError(
            ErrorCode.REQUEST_INVALID, f"{key}: expected a whole number >= 0, or blank (unlimited)"
        ) from None
    return limit_of({key: value}, key)


def _operator(request: web.Request) -> tuple[Viewer, str]:
    who, auth, tenancy = tenancy_admin(request)
    require_system_admin(auth, who.principal)
    return who, tenancy


async def set_quota(request: web.Request) -> web.Response:
    """``POST .../quota``: the tenancy's own limits (system administrators)."""
    who, tenancy = _operator(request)
    data = await form_of(request, who)
    try:
        limits = Limits(_posted_limit(data, BYTES), _posted_limit(data, REPOSITORIES))
    except RegistryError as exc:
        return _quota_page(request, who, tenancy, exc.message, exc.status)
    mirror_app(request)[QUOTAS].set_limits(tenancy, limits)
    raise web.HTTPSeeOther(f"/console/t/{tenancy}/quota")


async def reset_quota(request: web.Request) -> web.Response:
    """``POST .../quota/reset``: the configured default applies again."""
    who, tenancy = _operator(request)
    await form_of(request, who)
    mirror_app(request)[QUOTAS].set_limits(tenancy, None)
    raise web.HTTPSeeOther(f"/console/t/{tenancy}/quota")
