"""Auth token secrets: generated at random, stored only as slow salted scrypt hashes.

Comparisons are constant-time (``hmac.compare_digest``). A failed lookup should still spend
the hashing time (:func:`burn`) so timing does not tell whether a user exists.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

# scrypt cost N (a power of two); r=8, p=1. 2**14 costs ~30-50 ms and 16 MiB per check.
DEFAULT_COST = 2**14
_R = 8
_P = 1
_SALT_BYTES = 16
_HASH_BYTES = 32
_DUMMY_SALT = b"\0" * _SALT_BYTES


@dataclass(frozen=True, slots=True)
class SecretHash:
    """A scrypt hash of a secret with its salt and cost; never the secret itself."""

    salt: bytes = field(repr=False)
    digest: bytes = field(repr=False)
    cost: int = DEFAULT_COST


def _scrypt(secret: str, salt: bytes, cost: int) -> bytes:
    return hashlib.scrypt(
        secret.encode(), salt=salt, n=cost, r=_R, p=_P, maxmem=256 * 1024 * 1024, dklen=_HASH_BYTES
    )


def hash_secret(secret: str, cost: int = DEFAULT_COST) -> SecretHash:
    """Hash ``secret`` with a fresh random salt."""
    if cost < 2 or cost & (cost - 1):
        raise ValueError(f"scrypt cost must be a power of two >= 2, got {cost}")
    salt = secrets.token_bytes(_SALT_BYTES)
    return SecretHash(salt, _scrypt(secret, salt, cost), cost)


def verify_secret(secret: str, stored: SecretHash) -> bool:
    """Whether ``secret`` hashes to ``stored`` (constant-time comparison)."""
    return hmac.compare_digest(_scrypt(secret, stored.salt, stored.cost), stored.digest)


def burn(secret: str, cost: int = DEFAULT_COST) -> None:
    """Spend the time of one verification, for lookups that found nothing to verify."""
    _scrypt(secret, _DUMMY_SALT, cost)


def new_token_id() -> str:
    """A public token identifier (12 hex digits)."""
    return secrets.token_hex(6)


def new_token_secret() -> str:
    """A random secret of 256 bits, URL-safe."""
    return secrets.token_urlsafe(32)


def constant_time_equal(a: str, b: str) -> bool:
    """String equality that takes the same time wherever the strings differ."""
    return hmac.compare_digest(a.encode(), b.encode())
