"""The single place that writes spec error bodies; request metrics; common headers."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from mirror.errors import DigestMismatch, ErrorCode, RegistryError
from mirror.web.accesslog import body_bytes
from mirror.web.keys import ELAPSED, OUTCOME, PREPARED, SERVICES, STOPPING

log = logging.getLogger(__name__)

# The status requests are counted with when the client left before its answer was sent.
CLIENT_CLOSED_REQUEST = 499
# Outcomes of answers that did not go out in full (the access line's last field).
CLIENT_GONE = "client_gone"
CANCELLED = "cancelled"

# What an ``ns`` naming a registry host (with an optional port) can look like.
_HOST = re.compile(r"[A-Za-z0-9.\-_:\[\]]{1,255}")


async def common_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: the API version on every answer, ``OCI-Namespace`` echoed;
    the response noted for the access line of a handler cancelled after its headers."""
    request[PREPARED] = response
    response.headers["Docker-Distribution-API-Version"] = "registry/2.0"
    ns = request.query.get("ns")
    # Echoed only when it can be a registry host: anything else (a control character, a
    # line break) would break the header, and with it the answer.
    if ns is not None and _HOST.fullmatch(ns):
        response.headers["OCI-Namespace"] = ns


def error_response(request: web.Request, error: RegistryError) -> web.Response:
    """The spec JSON error body for ``error`` (headers only for ``HEAD``)."""
    body = json.dumps(error.body()).encode()
    headers = dict(error.headers)
    if error.code is ErrorCode.UNAUTHORIZED:
        headers.setdefault("WWW-Authenticate", 'Basic realm="mirror"')
    response = web.Response(
        status=error.status, body=body, content_type="application/json", headers=headers
    )
    if request.method == "HEAD":
        response.body = None
        response.headers["Content-Length"] = str(len(body))
    return response


def route_of(request: web.Request) -> str:
    """The request's route as metrics label it (its canonical path, or ``unmatched``)."""
    route = request.match_info.route.resource
    return route.canonical if route is not None else "unmatched"


def client_gone(request: web.Request) -> bool:
    """Whether the client's connection is closed or closing (its own doing, or a reset)."""
    return request.transport is None or request.transport.is_closing()


def note_disconnect(request: web.Request, what: str) -> None:
    """Record a client that went away mid-answer: one INFO line and a count (normal traffic,
    not an error: clients cancel pulls, time out and retry), and the access line says so."""
    request[OUTCOME] = CLIENT_GONE
    log.info(
        "client %s disconnected during %s %s: %s",
        request.remote,
        request.method,
        request.path,
        what,
    )
    request.app[SERVICES].metrics.client_disconnects.labels(route_of(request)).inc()


def _as_registry_error(exc: BaseException) -> RegistryError:
    if isinstance(exc, RegistryError):
        return exc
    if isinstance(exc, DigestMismatch):
        return RegistryError(
            ErrorCode.UNAVAILABLE,
            "upstream content did not match its digest",
            detail={"digest": exc.expected},
        )
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return RegistryError(ErrorCode.UNSUPPORTED, detail={"method": exc.method})
    if isinstance(exc, web.HTTPNotFound):
        return RegistryError(ErrorCode.NAME_UNKNOWN, "no such endpoint")
    return RegistryError(ErrorCode.UNKNOWN)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every raised error into the spec body, and count and time each request."""
    started = time.perf_counter()
    metrics = request.app[SERVICES].metrics
    route_name = route_of(request)
    try:
        response = await handler(request)
    except (RegistryError, DigestMismatch, web.HTTPNotFound, web.HTTPMethodNotAllowed) as exc:
        response = error_response(request, _as_registry_error(exc))
    except web.HTTPException as exc:
        # Still an answer (aiohttp's own 400s, redirects): counted like the others.
        metrics.observe_request(
            route_name, request.method, exc.status, time.perf_counter() - started
        )
        raise
    except ConnectionError as exc:
        if not client_gone(request):
            log.exception("unhandled error on %s %s", request.method, request.path)
            response = error_response(request, RegistryError(ErrorCode.UNKNOWN))
        else:
            # Nobody is left to answer; 499 (as nginx logs it) keeps it apart from errors.
            note_disconnect(request, str(exc) or type(exc).__name__)
            response = web.Response(status=CLIENT_CLOSED_REQUEST)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        response = error_response(request, RegistryError(ErrorCode.UNKNOWN))
    except asyncio.CancelledError:
        record_cancelled(request, route_name, time.perf_counter() - started)
        raise
    elapsed = time.perf_counter() - started
    request[ELAPSED] = elapsed
    metrics.observe_request(route_name, request.method, response.status, elapsed)
    return response


def record_cancelled(request: web.Request, route_name: str, elapsed: float) -> None:
    """Count and log a request whose handler was cancelled (the server stopping, or
    ``handler_cancellation`` after a hang-up): aiohttp writes no access line for it. The line
    names the status whose headers went out (else 499) and the body bytes really sent."""
    request[ELAPSED] = elapsed
    response = request.get(PREPARED) or web.Response(status=CLIENT_CLOSED_REQUEST)
    if body_bytes(request, response) != response.content_length:
        # Cancelled after the last byte went out (a hang-up at once) is still a full answer.
        stopping = STOPPING in request.app and request.app[STOPPING].is_set()
        gone = client_gone(request) and not stopping
        request[OUTCOME] = CLIENT_GONE if gone else CANCELLED
    request.app[SERVICES].metrics.observe_request(
        route_name, request.method, response.status, elapsed
    )
    loop = asyncio.get_running_loop()
    request.protocol.log_access(request, response, loop.time() - elapsed)


async def note_stopping(app: web.Application) -> None:
    """``on_shutdown``: the server is stopping, so a handler cancelled from now on was cut
    by the stop (outcome ``cancelled``), not by its client."""
    app[STOPPING].set()
