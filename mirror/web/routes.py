"""Turning auth on for an application: the middleware, the token endpoint, the admin API."""

from __future__ import annotations

from aiohttp import web

from mirror.web.access import TOKEN_PATH, auth_middleware
from mirror.web.admin.identity import add_identity_routes
from mirror.web.admin.repos import add_resource_routes
from mirror.web.registry import token


def install_auth(app: web.Application) -> None:
    """Add the auth middleware (inside the error middleware) and the auth routes."""
    app.middlewares.append(auth_middleware)
    app.router.add_get(TOKEN_PATH, token.get_token)
    app.router.add_post(TOKEN_PATH, token.post_token)
    add_identity_routes(app)
    add_resource_routes(app)
