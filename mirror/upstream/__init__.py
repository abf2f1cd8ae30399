"""The upstream registry client: one pooled session per upstream, token auth, mapped errors.

Below the pull-through service, above the pure core: it imports only ``mirror.errors``,
``mirror.oci`` and the package version (for the User-Agent).
"""

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
