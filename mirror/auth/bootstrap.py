"""First start: the signing key, the admin tenancy and its first administrator.

The administrator's token is returned once to be printed by the caller; only its hash is kept.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from mirror.db.identity.records import ADMINISTRATORS
from mirror.db.identity.store import IdentityStore

ADMIN_USER = "admin"


@dataclass(frozen=True, slots=True)
class Bootstrapped:
    """The administrator created at first start and its one-time token."""

    tenancy: str
    user: str
    token: str

    def announcement(self) -> str:
        """What to print, once: how to log in as the first administrator."""
        return (
            f"mirror: created the initial administrator {self.tenancy}/{self.user}; "
            f"its auth token (shown only now) is: {self.token}"
        )


def load_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 signing key at ``path`` (``OSError`` when missing, ``ValueError`` when it
    is not one)."""
    key = load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return key


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 signing key at ``path``, created (mode 0600) when missing."""
    if path.exists():
        return load_key(path)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    return key


def bootstrap(
    store: IdentityStore, admin_tenancy: str, now: float, *, hash_cost: int
) -> Bootstrapped | None:
    """On the very first start create ``admin_tenancy`` with user ``admin`` in its
    administrators group and a token for it; later starts do nothing (``None``)."""
    if store.bootstrapped():
        return None
    if store.tenancy(admin_tenancy) is None:
        store.create_tenancy(admin_tenancy, now)
    if store.user(admin_tenancy, ADMIN_USER) is None:
        store.create_user(admin_tenancy, ADMIN_USER, now)
    store.set_member(admin_tenancy, ADMINISTRATORS, ADMIN_USER, True)
    _, token = store.create_token(
        admin_tenancy, ADMIN_USER, "created at first start", now, cost=hash_cost
    )
    store.mark_bootstrapped()
    return Bootstrapped(admin_tenancy, ADMIN_USER, token)
