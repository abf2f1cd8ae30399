"""The auth services behind the web layer, and how a request is authenticated."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from mirror.auth.access import Authorizer, RepoRef, Resolver
from mirror.auth.links import LinkGuard
from mirror.auth.login import Login
from mirror.auth.principal import ANONYMOUS, Principal
from mirror.auth.tokens import TokenService
from mirror.crypto.jwt import TokenInvalid
from mirror.db.identity.records import PullThroughRule
from mirror.db.identity.store import IdentityStore
from mirror.errors import ErrorCode, RegistryError
from mirror.upstream.endpoint import UpstreamEndpoint
from mirror.upstream.pool import UpstreamPool
from mirror.upstream.routing import Target


@dataclass(frozen=True, slots=True)
class Credentials:
    """What an ``Authorization`` header carried: Basic user and password, or a bearer token."""

    username: str | None = None
    password: str | None = None
    bearer: str | None = None


def parse_authorization(header: str | None) -> Credentials | None:
    """The credentials of an ``Authorization`` header; ``None`` when absent, ``UNAUTHORIZED``
    when present but unreadable."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return Credentials(bearer=value)
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise RegistryError(ErrorCode.UNAUTHORIZED, "malformed Basic credentials") from None
        username, sep, password = decoded.partition(":")
        if sep and username:
            return Credentials(username=username, password=password)
    raise RegistryError(ErrorCode.UNAUTHORIZED, "unsupported Authorization header")


@dataclass(frozen=True)
class AuthService:
    """Everything the auth middleware, the token endpoint and the admin API use."""

    identity: IdentityStore
    resolver: Resolver
    authorizer: Authorizer
    login: Login
    tokens: TokenService
    links: LinkGuard
    upstreams: UpstreamPool
    # Token endpoint URL for challenges; "" derives it from the request.
    realm: str
    upstream_timeouts: tuple[float, float, int] = (10.0, 60.0, 3)

    def authenticate(self, header: str | None, source: str, *, tokens: bool = True) -> Principal:
        """The caller: ``ANONYMOUS`` without credentials, a user for good Basic credentials,
        the token's principal for a valid bearer token (when ``tokens``)."""
        credentials = parse_authorization(header)
        if credentials is None:
            return ANONYMOUS
        if credentials.bearer is not None:
            if not tokens:
                raise RegistryError(ErrorCode.UNAUTHORIZED, "use Basic credentials here")
            try:
                return self.tokens.verify(credentials.bearer)
            except TokenInvalid as exc:
                raise RegistryError(
                    ErrorCode.UNAUTHORIZED, f"invalid bearer token: {exc.reason}"
                ) from None
        assert credentials.username is not None and credentials.password is not None
        return self.login.check(credentials.username, credentials.password, source)

    async def target_of(self, ref: RepoRef) -> Target:
        """The upstream target of a repository, its rule's client started."""
        if ref.target is not None:
            return ref.target
        rule, target = self.resolver.rule_for(ref)
        await self.upstreams.ensure(self.endpoint_of(rule))
        return target

    def endpoint_of(self, rule: PullThroughRule) -> UpstreamEndpoint:
        """The upstream endpoint of a pull-through rule (keyed by the rule)."""
        connect, read, retries = self.upstream_timeouts
        return UpstreamEndpoint(
            host=rule.key,
            url=rule.url,
            username=rule.username,
            password=self.identity.rule_password(rule),
            connect_timeout=connect,
            read_timeout=read,
            retries=retries,
        )
