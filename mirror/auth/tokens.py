"""The token service: short-lived bearer tokens, signed with Ed25519, scoped by policy.

Claims follow distribution's token format (``iss``, ``sub``, ``aud``, ``exp``, ``nbf``,
``iat``, ``jti``, ``access``) plus ``tid``, the auth token a user logged in with, so revoking
it ends its bearer tokens too.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mirror.auth.access import Authorizer, Resolver
from mirror.auth.policy.grammar import Verb
from mirror.auth.principal import Principal
from mirror.auth.scope import (
    ALL,
    DELETE,
    PULL,
    PUSH,
    REGISTRY,
    REPOSITORY,
    Scope,
    access_set,
)
from mirror.clock import Clock
from mirror.crypto.jwt import TokenInvalid, decode, encode
from mirror.db.identity.store import IdentityStore

# Seconds of clock skew tolerated on ``nbf``.
LEEWAY = 30.0


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A bearer token and what the token endpoint says about it."""

    token: str
    expires_in: int
    issued_at: float
    scopes: tuple[Scope, ...]


class TokenService:
    """Issues and verifies bearer tokens for one service name."""

    def __init__(
        self,
        key: Ed25519PrivateKey,
        store: IdentityStore,
        resolver: Resolver,
        authorizer: Authorizer,
        clock: Clock,
        *,
        service: str,
        ttl: float,
    ) -> None:
        self._key = key
        self._public = key.public_key()
        self._store = store
        self._resolver = resolver
        self._authorizer = authorizer
        self._clock = clock
        self.service = service
        self._ttl = ttl

    def now(self) -> float:
        """The service's clock."""
        return self._clock.now()

    def grant(self, principal: Principal, wanted: Scope) -> Scope | None:
        """``wanted`` cut down to what the policies let ``principal`` do (``None``: nothing).

        A token request names no face (no ``Host`` of the registry request, no ``?ns=``), so
        an action is granted when the policies permit it on any face the name reaches; every
        registry request then re-checks on the face it arrived at.
        """
        if wanted.type == REGISTRY:
            return wanted if not principal.anonymous else None
        refs = self._resolver.candidates(wanted.name)

        def permits(*verbs: Verb) -> bool:
            return any(
                self._authorizer.permits(principal, ref, verb) for ref in refs for verb in verbs
            )

        granted: list[str] = []
        for action in wanted.actions:
            if action == PULL:
                ok = permits(Verb.READ, Verb.INSPECT)
            elif action == PUSH:
                ok = permits(Verb.USE)
            elif action in (DELETE, ALL):
                ok = permits(Verb.MANAGE)
            else:
                ok = False
            if ok:
                granted.append(action)
        return Scope(REPOSITORY, wanted.name, tuple(granted)) if granted else None

    def issue(self, principal: Principal, wanted: list[Scope]) -> IssuedToken:
        """A signed token carrying the granted part of ``wanted``."""
        scopes = tuple(s for s in (self.grant(principal, w) for w in wanted) if s is not None)
        now = self._clock.now()
        claims: dict[str, object] = {
            "iss": self.service,
            "sub": principal.subject,
            "aud": self.service,
            "iat": int(now),
            "nbf": int(now),
            "exp": int(now + self._ttl),
            "jti": secrets.token_hex(16),
            "access": [s.claim() for s in scopes],
        }
        if principal.token_id is not None:
            claims["tid"] = principal.token_id
        return IssuedToken(encode(claims, self._key), int(self._ttl), now, scopes)

    def verify(self, token: str) -> Principal:
        """The principal a bearer token speaks for; ``TokenInvalid`` says why not."""
        claims = decode(token, self._public)
        now = self._clock.now()
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if self.service not in audiences:
            raise TokenInvalid("wrong audience")
        if claims.get("iss") != self.service:
            raise TokenInvalid("wrong issuer")
        exp, nbf = claims.get("exp"), claims.get("nbf", 0)
        if not isinstance(exp, int | float) or not isinstance(nbf, int | float):
            raise TokenInvalid("bad times")
        if now >= exp:
            raise TokenInvalid("expired")
        if nbf > now + LEEWAY:
            raise TokenInvalid("not yet valid")
        access = access_set(claims.get("access"))
        subject = claims.get("sub")
        if not subject:
            return Principal(access=access)
        token_id = claims.get("tid")
        record = self._store.token(token_id) if isinstance(token_id, str) else None
        if record is None or not record.active or f"{record.tenancy}/{record.user}" != subject:
            raise TokenInvalid("revoked")
        if self._store.user(record.tenancy, record.user) is None:
            raise TokenInvalid("revoked")
        return Principal(record.tenancy, record.user, record.id, access)
