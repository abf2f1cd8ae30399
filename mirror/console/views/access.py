"""The checks the tenancy pages share: the admin API's own (``require_tenancy_admin``,
``require_self_or_admin``) applied to the console's viewer."""

from __future__ import annotations

from aiohttp import web

from mirror.auth.service import AuthService
from mirror.console.viewer import Viewer, viewer
from mirror.errors import ErrorCode, RegistryError
from mirror.web.admin.identity import require_self_or_admin, require_tenancy_admin


def signed_in(request: web.Request) -> tuple[Viewer, AuthService]:
    """The viewer and the auth services (these pages need auth on: users exist only then)."""
    who = viewer(request)
    if who.auth is None:
        raise RegistryError(ErrorCode.DENIED, "users, groups and policies exist with auth on")
    return who, who.auth


def tenancy_admin(request: web.Request) -> tuple[Viewer, AuthService, str]:
    """The viewer, when it administers the path's tenancy (``DENIED`` otherwise)."""
    who, auth = signed_in(request)
    tenancy = request.match_info["tenancy"]
    require_tenancy_admin(auth, who.principal, tenancy)
    return who, auth, tenancy


def self_or_admin(request: web.Request) -> tuple[Viewer, AuthService, str, str]:
    """The viewer, when it is the path's user or administers its tenancy."""
    who, auth = signed_in(request)
    tenancy, user = request.match_info["tenancy"], request.match_info["user"]
    require_self_or_admin(auth, who.principal, tenancy, user)
    return who, auth, tenancy, user
