"""Upstream answers mapped onto the one error model (``mirror.errors``).

404 becomes the ``*_UNKNOWN`` code the caller names (or the upstream's own code when it is a
known one with that status), 401/403 ``UNAUTHORIZED``/``DENIED``, 429 ``UpstreamThrottled``,
5xx and anything unexpected ``UpstreamUnavailable``. The upstream's own words (its error
message, body, an exception's text) never reach the client: an upstream may be hostile or
internal, and tenants must not read it back. Errors say which step failed and the status.
"""

from __future__ import annotations

import json
import os
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp

from mirror.errors import ErrorCode, RegistryError, UpstreamThrottled, UpstreamUnavailable
from mirror.upstream.addresses import refusal

ERROR_BODY_LIMIT = 64 * 1024


def parse_retry_after(value: str | None, date: str | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header, or None when absent or unreadable.

    An HTTP-date is measured against the response's own ``Date`` header, which keeps this
    free of the local clock (and of skew between the two hosts).
    """
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if seconds >= 0 else None
    if not date:
        return None
    try:
        when = parsedate_to_datetime(text)
        now = parsedate_to_datetime(date)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - now).total_seconds())


def upstream_error_entry(body: bytes) -> dict[str, Any] | None:
    """The first entry of a spec ``{"errors": [...]}`` body, or None."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    errors = document.get("errors") if isinstance(document, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return errors[0]
    return None


def error_for(
    status: int,
    body: bytes,
    *,
    unknown: ErrorCode,
    retry_after: float | None = None,
) -> RegistryError:
    """The error to raise for an upstream answer of ``status`` (>= 400) with ``body``.

    ``unknown`` is the code for a 404 whose body names no better one (``MANIFEST_UNKNOWN``,
    ``BLOB_UNKNOWN``, ``NAME_UNKNOWN``).
    """
    detail: dict[str, Any] = {"upstream_status": status}
    if status == 429:
        return UpstreamThrottled(retry_after, detail=detail)
    if status >= 500:
        return UpstreamUnavailable(f"upstream answered {status}", detail=detail)
    entry = upstream_error_entry(body)
    upstream_code = ErrorCode.__members__.get(str(entry.get("code"))) if entry else None
    if upstream_code is not None and upstream_code.status == status:
        code = upstream_code
    elif status in _BY_STATUS:
        code = _BY_STATUS[status]
    elif status == 404:
        code = unknown
    else:
        return UpstreamUnavailable(f"unexpected upstream answer {status}", detail=detail)
    # The code's own message, not the upstream's: its text is not ours to repeat.
    return RegistryError(code, detail=detail)


_BY_STATUS = {
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.DENIED,
    405: ErrorCode.UNSUPPORTED,
    416: ErrorCode.RANGE_INVALID,
}


def connection_failure(exc: BaseException) -> str:
    """A one-line reason for a failed exchange with an upstream (``cannot resolve host``,
    ``connection refused``, ``timed out``...), never a Python repr nor the upstream's text."""
    if refusal(exc) is not None:
        return "address not allowed"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"cannot resolve host {exc.host}"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate of {exc.host}:{exc.port} not trusted"
    if isinstance(exc, aiohttp.ClientConnectorSSLError | aiohttp.ClientSSLError):
        return "TLS handshake failed"
    if isinstance(exc, aiohttp.ClientConnectorError):
        error = exc.os_error
        # os.strerror: asyncio's strerror repeats the address ("Connect call failed (...)").
        reason = os.strerror(error.errno) if error.errno else error.strerror
        reason = reason or type(error).__name__
        return f"cannot connect to {exc.host}:{exc.port}: {reason.lower()}"
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "connection closed before an answer"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "answer broken off"
    if isinstance(exc, aiohttp.ClientOSError) and exc.strerror:
        return exc.strerror.lower()
    return type(exc).__name__


async def read_capped(resp: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The whole body if it is at most ``limit`` bytes, else None (the body is not drained)."""
    declared = resp.content_length
    if declared is not None and declared > limit:
        return None
    parts: list[bytes] = []
    total = 0
    async for chunk in resp.content.iter_any():
        total += len(chunk)
        if total > limit:
            return None
        parts.append(chunk)
    return b"".join(parts)


async def error_from_response(
    resp: aiohttp.ClientResponse, *, unknown: ErrorCode, retry_after: float | None = None
) -> RegistryError:
    """Read a failed response's (small) body and map it with :func:`error_for`."""
    body = b""
    if resp.method != "HEAD":
        try:
            body = await read_capped(resp, ERROR_BODY_LIMIT) or b""
        except (aiohttp.ClientError, TimeoutError):
            body = b""
    return error_for(resp.status, body, unknown=unknown, retry_after=retry_after)
