"""The upstream registry client: one pooled session per upstream, token auth, mapped errors.

Below the pull-through service, above the pure core: it imports only ``mirror.errors``,
``mirror.oci`` and the package version (for the User-Agent).

The names below are imported when first used, not with the package: a command that needs only
``mirror.upstream.routing`` (an export read from the cache) does not load aiohttp.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mirror.upstream.authenticator import Authenticator, Challenge, Token, parse_challenges
    from mirror.upstream.client import (
        MANIFEST_LIMIT,
        ManifestHead,
        UpstreamBlob,
        UpstreamClient,
        UpstreamManifest,
    )
    from mirror.upstream.endpoint import UpstreamEndpoint
    from mirror.upstream.transport import USER_AGENT, RetryPolicy

# Where each exported name is defined.
_HOMES = {
    "Authenticator": "authenticator",
    "Challenge": "authenticator",
    "Token": "authenticator",
    "parse_challenges": "authenticator",
    "MANIFEST_LIMIT": "client",
    "ManifestHead": "client",
    "UpstreamBlob": "client",
    "UpstreamClient": "client",
    "UpstreamManifest": "client",
    "UpstreamEndpoint": "endpoint",
    "USER_AGENT": "transport",
    "RetryPolicy": "transport",
}

__all__ = [
    "MANIFEST_LIMIT",
    "USER_AGENT",
    "Authenticator",
    "Challenge",
    "ManifestHead",
    "RetryPolicy",
    "Token",
    "UpstreamBlob",
    "UpstreamClient",
    "UpstreamEndpoint",
    "UpstreamManifest",
    "parse_challenges",
]


def __getattr__(name: str) -> Any:
    """The exported ``name``, imported from its module on first use (PEP 562)."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
