"""Small secrets sealed with the keyring (pull-through rules' upstream passwords).

A secret is sealed with AES-256-GCM under a key derived (HKDF-SHA256) from the current KEK,
bound to its context (the rule's key) as associated data, and kept as text:
``v1:<kek id>:<base64 nonce>:<base64 ciphertext>``. Opening it needs the same KEK.
"""

from __future__ import annotations

import base64
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mirror.crypto.keys import Kek, KeyringError

_VERSION = "v1"
_INFO = b"mirror sealed secret v1"
_NONCE_SIZE = 12


def _key(kek: Kek) -> AESGCM:
    """The AEAD of sealed secrets under ``kek`` (never the KEK itself)."""
    return AESGCM(HKDF(hashes.SHA256(), 32, salt=None, info=_INFO).derive(kek.key))


class SecretSealer:
    """Seals and opens small secrets with the keyring's KEKs."""

    def __init__(
        self,
        current: Callable[[], Kek],
        find: Callable[[str], Kek | None],
        random_bytes: Callable[[int], bytes],
    ) -> None:
        self._current = current
        self._find = find
        self._random = random_bytes

    def seal(self, secret: str, context: str) -> str:
        """``secret`` sealed with the current KEK, bound to ``context``."""
        kek = self._current()
        nonce = self._random(_NONCE_SIZE)
        sealed = _key(kek).encrypt(nonce, secret.encode(), context.encode())
        return ":".join((_VERSION, kek.id, _b64(nonce), _b64(sealed)))

    def is_current(self, sealed: str) -> bool:
        """Whether ``sealed`` was sealed with the current KEK (else re-seal it)."""
        return sealed.startswith(f"{_VERSION}:{self._current().id}:")

    def open(self, sealed: str, context: str) -> str:
        """The secret in ``sealed``; ``KeyringError`` when malformed, its KEK is missing, or
        it was not sealed for ``context``."""
        parts = sealed.split(":")
        if len(parts) != 4 or parts[0] != _VERSION:
            raise KeyringError(f"sealed secret for {context}: unknown format")
        kek = self._find(parts[1])
        if kek is None:
            raise KeyringError(f"sealed secret for {context}: KEK {parts[1]} is not in the keyring")
        try:
            plain = _key(kek).decrypt(_unb64(parts[2]), _unb64(parts[3]), context.encode())
        except (InvalidTag, ValueError):
            raise KeyringError(f"sealed secret for {context}: does not open") from None
        return plain.decode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)
