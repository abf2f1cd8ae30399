"""The admin API, ``/admin/v1`` (JSON): tenancies, users, groups and auth tokens.

Callers log in with Basic credentials (``<tenancy>/<user>`` and an auth token). Tenancies are
managed by system administrators (the admin tenancy's administrators group); a tenancy's users,
groups, policies and rules by its administrators; a user may manage its own tokens.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from mirror.auth.principal import Principal
from mirror.auth.service import AuthService
from mirror.db.identity.records import (
    AuthToken,
    PullThroughRule,
    group_name,
    tenancy_name,
    user_name,
)
from mirror.db.roles import Upstreams
from mirror.errors import ErrorCode, RegistryError
from mirror.hosted.names import hosted_key
from mirror.web.keys import AUTH, QUOTAS, SERVICES

PREFIX = "/admin/v1"
_MAX_BODY = 256 * 1024


def caller(request: web.Request) -> tuple[AuthService, Principal]:
    """The auth services and the logged-in caller (``UNAUTHORIZED`` when anonymous)."""
    auth = request.app[AUTH]
    principal = auth.authenticate(
        request.headers.get("Authorization"), request.remote or "", tokens=False
    )
    if principal.anonymous:
        raise RegistryError(ErrorCode.UNAUTHORIZED, "log in with <tenancy>/<user> and a token")
    return auth, principal


def deny() -> RegistryError:
    """``DENIED``: the caller may not do this."""
    return RegistryError(ErrorCode.DENIED)


def as_system_admin(request: web.Request) -> AuthService:
    """The auth services if the caller is an administrator of the admin tenancy; else ``DENIED``
    (``UNAUTHORIZED`` when anonymous)."""
    auth, principal = caller(request)
    require_system_admin(auth, principal)
    return auth


def require_system_admin(auth: AuthService, principal: Principal) -> None:
    """``DENIED`` unless ``principal`` is a system administrator: the API's and the console's
    one check."""
    if not auth.authorizer.is_system_admin(principal):
        raise deny()


def as_tenancy_admin(request: web.Request) -> tuple[AuthService, str]:
    """The tenancy of the path, when the caller administers it."""
    auth, principal = caller(request)
    tenancy = request.match_info["tenancy"]
    require_tenancy_admin(auth, principal, tenancy)
    return auth, tenancy


def require_tenancy_admin(auth: AuthService, principal: Principal, tenancy: str) -> None:
    """``DENIED`` unless ``principal`` administers ``tenancy`` (``TENANCY_UNKNOWN`` after):
    the API's and the console's one check."""
    if not auth.authorizer.is_tenancy_admin(principal, tenancy):
        raise deny()
    auth.identity.require_tenancy(tenancy)


async def body(request: web.Request) -> dict[str, Any]:
    """The JSON object of the request (``REQUEST_INVALID`` otherwise)."""
    if (request.content_length or 0) > _MAX_BODY:
        raise RegistryError(ErrorCode.REQUEST_INVALID, "body too large")
    raw = await request.read()
    try:
        value = json.loads(raw or b"{}")
    except ValueError:
        raise RegistryError(ErrorCode.REQUEST_INVALID, "body is not JSON") from None
    if not isinstance(value, dict):
        raise RegistryError(ErrorCode.REQUEST_INVALID, "body must be a JSON object")
    return value


def ok(value: Any, status: int = 200) -> web.Response:
    """A JSON answer."""
    return web.json_response(value, status=status)


async def whoami(request: web.Request) -> web.Response:
    """``GET .../whoami``: the caller (``tenancy/user``), its groups, whether it is a system
    administrator."""
    auth, principal = caller(request)
    return ok(
        {
            "user": principal.subject,
            "groups": sorted(
                auth.identity.groups_of(principal.tenancy or "", principal.user or "")
            ),
            "system_admin": auth.authorizer.is_system_admin(principal),
        }
    )


# Tenancies ----------------------------------------------------------------------------


async def list_tenancies(request: web.Request) -> web.Response:
    """``GET .../tenancies``: every tenancy (system administrators only)."""
    auth = as_system_admin(request)
    return ok({"tenancies": [t.name for t in auth.identity.tenancies()]})


async def create_tenancy(request: web.Request) -> web.Response:
    """Create a tenancy; a name that is a node-local name's first component is refused."""
    auth = as_system_admin(request)
    name = create_tenancy_named(auth, (await body(request)).get("name"))
    return ok({"name": name}, 201)


