"""Key-encryption keys (KEKs) and the keyring that holds them.

A keyring is text, one ``ID:BASE64KEY`` entry per line (or comma-separated, for environment
variables); ``#`` starts a comment. The first entry is the *current* KEK, which wraps the data
keys of new objects; the others only unwrap. Key files, environment variables and external
commands all speak this format.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

KEK_SIZE = 32
_ID = re.compile(r"[A-Za-z0-9._-]{1,32}")
_CHECK_LABEL = b"mirror kek check v1"


class KeyringError(Exception):
    """A KEK is missing, malformed, wrong for this cache, or its file is unsafe."""


@dataclass(frozen=True)
class Kek:
    """One key-encryption key: its id (recorded in object headers) and 32 secret bytes."""

    id: str
    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not _ID.fullmatch(self.id):
            raise KeyringError(f"KEK id {self.id!r}: expected 1-32 of [A-Za-z0-9._-]")
        if len(self.key) != KEK_SIZE:
            raise KeyringError(f"KEK {self.id}: expected {KEK_SIZE} bytes, got {len(self.key)}")

    def check_value(self) -> str:
        """A public fingerprint (HMAC of a fixed label): tells a wrong key from the right one
        without revealing anything about it."""
        return hmac.new(self.key, _CHECK_LABEL, hashlib.sha256).hexdigest()


def new_kek(random_bytes: Callable[[int], bytes], now: float) -> Kek:
    """A fresh KEK whose id says when it was made: ``kek-YYYYMMDD-<8 hex>``."""
    day = time.strftime("%Y%m%d", time.gmtime(now))
    return Kek(f"kek-{day}-{random_bytes(4).hex()}", random_bytes(KEK_SIZE))


@dataclass(frozen=True)
class Keyring:
    """KEKs by id; the first is current."""

    keks: tuple[Kek, ...]

    def __post_init__(self) -> None:
        if not self.keks:
            raise KeyringError("the keyring holds no KEK")
        ids = [k.id for k in self.keks]
        if len(set(ids)) != len(ids):
            raise KeyringError(f"KEK ids appear twice: {ids}")

    @property
    def current(self) -> Kek:
        """The KEK that wraps new data keys."""
        return self.keks[0]

    def get(self, kek_id: str) -> Kek | None:
        """The KEK named ``kek_id``, or ``None``."""
        for kek in self.keks:
            if kek.id == kek_id:
                return kek
        return None

    def ids(self) -> tuple[str, ...]:
        """Every KEK id, current first."""
        return tuple(k.id for k in self.keks)

    def with_current(self, kek: Kek) -> Keyring:
        """This keyring with ``kek`` added in front (so it becomes current)."""
        return Keyring((kek, *self.keks))

    def without(self, kek_id: str) -> Keyring:
        """This keyring with ``kek_id`` removed (never the current one)."""
        if kek_id == self.current.id:
            raise KeyringError(f"{kek_id} is the current KEK; rotate to a new one first")
        if self.get(kek_id) is None:
            raise KeyringError(f"no KEK {kek_id} in the keyring")
        return Keyring(tuple(k for k in self.keks if k.id != kek_id))

    def format(self) -> str:
        """The keyring as key-file text."""
        lines = ["# mirror key-encryption keys: ID:BASE64KEY, current first. Keep secret."]
        lines += [f"{k.id}:{base64.b64encode(k.key).decode()}" for k in self.keks]
        return "\n".join(lines) + "\n"

    @staticmethod
    def parse(text: str, where: str) -> Keyring:
        """Parse keyring text; ``where`` names its source in error messages."""
        keks = []
        entries = [e for line in text.splitlines() for e in line.split("#", 1)[0].split(",")]
        for number, raw in enumerate(entries, 1):
            entry = raw.strip()
            if not entry:
                continue
            kek_id, sep, encoded = entry.partition(":")
            if not sep:
                raise KeyringError(f"{where}: entry {number}: expected ID:BASE64KEY")
            try:
                key = base64.b64decode(encoded.strip(), validate=True)
            except (binascii.Error, ValueError):
                raise KeyringError(f"{where}: KEK {kek_id.strip()}: not base64") from None
            try:
                keks.append(Kek(kek_id.strip(), key))
            except KeyringError as exc:
                raise KeyringError(f"{where}: {exc}") from None
        if not keks:
            raise KeyringError(f"{where}: holds no KEK")
        try:
            return Keyring(tuple(keks))
        except KeyringError as exc:
            raise KeyringError(f"{where}: {exc}") from None
