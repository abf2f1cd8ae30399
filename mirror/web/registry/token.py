"""The token endpoint (the challenge's realm): ``GET`` with optional Basic credentials, ``POST``
with the OAuth2 password form (distribution "Token Authentication Specification" and "OAuth2
Token Authentication"; containerd POSTs, docker and skopeo GET)."""

from __future__ import annotations

import datetime

from aiohttp import web

from mirror.auth.principal import Principal
from mirror.auth.scope import parse_scopes
from mirror.auth.tokens import IssuedToken
from mirror.errors import ErrorCode, RegistryError
from mirror.web.keys import AUTH

_MAX_FORM = 64 * 1024


def _answer(issued: IssuedToken) -> web.Response:
    issued_at = datetime.datetime.fromtimestamp(issued.issued_at, datetime.UTC)
    return web.json_response(
        {
            "token": issued.token,
            "access_token": issued.token,
            "expires_in": issued.expires_in,
            "issued_at": issued_at.isoformat().replace("+00:00", "Z"),
        },
        headers={"Cache-Control": "no-store"},
    )


def _check_service(request: web.Request, service: str | None) -> None:
    if service is not None and service != request.app[AUTH].tokens.service:
        raise RegistryError(ErrorCode.REQUEST_INVALID, "unknown service")


async def get_token(request: web.Request) -> web.Response:
    """``GET /auth/token?service=..&scope=..``: anonymous, or as the Basic-auth user."""
    auth = request.app[AUTH]
    _check_service(request, request.query.get("service"))
    header = request.headers.get("Authorization")
    principal = auth.authenticate(header, request.remote or "", tokens=False)
    scopes = parse_scopes(request.query.getall("scope", []))
    return _answer(auth.tokens.issue(principal, scopes))


async def post_token(request: web.Request) -> web.Response:
    """``POST /auth/token`` with ``grant_type=password`` (username, password, scope, service)."""
    auth = request.app[AUTH]
    if (request.content_length or 0) > _MAX_FORM:
        raise RegistryError(ErrorCode.REQUEST_INVALID, "form too large")
    form = await request.post()
    _check_service(request, _field(form, "service"))
    grant = _field(form, "grant_type")
    if grant != "password":
        raise RegistryError(
            ErrorCode.REQUEST_INVALID, "unsupported grant_type", detail={"grant_type": grant}
        )
    username, password = _field(form, "username"), _field(form, "password")
    if not username or password is None:
        raise RegistryError(ErrorCode.REQUEST_INVALID, "username and password are required")
    principal: Principal = auth.login.check(username, password, request.remote or "")
    scopes = parse_scopes([v for v in form.getall("scope", []) if isinstance(v, str)])
    return _answer(auth.tokens.issue(principal, scopes))


def _field(form: object, name: str) -> str | None:
    value = form.get(name) if hasattr(form, "get") else None
    return value if isinstance(value, str) else None
