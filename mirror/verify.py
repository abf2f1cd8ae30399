"""Verification that wraps a stream: hash and size-check bytes as they pass, fail at the end."""

from __future__ import annotations

from mirror.errors import DigestMismatch
from mirror.oci.digest import Digest


class Verifier:
    """Hashes content as it streams and checks it against ``digest`` (and ``size`` if known).

    ``update`` fails early once more bytes than ``size`` arrived; ``verify`` fails when the
    stream ended short or hashed to something else.
    """

    def __init__(self, digest: Digest, size: int | None = None) -> None:
        self.digest = digest
        self.size = size
        self.count = 0
        self._hash = digest.hasher()

    def update(self, chunk: bytes | memoryview) -> None:
        """Absorb ``chunk``; raises ``DigestMismatch`` as soon as the size is exceeded."""
        self.count += len(chunk)
        if self.size is not None and self.count > self.size:
            raise DigestMismatch(
                str(self.digest), "(too long)", expected_size=self.size, actual_size=self.count
            )
        self._hash.update(chunk)

    def verify(self) -> None:
        """Raise ``DigestMismatch`` unless exactly the expected content was seen."""
        actual = f"{self.digest.algorithm}:{self._hash.hexdigest()}"
        if actual != str(self.digest) or (self.size is not None and self.count != self.size):
            raise DigestMismatch(
                str(self.digest), actual, expected_size=self.size, actual_size=self.count
            )
