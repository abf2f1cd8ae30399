"""Offline mode: the one refusal every upstream request meets when ``cache.offline`` is set.

:class:`~mirror.upstream.transport.Transport` is the only code that opens a connection to an
upstream (requests, token fetches and readiness probes all go through its session). An
offline transport never opens that session and raises :class:`MirrorOffline` before anything
would be sent, so no code path can reach an upstream from an offline mirror.
"""

from __future__ import annotations

from mirror.errors import ErrorCode, RegistryError

OFFLINE_MESSAGE = "the mirror is offline (cache.offline): content not in the cache is not fetched"


class MirrorOffline(RegistryError):
    """A request needed an upstream while the mirror is offline: a fast 404 in the ``unknown``
    code of what was asked for (``MANIFEST_UNKNOWN``, ``BLOB_UNKNOWN``, ``NAME_UNKNOWN``)."""

    def __init__(self, unknown: ErrorCode, upstream: str) -> None:
        code = unknown if unknown.status == 404 else ErrorCode.NAME_UNKNOWN
        super().__init__(code, OFFLINE_MESSAGE, detail={"upstream": upstream, "offline": True})