def create_tenancy_named(auth: AuthService, name: object) -> str:
    """Create tenancy ``name`` (checked: valid, not a node-local name's first component)."""
    valid = tenancy_name(name)
    auth.resolver.check_tenancy_name(valid)
    auth.identity.create_tenancy(valid, auth.tokens.now())
    return valid


async def delete_tenancy(request: web.Request) -> web.Response:
    """Delete a tenancy, and everything cached under its rules (links, tags, responses)."""
    auth = as_system_admin(request)
    name = request.match_info["tenancy"]
    delete_tenancy_of(request.app, auth, name)
    return ok({"deleted": name})


def delete_tenancy_of(app: web.Application, auth: AuthService, name: str) -> None:
    """Delete tenancy ``name`` of ``app`` with its rules' cached content, its hosted
    repositories and its quota (the admin tenancy stays)."""
    if name == auth.authorizer.admin_tenancy:
        raise RegistryError(ErrorCode.REQUEST_INVALID, "the admin tenancy stays")
    forget_rules_of(app, auth.identity.delete_tenancy(name))
    # Its hosted repositories go with it (a tenancy created again starts empty).
    app[SERVICES].metadata.forget_upstream(hosted_key(name))
    app[QUOTAS].forget_tenancy(name)


def forget_rules(request: web.Request, rules: list[PullThroughRule]) -> None:
    """Forget what deleted rules kept under their upstream keys, and their upstream clients:
    a rule or tenancy created again starts empty."""
    forget_rules_of(request.app, rules)


def forget_rules_of(app: web.Application, rules: list[PullThroughRule]) -> None:
    """:func:`forget_rules` for the application ``app``."""
    kept: Upstreams = app[SERVICES].metadata
    auth = app[AUTH]
    for rule in rules:
        kept.forget_upstream(rule.key)
        auth.upstreams.forget(rule.key)


# Users and groups ---------------------------------------------------------------------


async def list_users(request: web.Request) -> web.Response:
    """``GET .../tenancies/{tenancy}/users``: the tenancy's users and their groups."""
    auth, tenancy = as_tenancy_admin(request)
    users = auth.identity.users(tenancy)
    return ok(
        {
            "users": [
                {"name": u.name, "groups": sorted(auth.identity.groups_of(tenancy, u.name))}
                for u in users
            ]
        }
    )


async def create_user(request: web.Request) -> web.Response:
    """``POST .../users``: create a user (201)."""
    auth, tenancy = as_tenancy_admin(request)
    data = await body(request)
    groups = data.get("groups", [])
    if not isinstance(groups, list):
        raise RegistryError(ErrorCode.REQUEST_INVALID, "groups: expected a list")
    name = create_user_in(auth, tenancy, data.get("name"), groups)
    return ok({"name": name, "groups": sorted(groups)}, 201)


def create_user_in(auth: AuthService, tenancy: str, name: object, groups: list[object]) -> str:
    """Create user ``name`` of ``tenancy`` in existing ``groups`` (all checked first)."""
    valid = user_name(name)
    checked = [group_name(group) for group in groups]
    for group in checked:
        auth.identity.require_group(tenancy, group)
    auth.identity.create_user(tenancy, valid, auth.tokens.now())
    for group in checked:
        auth.identity.set_member(tenancy, group, valid, True)
    return valid


async def delete_user(request: web.Request) -> web.Response:
    """``DELETE .../users/{user}``: delete a user and its tokens."""
    auth, tenancy = as_tenancy_admin(request)
    auth.identity.delete_user(tenancy, request.match_info["user"])
    return ok({"deleted": request.match_info["user"]})


async def list_groups(request: web.Request) -> web.Response:
    """``GET .../groups``: the tenancy's groups and their members."""
    auth, tenancy = as_tenancy_admin(request)
    groups = auth.identity.groups(tenancy)
    return ok({"groups": [{"name": g.name, "members": list(g.members)} for g in groups]})


async def create_group(request: web.Request) -> web.Response:
    """``POST .../groups``: create a group (201)."""
    auth, tenancy = as_tenancy_admin(request)
    name = group_name((await body(request)).get("name"))
    auth.identity.create_group(tenancy, name)
    return ok({"name": name, "members": []}, 201)


