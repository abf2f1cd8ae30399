"""Signing in and out: ``<tenancy>/<user>`` and an auth token, checked exactly as ``docker
login`` is (the same ``Login.check``: slow hash, failed-login throttling per address)."""

from __future__ import annotations

import hmac
import logging
import secrets

from aiohttp import web

from mirror.console.keys import SESSIONS
from mirror.console.render import page
from mirror.console.viewer import COOKIE, LOGIN_PATH, form_of, mirror_app, viewer
from mirror.errors import ErrorCode, RegistryError
from mirror.web.keys import AUTH

log = logging.getLogger(__name__)

# The sign-in form's CSRF token before any session exists (double-submit cookie).
LOGIN_COOKIE = "mirror_console_login"


def _cookie_options(request: web.Request) -> dict[str, object]:
    """HttpOnly, SameSite=Strict, Secure when served over HTTPS; path ``/console/``."""
    return {"httponly": True, "samesite": "Strict", "secure": request.secure, "path": "/console/"}


async def login_form(request: web.Request) -> web.Response:
    """``GET /console/login``: the sign-in form (with auth off, straight to the read-only view)."""
    if AUTH not in mirror_app(request):
        raise web.HTTPSeeOther("/console/")
    return _form(request, None, 200)


def _form(request: web.Request, error: str | None, status: int) -> web.Response:
    token = secrets.token_urlsafe(32)
    response = page(request, "login.html", None, status, login_csrf=token, error=error)
    response.set_cookie(LOGIN_COOKIE, token, max_age=3600, **_cookie_options(request))  # type: ignore[arg-type]
    return response


async def login(request: web.Request) -> web.Response:
    """``POST /console/login``: check the credentials, open a session, go to the console."""
    app = mirror_app(request)
    if AUTH not in app:
        raise web.HTTPForbidden(text="auth is off: there is nobody to sign in as")
    posted = await request.post()
    expected = request.cookies.get(LOGIN_COOKIE, "")
    sent = posted.get("csrf")
    if not expected or not isinstance(sent, str) or not hmac.compare_digest(sent, expected):
        raise web.HTTPForbidden(text="missing or wrong CSRF token: reload the sign-in page")
    username, token = posted.get("username"), posted.get("token")
    if not isinstance(username, str) or not isinstance(token, str):
        return _form(request, "Enter your <tenancy>/<user> and an auth token.", 400)
    try:
        principal = app[AUTH].login.check(username.strip(), token.strip(), request.remote or "")
    except RegistryError as exc:
        if exc.code is ErrorCode.TOOMANYREQUESTS:
            return _form(request, "Too many failed sign-ins from this address: wait.", 429)
        return _form(request, "Incorrect username or auth token.", 401)
    assert principal.tenancy and principal.user and principal.token_id
    session = request.app[SESSIONS].open(principal.tenancy, principal.user, principal.token_id)
    log.info("console sign-in of %s from %s", principal.subject, request.remote)
    response = web.HTTPSeeOther("/console/")
    lifetime = int(request.app[SESSIONS].lifetime)
    response.set_cookie(COOKIE, session.id, max_age=lifetime, **_cookie_options(request))  # type: ignore[arg-type]
    response.del_cookie(LOGIN_COOKIE, path="/console/")
    raise response


async def logout(request: web.Request) -> web.Response:
    """``POST /console/logout``: end the session (the cookie is worthless from now on)."""
    who = viewer(request)
    await form_of(request, who)
    if who.session is not None:
        request.app[SESSIONS].close(who.session.id)
        log.info("console sign-out of %s", who.principal.subject)
    response = web.HTTPSeeOther(LOGIN_PATH)
    response.del_cookie(COOKIE, path="/console/")
    raise response
