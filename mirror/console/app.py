"""The console as a sub-application of the mirror under ``/console/``: routes, its error
pages, its security headers, its static assets (all local: it works air-gapped)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

from mirror.clock import Clock
from mirror.console.keys import CLOCK, MIRROR, SAMPLES, SESSIONS, TEMPLATES
from mirror.console.render import environment, page
from mirror.console.samples import SampleRing, Sleep, sample_periodically
from mirror.console.session import SessionStore
from mirror.console.views import (
    cache,
    groups,
    images,
    policies,
    quota,
    repositories,
    retention,
    rules,
    signin,
    tenancies,
    users,
)
from mirror.errors import RegistryError

STATIC = Path(__file__).parent / "static"
# Eight working hours: long enough for a day at the console, short enough that a forgotten
# browser does not stay signed in overnight.
SESSION_LIFETIME = 8 * 3600.0
# Scripts and styles only from /console/static (no inline code, no other origin), no framing.
# The dashboard's history: a sample every 10 s for an hour.
SAMPLE_INTERVAL = 10.0
SAMPLES_KEPT = 360
_CSP = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'"


@web.middleware
async def console_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A refused or failed request as a page with the error's status and message."""
    try:
        return await handler(request)
    except RegistryError as exc:
        return page(
            request, "error.html", None, exc.status, code=exc.code.name, message=exc.message
        )


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    if request.path.startswith("/console"):
        response.headers.setdefault("Content-Security-Policy", _CSP)
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if response.content_type == "text/html":
            response.headers["Cache-Control"] = "no-store"


def console_app(
    mirror: web.Application,
    clock: Clock,
    lifetime: float,
    *,
    sessions: Path,
    interval: float = SAMPLE_INTERVAL,
    sleep: Sleep = asyncio.sleep,
) -> web.Application:
    """The console's application over ``mirror``'s services, its sessions kept under
    ``sessions``; the dashboard samples the metrics every ``interval`` seconds while it runs."""
    console = web.Application(middlewares=[console_errors])
    console[MIRROR] = mirror
    console[CLOCK] = clock
    console[SESSIONS] = SessionStore(sessions, clock, lifetime=lifetime)
    console[TEMPLATES] = environment()
    console[SAMPLES] = SampleRing(SAMPLES_KEPT)

    async def sampler(_: web.Application) -> AsyncIterator[None]:
        job = sample_periodically(
            console[SAMPLES], lambda at: cache.current(mirror, at), clock, interval, sleep
        )
        task = asyncio.create_task(job)
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def close_sessions(_: web.Application) -> None:
        console[SESSIONS].shut()

    console.cleanup_ctx.append(sampler)
    console.on_cleanup.append(close_sessions)
    r = console.router
    r.add_get("/", repositories.home)
    r.add_get("/login", signin.login_form)
    r.add_post("/login", signin.login)
    r.add_post("/logout", signin.logout)
    u = "/t/{tenancy}/users"
    r.add_get(u, users.users)
    r.add_post(u, users.create)
    r.add_post(u + "/{user}/delete", users.delete)
    r.add_get(u + "/{user}/tokens", users.tokens)
    r.add_post(u + "/{user}/tokens", users.create_token)
    r.add_post(u + "/{user}/tokens/{token}/revoke", users.revoke_token)
    g = "/t/{tenancy}/groups"
    r.add_get(g, groups.groups)
    r.add_post(g, groups.create)
    r.add_post(g + "/{group}/delete", groups.delete)
    r.add_post(g + "/{group}/members", groups.add_member)
    r.add_post(g + "/{group}/members/remove", groups.remove_member)
    r.add_get("/t/{tenancy}/policies", policies.policies)
    r.add_post("/t/{tenancy}/policies", policies.save)
    r.add_post("/t/{tenancy}/policies/{policy}/delete", policies.delete)
    r.add_get("/t/{tenancy}/rules", rules.rules)
    r.add_post("/t/{tenancy}/rules", rules.create)
    r.add_post("/t/{tenancy}/rules/{prefix:.+}/delete", rules.delete)
    t = "/t/{tenancy}/repositories"
    r.add_get(t, repositories.repositories)
    r.add_post(t, repositories.create)
    r.add_get(t + "/{name:.+}/delete", repositories.confirm_delete)
    r.add_post(t + "/{name:.+}/delete", repositories.delete)
    r.add_post(t + "/{name:.+}/visibility", repositories.visibility)
    r.add_get(t + "/{name:.+}", images.repository)
    p = "/retention/policies"
    r.add_get("/retention", retention.overview)
    r.add_post("/retention/dry-run", retention.dry_run)
    r.add_post(p, retention.create)
    r.add_post(p + "/{policy}", retention.edit)
    r.add_post(p + "/{policy}/delete", retention.delete)
    r.add_post(p + "/{policy}/repositories", retention.attach)
    r.add_post(p + "/{policy}/repositories/remove", retention.detach)
    r.add_get("/cache", cache.dashboard)
    r.add_get("/tenancies", tenancies.tenancies)
    r.add_post("/tenancies", tenancies.create)
    r.add_get("/tenancies/{tenancy}/delete", tenancies.confirm_delete)
    r.add_post("/tenancies/{tenancy}/delete", tenancies.delete)
    r.add_get("/t/{tenancy}/quota", quota.quota)
    r.add_post("/t/{tenancy}/quota", quota.set_quota)
    r.add_post("/t/{tenancy}/quota/reset", quota.reset_quota)
    r.add_static("/static/", STATIC)
    return console


def add_console(
    app: web.Application,
    clock: Clock,
    lifetime: float = SESSION_LIFETIME,
    interval: float = SAMPLE_INTERVAL,
    *,
    data_dir: Path,
) -> None:
    """Serve the console under ``/console/`` (one call from the app's wiring): sessions last
    ``lifetime`` seconds and are kept under ``data_dir``, the dashboard samples every
    ``interval``."""
    sessions = data_dir / "console" / "sessions"
    app.add_subapp(
        "/console/", console_app(app, clock, lifetime, sessions=sessions, interval=interval)
    )
    app.on_response_prepare.append(_headers)