async def delete_group(request: web.Request) -> web.Response:
    """``DELETE .../groups/{group}``: delete a group."""
    auth, tenancy = as_tenancy_admin(request)
    auth.identity.delete_group(tenancy, request.match_info["group"])
    return ok({"deleted": request.match_info["group"]})


async def set_member(request: web.Request) -> web.Response:
    """``PUT`` / ``DELETE .../groups/{group}/members/{user}``: add or remove a member."""
    auth, tenancy = as_tenancy_admin(request)
    member = request.method == "PUT"
    group = request.match_info["group"]
    record = auth.identity.set_member(tenancy, group, request.match_info["user"], member)
    return ok({"name": record.name, "members": list(record.members)})


# Auth tokens --------------------------------------------------------------------------


def as_self_or_admin(request: web.Request) -> tuple[AuthService, str, str]:
    """The auth services, tenancy and user of a token route, when the caller is that user or
    administers the tenancy; else ``DENIED``."""
    auth, principal = caller(request)
    tenancy, user = request.match_info["tenancy"], request.match_info["user"]
    require_self_or_admin(auth, principal, tenancy, user)
    return auth, tenancy, user


def require_self_or_admin(auth: AuthService, principal: Principal, tenancy: str, user: str) -> None:
    """``DENIED`` unless ``principal`` is ``tenancy/user`` or administers ``tenancy``."""
    own = (principal.tenancy, principal.user) == (tenancy, user)
    if not own and not auth.authorizer.is_tenancy_admin(principal, tenancy):
        raise deny()
    auth.identity.require_user(tenancy, user)


async def list_tokens(request: web.Request) -> web.Response:
    """``GET .../users/{user}/tokens``: the user's tokens (never their secrets)."""
    auth, tenancy, user = as_self_or_admin(request)
    return ok({"tokens": [t.public() for t in auth.identity.tokens(tenancy, user)]})


async def create_token(request: web.Request) -> web.Response:
    """A new auth token; the secret is in this answer and nowhere else, ever."""
    auth, tenancy, user = as_self_or_admin(request)
    description = (await body(request)).get("description", "")
    if not isinstance(description, str):
        raise RegistryError(ErrorCode.REQUEST_INVALID, "description: at most 256 characters")
    record, secret = new_token(auth, tenancy, user, description)
    return ok({**record.public(), "token": secret}, 201)


def new_token(
    auth: AuthService, tenancy: str, user: str, description: str
) -> tuple[AuthToken, str]:
    """A new auth token of ``tenancy/user`` and its secret (shown once, kept hashed)."""
    return auth.identity.create_token(
        tenancy, user, description, auth.tokens.now(), cost=auth.login.hash_cost
    )


async def revoke_token(request: web.Request) -> web.Response:
    """``DELETE .../tokens/{token}``: revoke a token."""
    auth, tenancy, user = as_self_or_admin(request)
    token_id = request.match_info["token"]
    record = auth.identity.revoke_token(tenancy, user, token_id, auth.tokens.now())
    return ok(record.public())


def add_identity_routes(app: web.Application) -> None:
    """Register the identity half of the admin API."""
    r = app.router
    t = f"{PREFIX}/tenancies/{{tenancy}}"
    r.add_get(f"{PREFIX}/whoami", whoami)
    r.add_get(f"{PREFIX}/tenancies", list_tenancies)
    r.add_post(f"{PREFIX}/tenancies", create_tenancy)
    r.add_delete(t, delete_tenancy)
    r.add_get(f"{t}/users", list_users)
    r.add_post(f"{t}/users", create_user)
    r.add_delete(f"{t}/users/{{user}}", delete_user)
    r.add_get(f"{t}/groups", list_groups)
    r.add_post(f"{t}/groups", create_group)
    r.add_delete(f"{t}/groups/{{group}}", delete_group)
    r.add_put(f"{t}/groups/{{group}}/members/{{user}}", set_member)
    r.add_delete(f"{t}/groups/{{group}}/members/{{user}}", set_member)
    r.add_get(f"{t}/users/{{user}}/tokens", list_tokens)
    r.add_post(f"{t}/users/{{user}}/tokens", create_token)
    r.add_delete(f"{t}/users/{{user}}/tokens/{{token}}", revoke_token)
