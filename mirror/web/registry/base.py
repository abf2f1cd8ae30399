"""``GET /v2/``, the routes a read-only mirror refuses, and the operational endpoints."""

from __future__ import annotations

from aiohttp import web

from mirror.errors import ErrorCode, RegistryError
from mirror.web.admin.identity import as_system_admin
from mirror.web.keys import METRICS_ACCESS, QUOTAS, UPSTREAMS, services
from mirror.web.registry.readiness import OFFLINE_CHECK, metadata_problem, upstream_problems


async def version_check(request: web.Request) -> web.Response:
    """``GET /v2/``: this is a registry speaking distribution API v2."""
    return web.json_response({})


async def unsupported(request: web.Request) -> web.Response:
    """Push, delete and upload: a pull-through mirror has no hosted repositories yet."""
    raise RegistryError(
        ErrorCode.UNSUPPORTED,
        "this mirror is read-only",
        detail={"method": request.method, "path": request.path},
    )


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition, or OpenMetrics when the scraper's ``Accept`` asks for it, to
    whom ``server.metrics`` allows (404 when off, 401/403 without an administrator's
    credentials when ``admin``)."""
    access = request.app.get(METRICS_ACCESS, "anonymous")
    if access == "off":
        raise RegistryError(ErrorCode.RESOURCE_UNKNOWN, "metrics are turned off (server.metrics)")
    if access != "anonymous":
        as_system_admin(request)
    if QUOTAS in request.app:
        # On a tier the usage gauges follow the shared count, read as the scrape comes.
        request.app[QUOTAS].publish_all()
    body, content_type = services(request).metrics.exposition(request.headers.get("Accept", ""))
    return web.Response(body=body, headers={"Content-Type": content_type})


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the event loop answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the metadata store is there and answers, and at least one configured
    upstream answers ``GET /v2/`` (offline: none is probed, ``"mode": "offline"``); 503 with
    one-line reasons otherwise."""
    svc = services(request)
    problems: dict[str, str] = {}
    metadata = metadata_problem(svc.metadata, svc.metadata.directory)
    if metadata is not None:
        problems["metadata"] = metadata
    pool = request.app[UPSTREAMS]
    clients = [pool.get(host) for host in svc.router.hosts()]
    offline = any(client.offline for client in clients)
    upstreams: dict[str, str | None] = (
        {c.endpoint.host: OFFLINE_CHECK for c in clients}
        if offline
        else await upstream_problems(clients)
    )
    if not offline and not any(problem is None for problem in upstreams.values()):
        problems["upstreams"] = "no usable upstream: " + (
            "; ".join(f"{host}: {why}" for host, why in upstreams.items()) or "none configured"
        )
    checks = {
        "metadata": metadata or "ok",
        "upstreams": {host: why or "ok" for host, why in upstreams.items()},
    }
    mode = "offline" if offline else "online"
    if problems:
        reason = "; ".join(problems.values())
        return web.json_response(
            {"status": "unavailable", "mode": mode, "reason": reason, "checks": checks},
            status=503,
        )
    return web.json_response({"status": "ok", "mode": mode, "checks": checks})
