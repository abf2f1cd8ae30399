"""Peer requests between replicas, signed with the tier's shared secret.

A replica asks another for a blob with ``Mirror-Tier-Signature: <expires>.<sender>.<mac>``,
``mac`` the hex HMAC-SHA256 of ``METHOD \\n PATH?QUERY \\n expires \\n sender`` under the
secret. The owner serves the internal route only to a valid, unexpired signature: it is not an
open proxy, whoever can reach the replica's port.
"""

from __future__ import annotations

import hashlib
import hmac

from mirror.clock import Clock

HEADER = "Mirror-Tier-Signature"
# How long a signature stays valid: covers the clock skew between replicas, no more.
LIFETIME = 60.0


class PeerSigner:
    """Signs and checks peer requests with one shared secret."""

    def __init__(self, secret: bytes, clock: Clock, *, lifetime: float = LIFETIME) -> None:
        if len(secret) < 16:
            raise ValueError("the tier secret must be at least 16 bytes")
        self._secret = secret
        self._clock = clock
        self._lifetime = lifetime

    def _mac(self, method: str, path_qs: str, expires: int, sender: str) -> str:
        message = f"{method}\n{path_qs}\n{expires}\n{sender}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def sign(self, method: str, path_qs: str, sender: str) -> str:
        """The header value for a request from ``sender`` (its server string)."""
        expires = int(self._clock.now() + self._lifetime)
        return f"{expires}.{sender}.{self._mac(method, path_qs, expires, sender)}"

    def verify(self, method: str, path_qs: str, value: str | None) -> str | None:
        """The sender of a validly signed, unexpired request; ``None`` otherwise."""
        if not value:
            return None
        expires_text, _, rest = value.partition(".")
        sender, _, mac = rest.rpartition(".")
        if not expires_text.isdigit() or not sender or not mac:
            return None
        expires = int(expires_text)
        if expires < self._clock.now() or expires > self._clock.now() + 2 * self._lifetime:
            return None
        expected = self._mac(method, path_qs, expires, sender)
        return sender if hmac.compare_digest(expected, mac) else None
