"""Answering an upstream's ``WWW-Authenticate`` challenges.

Bearer: the distribution token flow. Anonymous clients ``GET realm?service=..&scope=..``; with
credentials we first ``POST`` the OAuth2 password form (as containerd does) and fall back to the
``GET`` with Basic auth when the token server does not take POSTs. Tokens are cached per scope
until shortly before they expire, on the monotonic time of a clock passed in. Basic: credentials
are sent when (and from then on, whenever) the upstream challenges with Basic.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from mirror.clock import Clock, SystemClock
from mirror.errors import ErrorCode, RegistryError, UpstreamUnavailable
from mirror.lru import Lru
from mirror.upstream.challenge import Challenge, parse_challenges
from mirror.upstream.realm import realm_allowed
from mirror.upstream.status import connection_failure, error_for, read_capped

log = logging.getLogger(__name__)

__all__ = ["Authenticator", "Challenge", "Token", "parse_challenges", "parse_token_response"]

OnResponse = Callable[[str, int], None]

DEFAULT_EXPIRES_IN = 60.0
TOKEN_BODY_LIMIT = 1024 * 1024
# Token servers without the OAuth2 POST answer these; containerd falls back to GET on the same.
POST_FALLBACK_STATUSES = frozenset({400, 401, 404, 405})
# Tokens kept per upstream: scopes name repositories, which clients choose, so the least
# recently used token is dropped past this many (it is fetched again when needed).
MAX_TOKENS = 1024


@dataclass(frozen=True, slots=True)
class Token:
    """A bearer token and when (on the authenticator's clock) to stop using it."""

    value: str
    expires_at: float

    @property
    def header(self) -> str:
        """The ``Authorization`` header value."""
        return f"Bearer {self.value}"


def parse_token_response(body: bytes, *, received_at: float, margin: float) -> Token:
    """A :class:`Token` from a token endpoint's JSON (``token`` or ``access_token``).

    The lifetime counts from ``received_at`` on our clock, not from ``issued_at``: a server's
    wall clock may be skewed, and the cached token is retried once fresh after any 401.
    """
    try:
        document: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        document = None
    if not isinstance(document, dict):
        raise UpstreamUnavailable("token endpoint answered no JSON object")
    value = document.get("token") or document.get("access_token")
    if not isinstance(value, str) or not value:
        raise UpstreamUnavailable("token endpoint answered no token")
    expires_in = document.get("expires_in")
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or expires_in <= 0:
        expires_in = DEFAULT_EXPIRES_IN
    lifetime = float(expires_in) - min(margin, float(expires_in) / 2)
    return Token(value, received_at + lifetime)


def basic_authorization(username: str, password: str) -> str:
    """An RFC 7617 ``Authorization`` value (UTF-8, as registries' htpasswd expects)."""
    userpass = f"{username}:{password}".encode()
    return "Basic " + base64.b64encode(userpass).decode("ascii")


class Authenticator:
    """Answers challenges for one upstream: bearer tokens per scope, or Basic credentials.

    ``upstream`` is the upstream's base URL: a Bearer realm outside its trust boundary
    (:func:`~mirror.upstream.realm.realm_allowed`) is refused, and nothing is sent there.
    """

    def __init__(
        self,
        username: str | None = None,
        password: str | None = None,
        *,
        clock: Clock | None = None,
        margin: float = 10.0,
        client_id: str = "mirror",
        on_response: OnResponse | None = None,
        upstream: URL | None = None,
    ) -> None:
        self._upstream = upstream
        self._credentials = (username, password or "") if username is not None else None
        self._basic = basic_authorization(*self._credentials) if self._credentials else None
        self._clock = clock or SystemClock()
        self._margin = margin
        self._client_id = client_id
        self._on_response = on_response
        self._basic_challenged = False
        self._tokens: Lru[str, Token] = Lru(MAX_TOKENS)
        # The upstream's Bearer challenge (realm and service, no scope) once it sent one: a
        # token for a scope not seen yet is then fetched before the first request, not after
        # its 401 (a round trip per new repository, 40 ms over a WAN).
        self._bearer: Challenge | None = None
        # A lock per scope being fetched, with how many wait on it: dropped when none do.
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def authorization(self, scope: str) -> str | None:
        """The ``Authorization`` value to send up front for ``scope``, if one is known."""
        token = self._tokens.get(scope)
        if token is not None and self._clock.monotonic() < token.expires_at:
            return token.header
        if self._basic_challenged:
            return self._basic
        return None

    async def up_front(self, session: aiohttp.ClientSession, scope: str) -> str | None:
        """:meth:`authorization`, or, for a new scope of an upstream that has challenged with
        Bearer before, a token fetched now for it (``None`` if that fails: the request then
        goes without, and its 401 is answered as usual)."""
        known = self.authorization(scope)
        if known is not None or self._bearer is None:
            return known
        try:
            return (await self.token(session, self._bearer, scope)).header
        except RegistryError as exc:
            log.info("token for %s up front failed (%s); asking without", scope, exc)
            return None

    async def answer(
        self,
        session: aiohttp.ClientSession,
        challenges: list[Challenge],
        scope: str,
        *,
        rejected: str | None = None,
    ) -> str | None:
        """The ``Authorization`` value to retry with, or None when we cannot meet the challenge.

        ``rejected`` is the value the upstream just refused; it is never offered again.
        """
        for challenge in challenges:
            if challenge.scheme == "bearer" and challenge.realm:
                token = await self.token(session, challenge, scope, rejected=rejected)
                params = {k: v for k, v in challenge.params.items() if k in ("realm", "service")}
                self._bearer = Challenge("bearer", params)
                return token.header
        for challenge in challenges:
            if challenge.scheme == "basic" and self._basic and self._basic != rejected:
                self._basic_challenged = True
                return self._basic
        return None

    async def token(
        self,
        session: aiohttp.ClientSession,
        challenge: Challenge,
        scope: str,
        *,
        rejected: str | None = None,
    ) -> Token:
        """A valid token for ``scope``: cached, or fetched once even when asked concurrently."""
        lock, users = self._locks.get(scope, (asyncio.Lock(), 0))
        self._locks[scope] = (lock, users + 1)
        try:
            async with lock:
                cached = self._tokens.get(scope)
                if (
                    cached is not None
                    and self._clock.monotonic() < cached.expires_at
                    and cached.header != rejected
                ):
                    return cached
                token = await self._fetch(session, challenge, scope)
                self._tokens.put(scope, token)
                return token
        finally:
            lock, users = self._locks[scope]
            if users > 1:
                self._locks[scope] = (lock, users - 1)
            else:
                del self._locks[scope]

    async def _fetch(
        self, session: aiohttp.ClientSession, challenge: Challenge, scope: str
    ) -> Token:
        realm = self._realm(challenge.realm or "")
        form = {"service": challenge.service or "", "scope": challenge.scope or scope}
        query = {key: value for key, value in form.items() if value}
        started = self._clock.monotonic()
        if self._credentials is not None and self._basic is not None:
            username, password = self._credentials
            post_form = {
                "grant_type": "password",
                "username": username,
                "password": password,
                "client_id": self._client_id,
                **query,
            }
            status, body = await self._call(session, "POST", realm, data=post_form)
            if status in POST_FALLBACK_STATUSES:
                log.debug("token POST to %s answered %d, falling back to GET", realm, status)
                status, body = await self._call(
                    session, "GET", realm, params=query, headers={"Authorization": self._basic}
                )
        else:
            status, body = await self._call(session, "GET", realm, params=query)
        if status != 200:
            raise _token_error(status, body)
        return parse_token_response(body, received_at=started, margin=self._margin)

    def _realm(self, realm: str) -> str:
        """``realm`` when it lies within the upstream's trust boundary; else UNAVAILABLE."""
        try:
            url = URL(realm)
        except ValueError:
            url = None
        if (
            url is None
            or not url.absolute
            or (self._upstream is not None and not realm_allowed(self._upstream, url))
        ):
            log.warning("refused token realm %r of upstream %s", realm, self._upstream)
            raise UpstreamUnavailable(
                "upstream token realm is outside its trust boundary",
                detail={"upstream_step": "token"},
            )
        return realm

    async def _call(
        self, session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
    ) -> tuple[int, bytes]:
        try:
            # No redirects: a token endpoint must not lead us outside the trust boundary.
            async with session.request(method, url, allow_redirects=False, **kwargs) as resp:
                if self._on_response is not None:
                    self._on_response(method, resp.status)
                body = await read_capped(resp, TOKEN_BODY_LIMIT)
                return resp.status, body or b""
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            if self._on_response is not None:
                self._on_response(method, 0)
            log.info("token endpoint %s unreachable: %r", url, exc)
            raise UpstreamUnavailable(
                f"upstream token endpoint unreachable: {connection_failure(exc)}",
                detail={"upstream_step": "token"},
            ) from exc


def _token_error(status: int, body: bytes) -> RegistryError:
    """Token endpoints: 401 means bad credentials; anything odd means a broken upstream."""
    if status in (401, 403, 429) or status >= 500:
        return error_for(status, body, unknown=ErrorCode.UNAUTHORIZED)
    return UpstreamUnavailable(
        f"upstream token endpoint answered {status}",
        detail={"upstream_step": "token", "upstream_status": status},
    )
