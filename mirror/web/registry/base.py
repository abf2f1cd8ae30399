"""``GET /v2/``, the routes a read-only mirror refuses, and the operational endpoints."""

from __future__ import annotations

from aiohttp import web

from mirror.errors import ErrorCode, RegistryError
from mirror.web.keys import services


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
    """Prometheus text exposition, or OpenMetrics when the scraper's ``Accept`` asks for it."""
    body, content_type = services(request).metrics.exposition(request.headers.get("Accept", ""))
    return web.Response(body=body, headers={"Content-Type": content_type})


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the event loop answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the metadata store answers."""
    svc = services(request)
    try:
        next(iter(svc.metadata.repositories()), None)
    except Exception as exc:
        return web.json_response(
            {"status": "unavailable", "reason": type(exc).__name__}, status=503
        )
    return web.json_response({"status": "ok"})
