"""The trust boundary of token realms: same host, or the upstream's parent domain; https."""

from __future__ import annotations

import pytest
from yarl import URL

from mirror.upstream.realm import realm_allowed


@pytest.mark.parametrize(
    ("upstream", "realm", "allowed"),
    [
        ("https://registry-1.docker.io", "https://auth.docker.io/token", True),
        ("https://ghcr.io", "https://ghcr.io/token", True),
        ("https://quay.io", "https://quay.io/v2/auth", True),
        ("https://registry.gitlab.com", "https://gitlab.com/jwt/auth", True),
        ("https://registry-1.docker.io", "http://auth.docker.io/token", False),
        ("https://registry-1.docker.io", "https://auth.docker.io:8443/token", False),
        ("https://ghcr.io", "https://evil.io/token", False),
        ("https://ghcr.io", "https://169.254.169.254/latest", False),
        ("https://registry.example.com", "https://example.com.evil.org/t", False),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000/token", True),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5001/token", False),
        ("http://127.0.0.1:5000", "http://localhost:5000/token", False),
        ("https://127.0.0.1:5000", "http://127.0.0.1:5000/token", False),
    ],
)
def test_realm_boundary(upstream: str, realm: str, allowed: bool) -> None:
    assert realm_allowed(URL(upstream), URL(realm)) is allowed
