"""Compact JWS (JWT) signed with Ed25519 (``alg: EdDSA``, RFC 8037): encode and verify.

Only the signature and the shape are checked here; what the claims mean (expiry, audience,
access) is the token service's business.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ALGORITHM = "EdDSA"
MAX_TOKEN_LENGTH = 16 * 1024


class TokenInvalid(ValueError):
    """A token is malformed or its signature does not verify; ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def b64url(data: bytes) -> str:
    """Unpadded base64url, as JOSE writes it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    """Inverse of :func:`b64url`; raises :class:`TokenInvalid`."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        raise TokenInvalid("bad base64url") from None


def key_id(public: Ed25519PublicKey) -> str:
    """A short, stable identifier of a public key (the JWS ``kid``)."""
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return b64url(hashlib.sha256(raw).digest()[:12])


def encode(claims: dict[str, Any], key: Ed25519PrivateKey) -> str:
    """Sign ``claims`` into a compact JWS."""
    header = {"typ": "JWT", "alg": ALGORITHM, "kid": key_id(key.public_key())}
    signing_input = ".".join(
        b64url(json.dumps(part, separators=(",", ":"), sort_keys=True).encode())
        for part in (header, claims)
    )
    signature = key.sign(signing_input.encode())
    return f"{signing_input}.{b64url(signature)}"


def decode(token: str, public: Ed25519PublicKey) -> dict[str, Any]:
    """The claims of ``token`` if it is well formed and signed by ``public``'s key."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenInvalid("token too long")
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenInvalid("not a compact JWS")
    try:
        header = json.loads(b64url_decode(parts[0]))
    except (ValueError, UnicodeDecodeError):
        raise TokenInvalid("bad header") from None
    if not isinstance(header, dict) or header.get("alg") != ALGORITHM:
        raise TokenInvalid("unsupported algorithm")
    if header.get("kid") != key_id(public):
        raise TokenInvalid("unknown signing key")
    try:
        public.verify(b64url_decode(parts[2]), f"{parts[0]}.{parts[1]}".encode())
    except InvalidSignature:
        raise TokenInvalid("bad signature") from None
    try:
        claims = json.loads(b64url_decode(parts[1]))
    except (ValueError, UnicodeDecodeError):
        raise TokenInvalid("bad claims") from None
    if not isinstance(claims, dict):
        raise TokenInvalid("bad claims")
    return claims
