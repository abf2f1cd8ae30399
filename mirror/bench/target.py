"""A registry or mirror under test: its base URL, the ``?ns=`` a node-local mirror routes by,
TLS options and credentials, and HTTP sessions to it that answer ``401`` challenges (the
distribution token flow or Basic, through :class:`mirror.upstream.authenticator.Authenticator`)."""

from __future__ import annotations

import re
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from yarl import URL

from mirror.bench.credentials import Credentials
from mirror.errors import RegistryError
from mirror.upstream.authenticator import Authenticator, parse_challenges

_REPO_PATH = re.compile(r"^/v2/(?P<repo>.+)/(?:manifests|blobs|tags)/")
USER_AGENT = "mirror-bench"


@dataclass(frozen=True)
class Tls:
    """``insecure`` skips certificate checks; ``ca`` adds a CA bundle to trust."""

    insecure: bool = False
    ca: Path | None = None

    def context(self) -> ssl.SSLContext | bool:
        """What aiohttp's connector takes as ``ssl``."""
        if self.insecure:
            return False
        if self.ca is not None:
            return ssl.create_default_context(cafile=str(self.ca))
        return True


def scope_of(method: str, url: URL) -> str:
    """The token scope a request needs: ``repository:REPO:pull`` (or ``pull,push``)."""
    match = _REPO_PATH.match(url.path)
    if match is None:
        return "registry:catalog:*"
    actions = "pull" if method in ("GET", "HEAD") else "pull,push"
    return f"repository:{match['repo']}:{actions}"


@dataclass
class Target:
    """One registry endpoint of a benchmark, labelled as the report names it."""

    label: str
    url: str
    ns: str | None = None
    credentials: Credentials | None = None
    tls: Tls = field(default_factory=Tls)
    timeout: float = 30.0
    _authenticator: Authenticator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")
        user, password = self.credentials or (None, None)
        self._authenticator = Authenticator(user, password, upstream=URL(self.url))

    def owns(self, url: URL) -> bool:
        """Whether ``url`` is on the target's own origin (scheme, host, port): only those
        requests get credentials, never a host an upload ``Location`` or redirect names."""
        own = URL(self.url)
        return (url.scheme, url.host, url.port) == (own.scheme, own.host, own.port)

    def address(self, path_or_location: str) -> str:
        """An absolute URL for a ``/v2/...`` path or an upload ``Location``, with ``ns``."""
        url = URL(path_or_location)
        if not url.absolute:
            url = URL(self.url + path_or_location)
        if self.ns and "ns" not in url.query:
            url = url.update_query(ns=self.ns)
        return str(url)

    @asynccontextmanager
    async def session(self, connections: int) -> AsyncIterator[aiohttp.ClientSession]:
        """A session of at most ``connections`` keep-alive connections that authenticates."""
        ssl_option = self.tls.context()
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        headers = {"User-Agent": USER_AGENT}
        async with (
            aiohttp.ClientSession(
                timeout=timeout,
                headers=headers,
                connector=aiohttp.TCPConnector(ssl=ssl_option, limit=1),
            ) as tokens,
            aiohttp.ClientSession(
                timeout=timeout,
                headers=headers,
                connector=aiohttp.TCPConnector(ssl=ssl_option, limit=connections),
                middlewares=(self._middleware(tokens),),
            ) as http,
        ):
            yield http

    def _middleware(self, tokens: aiohttp.ClientSession) -> aiohttp.ClientMiddlewareType:
        authenticator = self._authenticator

        async def authenticate(
            request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
        ) -> aiohttp.ClientResponse:
            if not self.owns(request.url):
                return await handler(request)
            scope = scope_of(request.method, request.url)
            known = authenticator.authorization(scope)
            if known is not None:
                request.headers["Authorization"] = known
            response = await handler(request)
            if response.status != 401:
                return response
            challenges = parse_challenges(response.headers.getall("WWW-Authenticate", []))
            try:
                answer = await authenticator.answer(tokens, challenges, scope, rejected=known)
            except RegistryError:
                return response
            if answer is None or answer == known:
                return response
            response.release()
            request.headers["Authorization"] = answer
            return await handler(request)

        return authenticate
