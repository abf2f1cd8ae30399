"""One access-log line per request, formatted lazily (only when the logger is enabled).

aiohttp's default logger parses a format string and builds an ``extra`` dict for every
request; on small manifest requests that was a tenth of the server's CPU. The line's fields
also travel as one ``access`` dict on the record, for ``--log-format json``.

A request aiohttp could not parse (TLS sent to a plain-HTTP port, a malformed request line)
never reaches the app: it is logged here as what it was, with the parser's reason, and
counted as route ``unparsable``, instead of as ``"UNKNOWN /" 400``.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_protocol import ERROR

from mirror.metrics import Metrics
from mirror.web.keys import ELAPSED, OUTCOME, PRINCIPAL, SENT_DIRECT, SENT_STREAMED

# The route label of requests that could not be parsed as HTTP.
UNPARSABLE = "unparsable"
# The outcome of an answer that went out in full.
COMPLETE = "complete"


def header_bytes(request: web.BaseRequest, response: web.StreamResponse) -> int:
    """The size of the status line and headers aiohttp sent (as its writer serialises them)."""
    major, minor = request.version
    size = len(f"HTTP/{major}.{minor} {response.status} {response.reason}".encode()) + 4
    for name, value in response.headers.items():
        size += len(name.encode()) + len(value.encode()) + 4
    return size


def body_bytes(request: web.BaseRequest, response: web.StreamResponse) -> int:
    """Bytes of the body sent: aiohttp's ``body_length`` counts the headers too, and not what
    a handler wrote to the socket itself; it is 0 until the end is written, so a streamed
    answer cut short counts what its handler recorded (``SENT_STREAMED``)."""
    direct: int = request.get(SENT_DIRECT, 0)
    if response.body_length:
        return max(0, response.body_length - header_bytes(request, response)) + direct
    streamed: int = request.get(SENT_STREAMED, 0)
    return streamed + direct


def unparsable_reason(response: web.StreamResponse) -> str:
    """Why aiohttp refused a request it could not parse, in words."""
    text = response.text if isinstance(response, web.Response) else None
    raw = text or ""
    if "\\x16\\x03" in raw or "HTTPS traffic" in raw:
        return "a TLS handshake on a plain-HTTP port (use http://, or configure server.tls_cert)"
    first = raw.split("\n", 1)[0].strip()
    return first[:200] or "not HTTP"


class AccessLogger(AbstractAccessLogger):
    """``REMOTE "METHOD PATH?QUERY" STATUS BODY-BYTES MILLISECONDSms "USER-AGENT"``, then
    ``client_gone`` or ``cancelled`` when the answer did not go out in full.

    ``metrics`` (set by :func:`access_logger_class`) counts unparsable requests; ``lines``
    off keeps only those (``server.access_log = false``).
    """

    metrics: Metrics | None = None
    lines: bool = True

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        """One access line per request; a request that was not HTTP is one readable warning,
        counted."""
        # aiohttp answers what it could not parse with its ERROR message (``Request.message``
        # is deprecated, so read the attribute behind it).
        if request._message is ERROR:
            self._unparsable(request, response, time)
            return
        if not self.lines:
            return
        # The handler's own measure when it ran through the middleware (finer than ``time``).
        user, outcome = "", COMPLETE
        if isinstance(request, web.Request):
            time = request.get(ELAPSED, time)
            principal = request.get(PRINCIPAL)
            user = principal.subject if principal is not None else ""
            outcome = request.get(OUTCOME, COMPLETE)
        fields: dict[str, Any] = {
            "remote": request.remote,
            "method": request.method,
            "path": request.path_qs,
            "status": response.status,
            "bytes": body_bytes(request, response),
            "duration_ms": round(time * 1000, 2),
            "user_agent": request.headers.get("User-Agent", "-"),
            "user": user,
            "outcome": outcome,
        }
        self.logger.info(
            '%s "%s %s" %d %d %.2fms "%s"%s',
            fields["remote"],
            fields["method"],
            fields["path"],
            fields["status"],
            fields["bytes"],
            time * 1000,
            fields["user_agent"],
            "" if outcome == COMPLETE else " " + outcome,
            extra={"access": fields},
        )

    def _unparsable(
        self, request: web.BaseRequest, response: web.StreamResponse, time: float
    ) -> None:
        if self.metrics is not None:
            self.metrics.observe_request(UNPARSABLE, "-", response.status, time)
        reason = unparsable_reason(response)
        self.logger.warning(
            "%s unparsable request, answered %d: %s",
            request.remote,
            response.status,
            reason,
            extra={
                "access": {
                    "remote": request.remote,
                    "status": response.status,
                    "bytes": body_bytes(request, response),
                    "duration_ms": round(time * 1000, 2),
                    "error": reason,
                }
            },
        )

    @property
    def enabled(self) -> bool:
        """Whether ``log`` has anything to do (aiohttp skips timing when not)."""
        return self.logger.isEnabledFor(logging.INFO if self.lines else logging.WARNING)


def access_logger_class(metrics: Metrics, *, lines: bool) -> type[AccessLogger]:
    """An ``AccessLogger`` that counts unparsable requests in ``metrics`` (aiohttp builds the
    logger itself from a class, so what it needs travels on the class)."""
    return type("BoundAccessLogger", (AccessLogger,), {"metrics": metrics, "lines": lines})
