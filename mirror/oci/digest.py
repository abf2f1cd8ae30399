"""Content digests (image-spec "Digests"): ``algorithm:encoded``."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from mirror.errors import ErrorCode, RegistryError

_ENCODED = {
    "sha256": re.compile(r"^[a-f0-9]{64}$"),
    "sha512": re.compile(r"^[a-f0-9]{128}$"),
}


@dataclass(frozen=True, slots=True)
class Digest:
    """A validated digest. ``str(d)`` gives the canonical ``sha256:...`` form."""

    algorithm: str
    encoded: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse ``text``; raises ``RegistryError(DIGEST_INVALID)`` on anything malformed."""
        algorithm, sep, encoded = text.partition(":")
        pattern = _ENCODED.get(algorithm)
        if not sep or pattern is None or not pattern.fullmatch(encoded):
            raise RegistryError(ErrorCode.DIGEST_INVALID, "invalid digest", detail={"digest": text})
        return cls(algorithm, encoded)

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        """The digest of ``data``."""
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def hasher(self) -> hashlib._Hash:
        """A fresh hash object of this digest's algorithm."""
        return hashlib.new(self.algorithm)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.encoded}"


def is_digest(text: str) -> bool:
    """Whether ``text`` looks like a digest reference rather than a tag."""
    return ":" in text
