"""Checking ``<tenancy>/<user>`` + auth token logins: slow hashes, throttled, cached briefly.

A verified login is remembered for ``remember`` seconds under an HMAC of the credentials
(keyed with a per-process random key, so the secret itself is never kept), so that clients
sending Basic credentials on every registry request do not pay scrypt each time. Revoking the
token ends it at once: every hit re-checks that the token is still active.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from mirror.auth.principal import Principal
from mirror.auth.throttle import LoginThrottle
from mirror.clock import Clock
from mirror.crypto.secrets import burn, verify_secret
from mirror.db.identity.records import split_token
from mirror.db.identity.store import IdentityStore
from mirror.errors import ErrorCode, RegistryError
from mirror.lru import Lru

_MAX_REMEMBERED = 10_000


class LoginFailed(RegistryError):
    """Bad credentials; says nothing about which part was wrong."""

    def __init__(self) -> None:
        super().__init__(ErrorCode.UNAUTHORIZED, "incorrect username or auth token")


class Login:
    """Verifies credentials against the identity store."""

    def __init__(
        self,
        store: IdentityStore,
        throttle: LoginThrottle,
        clock: Clock,
        *,
        hash_cost: int,
        remember: float = 60.0,
        remember_limit: int = _MAX_REMEMBERED,
    ) -> None:
        self._store = store
        self._throttle = throttle
        self._clock = clock
        self.hash_cost = hash_cost
        self._remember = remember
        self._key = secrets.token_bytes(32)
        # The least recently used login is forgotten first: many logins (one tenancy's many
        # tokens) cannot flush everyone else's.
        self._verified: Lru[bytes, tuple[str, float]] = Lru(remember_limit)

    def check(self, username: str, password: str, source: str) -> Principal:
        """The user the credentials belong to; ``LoginFailed`` or ``TOOMANYREQUESTS``."""
        self._throttle.check(source)
        now = self._clock.now()
        mark = hmac.new(self._key, f"{username}\0{password}".encode(), hashlib.sha256).digest()
        remembered = self._verified.get(mark)
        if remembered is not None and remembered[1] > now:
            principal = self._active(remembered[0])
            if principal is not None:
                return principal
        principal = self._verify(username, password)
        if principal is None or principal.token_id is None:
            self._throttle.failed(source, username)
            raise LoginFailed()
        self._throttle.succeeded(source, username)
        self._verified.put(mark, (principal.token_id, now + self._remember))
        self._store.touch_token(principal.token_id, now)
        return principal

    def _active(self, token_id: str) -> Principal | None:
        token = self._store.token(token_id)
        if token is None or not token.active or self._store.user(token.tenancy, token.user) is None:
            return None
        return Principal(token.tenancy, token.user, token.id)

    def _verify(self, username: str, password: str) -> Principal | None:
        tenancy, _, user = username.partition("/")
        parts = split_token(password)
        if parts is None:
            burn(password, self.hash_cost)
            return None
        token = self._store.token(parts[0])
        if token is None or (token.tenancy, token.user) != (tenancy, user):
            burn(parts[1], self.hash_cost)
            return None
        if not verify_secret(parts[1], token.hash) or not token.active:
            return None
        return self._active(token.id)
