"""One upstream's HTTP session: auth challenges, retries, redirects and error mapping.

Every request goes through :meth:`Transport.send`, which returns a 2xx response whose body the
caller reads and releases, or raises an error from ``mirror.errors``. Redirects are followed
here rather than by aiohttp so that the upstream's ``Authorization`` provably never reaches
another origin (blob storage, a CDN) and a challenge from that other origin is never answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from mirror import __version__
from mirror.errors import ErrorCode, RegistryError, UpstreamUnavailable
from mirror.upstream.addresses import GuardedResolver, RuleHosts, refusal
from mirror.upstream.authenticator import Authenticator, OnResponse, parse_challenges
from mirror.upstream.breaker import CircuitBreaker
from mirror.upstream.connector import CappedConnector, SocketGate
from mirror.upstream.endpoint import UpstreamEndpoint
from mirror.upstream.limits import Lane, Limiter
from mirror.upstream.offline import MirrorOffline
from mirror.upstream.status import (
    ERROR_BODY_LIMIT,
    connection_failure,
    error_for,
    error_from_response,
    parse_retry_after,
    read_capped,
)

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]

USER_AGENT = f"oci-mirror/{__version__}"
MAX_REDIRECTS = 5
# Bytes aiohttp buffers per upstream response before it pauses reading (it pauses at twice
# this): a few fill pieces, so a piece is usually there whole and the upstream keeps sending
# while the loop waits for the previous piece to be hashed and sealed.
READ_BUFSIZE = 4 * 1024 * 1024
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long to back off between attempts, and how long a 429 may make us wait in place."""

    base_delay: float = 0.1
    max_delay: float = 2.0
    max_retry_after: float = 2.0

    def delay(self, attempt: int) -> float:
        """The pause before retry number ``attempt`` (0-based): exponential, capped."""
        return min(self.max_delay, self.base_delay * 2.0**attempt)


@dataclass(slots=True)
class _Attempts:
    """Where one request stands across its attempts."""

    authorization: str | None
    retries: int = 0
    answered_challenge: bool = False
    waited_throttle: bool = False


def _retry_after(resp: aiohttp.ClientResponse) -> float | None:
    """The seconds a response's ``Retry-After`` asks for, if any."""
    return parse_retry_after(resp.headers.get("Retry-After"), resp.headers.get("Date"))


def _ssl_setting(endpoint: UpstreamEndpoint) -> ssl.SSLContext | bool:
    if not endpoint.verify_tls:
        return False
    if endpoint.ca_file:
        return ssl.create_default_context(cafile=endpoint.ca_file)
    return True


