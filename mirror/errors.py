"""The one error model: OCI distribution error codes, each declared once with its HTTP status.

Handlers and services raise :class:`RegistryError`; a single middleware writes the
``{"errors": [...]}`` body (distribution-spec "Error Codes").
"""

from __future__ import annotations

import enum
from typing import Any


class ErrorCode(enum.Enum):
    """A spec error code and the HTTP status it is answered with."""

    BLOB_UNKNOWN = (404, "blob unknown to registry")
    BLOB_UPLOAD_INVALID = (400, "blob upload invalid")
    BLOB_UPLOAD_UNKNOWN = (404, "blob upload unknown to registry")
    DIGEST_INVALID = (400, "provided digest did not match uploaded content")
    MANIFEST_BLOB_UNKNOWN = (404, "manifest references a manifest or blob unknown to registry")
    MANIFEST_INVALID = (400, "manifest invalid")
    MANIFEST_UNKNOWN = (404, "manifest unknown to registry")
    NAME_INVALID = (400, "invalid repository name")
    NAME_UNKNOWN = (404, "repository name not known to registry")
    SIZE_INVALID = (400, "provided length did not match content length")
    UNAUTHORIZED = (401, "authentication required")
    DENIED = (403, "requested access to the resource is denied")
    UNSUPPORTED = (405, "the operation is unsupported")
    TOOMANYREQUESTS = (429, "too many requests")
    # Not in the spec's table but used by distribution and understood by clients.
    TAG_INVALID = (400, "manifest tag did not match URI")
    RANGE_INVALID = (416, "requested range not satisfiable")
    PAGINATION_NUMBER_INVALID = (400, "invalid number of results requested")
    UNAVAILABLE = (503, "upstream registry unavailable")
    UNKNOWN = (500, "unknown error")
    # Administration API (identity, policies, repositories, pull-through rules).
    RESOURCE_UNKNOWN = (404, "resource unknown")
    RESOURCE_EXISTS = (409, "resource already exists")
    LIMIT_EXCEEDED = (409, "limit exceeded")
    REQUEST_INVALID = (400, "request invalid")
    # Policies: auth policy statements and retention policies alike.
    POLICY_INVALID = (400, "policy invalid")
    # The mirror's admin API for retention policies, answered in the same body shape.
    POLICY_UNKNOWN = (404, "retention policy unknown")
    POLICY_CONFLICT = (409, "retention policy conflict")
    RETENTION_BUSY = (409, "the data directory is in use by a running mirror")
    # A run asked of one replica of a tier while another replica's run holds the tier's lock.
    RETENTION_RUNNING = (409, "a retention run is in progress at another replica")

    @property
    def status(self) -> int:
        """The HTTP status this code is answered with."""
        return self.value[0]

    @property
    def message(self) -> str:
        """The spec's default message for this code."""
        return self.value[1]


class RegistryError(Exception):
    """An error answered to the client as a spec error body.

    ``detail`` carries the facts (digest, expected, actual); ``headers`` are extra response
    headers such as ``Retry-After`` or ``Content-Range``.
    """

    def __init__(
        self,
        code: ErrorCode,
        message: str | None = None,
        *,
        detail: Any = None,
        headers: dict[str, str] | None = None,
        status: int | None = None,
    ) -> None:
        self.code = code
        self.message = message or code.message
        self.detail = detail
        self.headers = dict(headers or {})
        self.status = status or code.status
        super().__init__(f"{code.name}: {self.message}")

    def body(self) -> dict[str, Any]:
        """The spec JSON body for this error."""
        entry: dict[str, Any] = {"code": self.code.name, "message": self.message}
        if self.detail is not None:
            entry["detail"] = self.detail
        return {"errors": [entry]}


class UpstreamUnavailable(RegistryError):
    """The upstream could not answer (connect error, timeout, 5xx): serving stale is allowed."""

    def __init__(self, message: str, *, detail: Any = None) -> None:
        super().__init__(ErrorCode.UNAVAILABLE, message, detail=detail)


class UpstreamThrottled(RegistryError):
    """The upstream answered 429; ``retry_after`` is in seconds when it said so."""

    def __init__(self, retry_after: float | None, *, detail: Any = None) -> None:
        headers = {"Retry-After": str(int(retry_after))} if retry_after is not None else {}
        super().__init__(
            ErrorCode.TOOMANYREQUESTS,
            "upstream registry rate limit",
            detail=detail,
            headers=headers,
        )
        self.retry_after = retry_after


class DigestMismatch(Exception):
    """Content did not hash to the digest it was named by, or was not of the declared size."""

    def __init__(
        self,
        expected: str,
        actual: str,
        *,
        expected_size: int | None = None,
        actual_size: int | None = None,
    ) -> None:
        self.expected = expected
        self.actual = actual
        self.expected_size = expected_size
        self.actual_size = actual_size
        super().__init__(
            f"digest mismatch: expected {expected} ({expected_size} bytes), "
            f"got {actual} ({actual_size} bytes)"
        )


class CorruptObject(Exception):
    """A cached object failed its integrity check (tag, header, size or digest): never serve
    it. Raised after the store has evicted it."""

    def __init__(self, digest: str, reason: str) -> None:
        self.digest = digest
        self.reason = reason
        super().__init__(f"cached object {digest} is corrupt: {reason}")


class KeyUnavailable(RegistryError):
    """An object is wrapped by a KEK this cache knows but the loaded keyring lacks (e.g. a
    rotation the server has not picked up): answer 503, evict nothing."""

    def __init__(self, digest: str, kek_ids: list[str]) -> None:
        super().__init__(
            ErrorCode.UNAVAILABLE,
            "cache key not loaded",
            detail={"digest": digest, "kek": kek_ids},
        )
        self.kek_ids = kek_ids
