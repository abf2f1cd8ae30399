"""Who is looking at the console: a signed-in user (its session re-checked on every request),
or, with auth off, a read-only visitor on loopback. And the CSRF check of every form."""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass

from aiohttp import web

from mirror.auth.principal import Principal
from mirror.auth.service import AuthService
from mirror.console.keys import MIRROR, SESSIONS
from mirror.console.session import Session
from mirror.web.keys import AUTH

COOKIE = "mirror_console"
LOGIN_PATH = "/console/login"


@dataclass(frozen=True, slots=True)
class Viewer:
    """The caller of a console page: ``auth`` and ``session`` are ``None`` with auth off (then
    every page is read-only)."""

    principal: Principal
    auth: AuthService | None
    session: Session | None

    @property
    def read_only(self) -> bool:
        """Whether no form is offered (auth off: nobody could be held to account)."""
        return self.session is None

    @property
    def system_admin(self) -> bool:
        """A system administrator, or anyone on a loopback mirror with auth off."""
        if self.auth is None:
            return True
        return self.auth.authorizer.is_system_admin(self.principal)


def mirror_app(request: web.Request) -> web.Application:
    """The mirror's application (the console is its sub-application)."""
    return request.app[MIRROR]


def is_loopback(remote: str | None) -> bool:
    """Whether a peer address is a loopback address."""
    try:
        return ipaddress.ip_address((remote or "").split("%")[0]).is_loopback
    except ValueError:
        return False


def session_of(request: web.Request) -> Session | None:
    """The live session the cookie names whose token is still active, or ``None``."""
    app = mirror_app(request)
    session = request.app[SESSIONS].get(request.cookies.get(COOKIE))
    if session is None:
        return None
    token = app[AUTH].identity.token(session.token_id)
    user = app[AUTH].identity.user(session.tenancy, session.user)
    if token is None or not token.active or user is None:
        request.app[SESSIONS].close(session.id)
        return None
    return session


def viewer(request: web.Request) -> Viewer:
    """The caller; without a session, a redirect to sign in (auth on) or 403 off loopback
    (auth off)."""
    app = mirror_app(request)
    if AUTH not in app:
        if not is_loopback(request.remote):
            raise web.HTTPForbidden(text="with auth off the console answers on loopback only")
        return Viewer(Principal(), None, None)
    session = session_of(request)
    if session is None:
        raise web.HTTPSeeOther(LOGIN_PATH)
    principal = Principal(session.tenancy, session.user, session.token_id)
    return Viewer(principal, app[AUTH], session)


async def form_of(request: web.Request, who: Viewer) -> dict[str, str]:
    """The posted form of a signed-in viewer, its CSRF token checked (403 otherwise)."""
    if who.session is None:
        raise web.HTTPForbidden(text="the console is read-only with auth off")
    posted = await request.post()
    token = posted.get("csrf")
    if not isinstance(token, str) or not hmac.compare_digest(token, who.session.csrf):
        raise web.HTTPForbidden(text="missing or wrong CSRF token: reload the page")
    return {k: v for k, v in posted.items() if isinstance(v, str)}