class Transport:
    """The session and request loop for one upstream. Start it before use, close it after.

    ``guard`` (for tenancies' rules) makes every connection refuse internal addresses of hosts
    the allow-list does not name, however the name resolves at that moment. ``offline``
    (``cache.offline``) is the choke point of offline mode: no session is ever opened and every
    request raises :class:`~mirror.upstream.offline.MirrorOffline` before anything is sent.
    ``limiter`` enforces the upstream's limits (:mod:`mirror.upstream.limits`): the connection
    cap is also the session's pool size, and its sockets pass ``sockets`` from connect until
    really closed (:mod:`mirror.upstream.connector`), so the upstream never sees more.
    """

    def __init__(
        self,
        endpoint: UpstreamEndpoint,
        authenticator: Authenticator,
        *,
        policy: RetryPolicy,
        sleep: Sleep = asyncio.sleep,
        on_response: OnResponse | None = None,
        max_connections: int = 64,
        breaker: CircuitBreaker | None = None,
        guard: RuleHosts | None = None,
        offline: bool = False,
        limiter: Limiter | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.offline = offline
        self.limiter = limiter
        self._guard = guard
        self._resolver: GuardedResolver | None = None
        self.breaker = breaker or CircuitBreaker(
            endpoint.host,
            threshold=endpoint.breaker_threshold,
            cooldown=endpoint.breaker_cooldown,
        )
        self._auth = authenticator
        self._policy = policy
        self._sleep = sleep
        self._on_response = on_response
        cap = limiter.limits.max_connections if limiter is not None else 0
        self._max_connections = cap or max_connections
        # The cap counts sockets to the upstream until they are closed, not requests.
        self.sockets = SocketGate(cap) if cap else None
        self._origin = endpoint.base_url.origin()
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the pooled session (idempotent; never when offline)."""
        if self._session is not None or self.offline:
            return
        self._resolver = self._guard.resolver() if self._guard is not None else None
        options: dict[str, Any] = {
            "limit": self._max_connections,
            "ssl": _ssl_setting(self.endpoint),
            "resolver": self._resolver,
        }
        connector = (
            CappedConnector(self._origin, self.sockets, **options)
            if self.sockets is not None
            else aiohttp.TCPConnector(**options)
        )
        # sock_connect, not connect: waiting for a free pooled connection is not a network fault.
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=self.endpoint.connect_timeout,
            sock_read=self.endpoint.read_timeout,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            # Bytes must reach the digest check exactly as stored upstream.
            auto_decompress=False,
            # A blob body is read in whole pieces (the fill's piece size) instead of aiohttp's
            # 64 KiB: far fewer pause/resume rounds and joins per MiB.
            read_bufsize=READ_BUFSIZE,
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
            middlewares=(self._guard.middleware,) if self._guard is not None else (),
        )

    async def close(self) -> None:
        """Close the session and its pooled connections."""
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
        if self._resolver is not None:
            resolver, self._resolver = self._resolver, None
            await resolver.close()

    @property
    def is_open(self) -> bool:
        """Whether the session is open (started and not closed since)."""
        return self._session is not None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The open session; ``MirrorOffline`` when offline, RuntimeError before :meth:`start`."""
        if self.offline:
            raise MirrorOffline(ErrorCode.NAME_UNKNOWN, self.endpoint.host)
        if self._session is None:
            raise RuntimeError(f"upstream client for {self.endpoint.host} is not started")
        return self._session

    def url(self, path: str) -> URL:
        """The absolute URL of ``path`` (starting with ``/v2/``) on this upstream."""
        return URL(str(self.endpoint.base_url) + path, encoded=True)

    async def send(
        self,
        method: str,
        url: URL,
        *,
        scope: str,
        unknown: ErrorCode,
        headers: Mapping[str, str] | None = None,
        lane: Lane = Lane.METADATA,
    ) -> aiohttp.ClientResponse:
        """A 2xx response to an idempotent request, after auth, redirects and retries.

        Hold :meth:`connection` of ``lane`` around the call and the body read; each attempt
        waits for its request token here.

        Raises ``UpstreamUnavailable`` (connect error, timeout, 5xx after ``retries``),
        ``UpstreamThrottled`` (429), ``RegistryError`` (404 → ``unknown``, 401, 403, ...), or,
        offline, ``MirrorOffline`` (404 in ``unknown``) with nothing sent.
        """
        if self.offline:
            raise MirrorOffline(unknown, self.endpoint.host)
        attempts = _Attempts(await self._auth.up_front(self.session, scope))
        while True:
            resp = await self._attempt(method, url, headers or {}, attempts, lane)
            if resp is None:
                continue
            if resp.status < 300:
                return resp
            if (
                await self._reauthorize(resp, scope, attempts)
                or await self._retry_server_error(resp, method, url, attempts)
                or await self._wait_out_throttle(resp, attempts)
            ):
                continue
            raise await self._failure(resp, unknown)

    async def probe(self, within: float) -> str | None:
        """Why ``GET /v2/`` got no HTTP answer within ``within`` seconds (one line), or None
        when it got any (401 included); offline, ``MirrorOffline`` with nothing sent."""
        session = self.session
        try:
            async with (
                self.connection(Lane.METADATA),
                session.get(
                    self.url("/v2/"),
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=within),
                ),
            ):
                return None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return connection_failure(exc)

    def connection(self, lane: Lane) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold one of the upstream's connection slots for ``lane`` (free without a cap)."""
        if self.limiter is None:
            return contextlib.nullcontext()
        return self.limiter.connection(lane)

    async def transferred(self, size: int) -> None:
        """Account ``size`` blob bytes received (pauses while over the bandwidth limit)."""
        if self.limiter is not None:
            await self.limiter.transferred(size)

    async def _attempt(
        self,
        method: str,
        url: URL,
        headers: Mapping[str, str],
        attempts: _Attempts,
        lane: Lane,
    ) -> aiohttp.ClientResponse | None:
        """One try past the breaker: the response (the breaker told of it), or None after
        backing off from a connection failure worth retrying."""
        self.breaker.check()
        if self.limiter is not None:
            await self.limiter.request(lane)
        request_headers = dict(headers)
        if attempts.authorization is not None:
            request_headers["Authorization"] = attempts.authorization
        try:
            resp = await self._exchange(method, url, request_headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._observe(method, 0)
            if refusal(exc) is not None:
                log.warning("upstream %s: refused to connect to %s", self.endpoint.host, url.host)
                raise UpstreamUnavailable(
                    "upstream address not allowed",
                    detail={"upstream": self.endpoint.host, "upstream_step": "connect"},
                ) from exc
            self.breaker.failed()
            if not self._may_retry(attempts):
                log.info("upstream %s unreachable: %r", self.endpoint.host, exc)
                raise UpstreamUnavailable(
                    f"upstream {self.endpoint.host} unreachable: {connection_failure(exc)}",
                    detail={"upstream": self.endpoint.host, "upstream_step": "connect"},
                ) from exc
            await self._backoff(attempts, method, url, connection_failure(exc))
            return None
        if resp.status >= 500:
            self.breaker.failed()
        else:
            self.breaker.answered()
        return resp

    def _may_retry(self, attempts: _Attempts) -> bool:
        """Whether retries are left and the breaker still lets requests through."""
        return attempts.retries < self.endpoint.retries and not self.breaker.is_open

    def _from_upstream(self, resp: aiohttp.ClientResponse) -> bool:
        """Whether ``resp`` came from the upstream itself (not a redirect target)."""
        return resp.url.origin() == self._origin

    async def _reauthorize(
        self, resp: aiohttp.ClientResponse, scope: str, attempts: _Attempts
    ) -> bool:
        """Answer the upstream's first 401 challenge; True (``resp`` released) to try again.

        The 401 is read and released before the token is fetched, so a fetch never needs a
        second connection while the first is held (under a connection cap it would wait).
        """
        if resp.status != 401 or not self._from_upstream(resp) or attempts.answered_challenge:
            return False
        attempts.answered_challenge = True
        challenges = parse_challenges(resp.headers.getall("WWW-Authenticate", []))
        body = b""
        try:
            if resp.method != "HEAD":
                body = await read_capped(resp, ERROR_BODY_LIMIT) or b""
        except (aiohttp.ClientError, TimeoutError):
            body = b""
        finally:
            resp.release()
        answer = await self._auth.answer(
            self.session, challenges, scope, rejected=attempts.authorization
        )
        if answer is None:
            raise error_for(401, body, unknown=ErrorCode.UNAUTHORIZED)
        attempts.authorization = answer
        return True

    async def _retry_server_error(
        self, resp: aiohttp.ClientResponse, method: str, url: URL, attempts: _Attempts
    ) -> bool:
        """Back off after a 5xx while retries are left; True (``resp`` released) to try again."""
        if resp.status < 500 or not self._may_retry(attempts):
            return False
        resp.release()
        await self._backoff(attempts, method, url, f"status {resp.status}")
        return True

    async def _wait_out_throttle(self, resp: aiohttp.ClientResponse, attempts: _Attempts) -> bool:
        """Wait once in place for a 429 whose ``Retry-After`` is short; True to try again."""
        if resp.status != 429 or attempts.waited_throttle:
            return False
        retry_after = _retry_after(resp)
        if retry_after is None or retry_after > self._policy.max_retry_after:
            return False
        resp.release()
        attempts.waited_throttle = True
        await self._sleep(retry_after)
        return True

    async def _failure(self, resp: aiohttp.ClientResponse, unknown: ErrorCode) -> RegistryError:
        """The error for a final non-2xx answer; ``resp`` is released."""
        try:
            if resp.status in (401, 403) and not self._from_upstream(resp):
                return UpstreamUnavailable(
                    f"upstream redirect target answered {resp.status}",
                    detail={"upstream_status": resp.status},
                )
            return await error_from_response(resp, unknown=unknown, retry_after=_retry_after(resp))
        finally:
            resp.release()

    async def _exchange(
        self, method: str, url: URL, headers: dict[str, str]
    ) -> aiohttp.ClientResponse:
        """One request, following redirects by hand; Authorization stays on its origin."""
        origin = url.origin()
        for _ in range(MAX_REDIRECTS + 1):
            resp = await self.session.request(method, url, headers=headers, allow_redirects=False)
            self._observe(method, resp.status)
            location = resp.headers.get("Location")
            if resp.status not in _REDIRECT_STATUSES or location is None:
                return resp
            resp.release()
            try:
                url = resp.url.join(URL(location, encoded=True))
            except ValueError as exc:
                raise UpstreamUnavailable("upstream sent a bad redirect location") from exc
            if url.scheme not in ("http", "https") or not url.host:
                raise UpstreamUnavailable("upstream sent a bad redirect location")
            if url.origin() != origin:
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        raise UpstreamUnavailable(f"more than {MAX_REDIRECTS} redirects from {self.endpoint.host}")

    async def _backoff(self, attempts: _Attempts, method: str, url: URL, why: str) -> None:
        """Sleep before the next retry (and count it)."""
        delay = self._policy.delay(attempts.retries)
        log.info(
            "upstream %s %s failed (%s); retry %d in %.2fs",
            method,
            url.path,
            why,
            attempts.retries + 1,
            delay,
        )
        attempts.retries += 1
        await self._sleep(delay)

    def _observe(self, method: str, status: int) -> None:
        if self._on_response is not None:
            self._on_response(method, status)
