"""The admin API of hosted quotas: what each tenancy stores against its limits.

    GET    /admin/v1/usage                          every tenancy (system administrators)
    GET    /admin/v1/tenancies/{tenancy}/usage      one tenancy (its administrators too)
    PUT    /admin/v1/tenancies/{tenancy}/quota      {"bytes": N|null, "repositories": N|null}
    DELETE /admin/v1/tenancies/{tenancy}/quota      back to the configured default

Limits are an operator's (system administrators): a tenancy's administrators see them in the
usage answer but cannot change them, and nobody sees another tenancy's usage.
"""

from __future__ import annotations

from aiohttp import web

from mirror.errors import ErrorCode, RegistryError
from mirror.hosted.quota import BYTES, REPOSITORIES, Limits
from mirror.web.admin.identity import PREFIX, as_system_admin, as_tenancy_admin, body, ok
from mirror.web.keys import QUOTAS


async def all_usage(request: web.Request) -> web.Response:
    """``GET /admin/v1/usage``: every tenancy's usage and limits."""
    auth = as_system_admin(request)
    quotas = request.app[QUOTAS]
    names = sorted({t.name for t in auth.identity.tenancies()} | set(quotas.tenancies()))
    return ok({"tenancies": [quotas.usage(name).as_json() for name in names]})


async def usage(request: web.Request) -> web.Response:
    """``GET .../tenancies/{tenancy}/usage``: its stored bytes and repositories, and limits."""
    _, tenancy = as_tenancy_admin(request)
    return ok(request.app[QUOTAS].usage(tenancy).as_json())


def limit_of(data: dict[str, object], key: str) -> int | None:
    """The limit ``key`` of ``data``: a whole number >= 0, or ``None`` (unlimited)."""
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RegistryError(
            ErrorCode.REQUEST_INVALID, f"{key}: expected a whole number >= 0, or null (unlimited)"
        )
    return value


async def set_quota(request: web.Request) -> web.Response:
    """``PUT .../tenancies/{tenancy}/quota``: the tenancy's own limits (null: unlimited)."""
    auth = as_system_admin(request)
    tenancy = request.match_info["tenancy"]
    auth.identity.require_tenancy(tenancy)
    data = await body(request)
    unknown = set(data) - {BYTES, REPOSITORIES}
    if unknown:
        raise RegistryError(ErrorCode.REQUEST_INVALID, f"unknown keys: {sorted(unknown)}")
    limits = Limits(limit_of(data, BYTES), limit_of(data, REPOSITORIES))
    request.app[QUOTAS].set_limits(tenancy, limits)
    return ok(request.app[QUOTAS].usage(tenancy).as_json())


async def reset_quota(request: web.Request) -> web.Response:
    """``DELETE .../tenancies/{tenancy}/quota``: the configured default applies again."""
    auth = as_system_admin(request)
    tenancy = request.match_info["tenancy"]
    auth.identity.require_tenancy(tenancy)
    request.app[QUOTAS].set_limits(tenancy, None)
    return ok(request.app[QUOTAS].usage(tenancy).as_json())


def add_quota_routes(app: web.Application) -> None:
    """Register the usage and quota routes."""
    r = app.router
    t = f"{PREFIX}/tenancies/{{tenancy}}"
    r.add_get(f"{PREFIX}/usage", all_usage)
    r.add_get(f"{t}/usage", usage)
    r.add_put(f"{t}/quota", set_quota)
    r.add_delete(f"{t}/quota", reset_quota)
