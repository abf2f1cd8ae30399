"""One upstream's HTTP session: auth challenges, retries, redirects and error mapping.

Every request goes through :meth:`Transport.send`, which returns a 2xx response whose body the
caller reads and releases, or raises an error from ``mirror.errors``. Redirects are followed
here rather than by aiohttp so that the upstream's ``Authorization`` provably never reaches
another origin (blob storage, a CDN) and a challenge from that other origin is never answered.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import aiohttp
from yarl import URL

from mirror import __version__
from mirror.errors import ErrorCode, UpstreamUnavailable
from mirror.upstream.authenticator import Authenticator, OnResponse, parse_challenges
from mirror.upstream.breaker import CircuitBreaker
from mirror.upstream.endpoint import UpstreamEndpoint
from mirror.upstream.status import error_from_response, parse_retry_after

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]

USER_AGENT = f"oci-mirror/{__version__}"
MAX_REDIRECTS = 5
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long to back off between attempts, and how long a 429 may make us wait in place."""

    base_delay: float = 0.1
    max_delay: float = 2.0
    max_retry_after: float = 2.0

    def delay(self, attempt: int) -> float:
        """The pause before retry number ``attempt`` (0-based): exponential, capped."""
        return min(self.max_delay, self.base_delay * (2**attempt))


def _ssl_setting(endpoint: UpstreamEndpoint) -> ssl.SSLContext | bool:
    if not endpoint.verify_tls:
        return False
    if endpoint.ca_file:
        return ssl.create_default_context(cafile=endpoint.ca_file)
    return True


class Transport:
    """The session and request loop for one upstream. Start it before use, close it after."""

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
    ) -> None:
        self.endpoint = endpoint
        self.breaker = breaker or CircuitBreaker(
            endpoint.host,
            threshold=endpoint.breaker_threshold,
            cooldown=endpoint.breaker_cooldown,
        )
        self._auth = authenticator
        self._policy = policy
        self._sleep = sleep
        self._on_response = on_response
        self._max_connections = max_connections
        self._origin = endpoint.base_url.origin()
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the pooled session (idempotent)."""
        if self._session is not None:
            return
        connector = aiohttp.TCPConnector(
            limit=self._max_connections, ssl=_ssl_setting(self.endpoint)
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
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
        )

    async def close(self) -> None:
        """Close the session and its pooled connections."""
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    @property
    def is_open(self) -> bool:
        """Whether the session is open (started and not closed since)."""
        return self._session is not None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The open session; RuntimeError before :meth:`start`."""
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
    ) -> aiohttp.ClientResponse:
        """A 2xx response to an idempotent request, after auth, redirects and retries.

        Raises ``UpstreamUnavailable`` (connect error, timeout, 5xx after ``retries``),
        ``UpstreamThrottled`` (429), or ``RegistryError`` (404 → ``unknown``, 401, 403, ...).
        """
        attempt = 0
        authorization = self._auth.authorization(scope)
        answered_challenge = False
        waited_throttle = False
        while True:
            self.breaker.check()
            request_headers = dict(headers or {})
            if authorization is not None:
                request_headers["Authorization"] = authorization
            try:
                resp = await self._exchange(method, url, request_headers)
            except (aiohttp.ClientError, TimeoutError) as exc:
                self._observe(method, 0)
                self.breaker.failed()
                if attempt < self.endpoint.retries and not self.breaker.is_open:
                    await self._backoff(attempt, method, url, repr(exc))
                    attempt += 1
                    continue
                raise UpstreamUnavailable(
                    f"upstream {self.endpoint.host} unreachable: {exc!r}",
                    detail={"upstream": self.endpoint.host},
                ) from exc
            status = resp.status
            if status >= 500:
                self.breaker.failed()
            else:
                self.breaker.answered()
            if status < 300:
                return resp
            from_upstream = resp.url.origin() == self._origin
            if status == 401 and from_upstream and not answered_challenge:
                answered_challenge = True
                answer = await self._answer(resp, scope, authorization)
                if answer is not None:
                    resp.release()
                    authorization = answer
                    continue
            if status >= 500 and attempt < self.endpoint.retries and not self.breaker.is_open:
                resp.release()
                await self._backoff(attempt, method, url, f"status {status}")
                attempt += 1
                continue
            retry_after = parse_retry_after(
                resp.headers.get("Retry-After"), resp.headers.get("Date")
            )
            if status == 429 and not waited_throttle and retry_after is not None:
                if retry_after <= self._policy.max_retry_after:
                    resp.release()
                    waited_throttle = True
                    await self._sleep(retry_after)
                    continue
            if status in (401, 403) and not from_upstream:
                resp.release()
                raise UpstreamUnavailable(
                    f"redirect target {resp.url.host} answered {status}",
                    detail={"upstream_status": status},
                )
            try:
                raise await error_from_response(resp, unknown=unknown, retry_after=retry_after)
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
                raise UpstreamUnavailable(f"bad redirect location {location!r}") from exc
            if url.scheme not in ("http", "https") or not url.host:
                raise UpstreamUnavailable(f"bad redirect location {location!r}")
            if url.origin() != origin:
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        raise UpstreamUnavailable(f"more than {MAX_REDIRECTS} redirects from {self.endpoint.host}")

    async def _backoff(self, attempt: int, method: str, url: URL, why: str) -> None:
        delay = self._policy.delay(attempt)
        log.info(
            "upstream %s %s failed (%s); retry %d in %.2fs",
            method,
            url.path,
            why,
            attempt + 1,
            delay,
        )
        await self._sleep(delay)

    async def _answer(
        self, resp: aiohttp.ClientResponse, scope: str, rejected: str | None
    ) -> str | None:
        """The Authorization to retry a 401 with, or None; releases ``resp`` if this raises."""
        challenges = parse_challenges(resp.headers.getall("WWW-Authenticate", []))
        try:
            return await self._auth.answer(self.session, challenges, scope, rejected=rejected)
        except BaseException:
            resp.release()
            raise

    def _observe(self, method: str, status: int) -> None:
        if self._on_response is not None:
            self._on_response(method, status)
