"""A tenancy's users (create with groups, delete) and a user's auth tokens (created and
shown once, revoked). Tenancy administrators; a user may manage its own tokens."""

from __future__ import annotations

from aiohttp import web

from mirror.console.render import page
from mirror.console.viewer import form_of
from mirror.console.views.access import self_or_admin, tenancy_admin
from mirror.errors import RegistryError
from mirror.web.admin.identity import create_user_in, new_token


def _users_page(request: web.Request, error: str | None = None, status: int = 200) -> web.Response:
    who, auth, tenancy = tenancy_admin(request)
    users = [
        (u.name, sorted(auth.identity.groups_of(tenancy, u.name)))
        for u in auth.identity.users(tenancy)
    ]
    groups = [g.name for g in auth.identity.groups(tenancy)]
    return page(
        request, "users.html", who, status, tenancy=tenancy, users=users, groups=groups, error=error
    )


async def users(request: web.Request) -> web.Response:
    """``GET /console/t/{tenancy}/users``."""
    return _users_page(request)


async def create(request: web.Request) -> web.Response:
    """``POST .../users``: a user in the ticked groups."""
    who, auth, tenancy = tenancy_admin(request)
    posted = await request.post()
    await form_of(request, who)
    groups: list[object] = [g for g in posted.getall("groups", []) if isinstance(g, str)]
    try:
        create_user_in(auth, tenancy, str(posted.get("name", "")).strip(), groups)
    except RegistryError as exc:
        return _users_page(request, exc.message, exc.status)
    raise web.HTTPSeeOther(f"/console/t/{tenancy}/users")


async def delete(request: web.Request) -> web.Response:
    """``POST .../users/{user}/delete``: the user and its tokens."""
    who, auth, tenancy = tenancy_admin(request)
    await form_of(request, who)
    auth.identity.delete_user(tenancy, request.match_info["user"])
    raise web.HTTPSeeOther(f"/console/t/{tenancy}/users")


def _tokens_page(
    request: web.Request, secret: str | None = None, status: int = 200
) -> web.Response:
    who, auth, tenancy, user = self_or_admin(request)
    tokens = auth.identity.tokens(tenancy, user)
    return page(
        request,
        "tokens.html",
        who,
        status,
        tenancy=tenancy,
        user=user,
        tokens=tokens,
        secret=secret,
    )


async def tokens(request: web.Request) -> web.Response:
    """``GET .../users/{user}/tokens``: the tokens (never their secrets)."""
    return _tokens_page(request)


async def create_token(request: web.Request) -> web.Response:
    """``POST .../tokens``: a new token, its secret on this page and nowhere else, ever."""
    who, auth, tenancy, user = self_or_admin(request)
    data = await form_of(request, who)
    _, secret = new_token(auth, tenancy, user, data.get("description", "").strip())
    return _tokens_page(request, secret, 201)


async def revoke_token(request: web.Request) -> web.Response:
    """``POST .../tokens/{token}/revoke``."""
    who, auth, tenancy, user = self_or_admin(request)
    await form_of(request, who)
    auth.identity.revoke_token(tenancy, user, request.match_info["token"], auth.tokens.now())
    raise web.HTTPSeeOther(f"/console/t/{tenancy}/users/{user}/tokens")
