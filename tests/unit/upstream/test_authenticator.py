"""Upstream auth: challenge parsing, the token flow (anonymous, POST form, GET fallback),
per-scope token caching on a manual clock, and Basic-auth upstreams."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from mirror.clock import ManualClock
from mirror.errors import ErrorCode, RegistryError, UpstreamUnavailable
from mirror.upstream import Challenge, UpstreamClient, UpstreamEndpoint, parse_challenges
from mirror.upstream.authenticator import parse_token_response

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]
JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param(
            'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
            'scope="repository:library/alpine:pull"',
            [
                Challenge(
                    "bearer",
                    {
                        "realm": "https://auth.docker.io/token",
                        "service": "registry.docker.io",
                        "scope": "repository:library/alpine:pull",
                    },
                )
            ],
            id="docker-hub-bearer",
        ),
        pytest.param(
            'Basic realm="Registry Realm"',
            [Challenge("basic", {"realm": "Registry Realm"})],
            id="basic-quoted-space",
        ),
        pytest.param(
            "basic realm=registry",
            [Challenge("basic", {"realm": "registry"})],
            id="lowercase-scheme-unquoted-value",
        ),
        pytest.param(
            'Bearer realm="https://a/token?x=1,2", scope="repository:a:pull,push"',
            [
                Challenge(
                    "bearer", {"realm": "https://a/token?x=1,2", "scope": "repository:a:pull,push"}
                )
            ],
            id="commas-inside-quotes",
        ),
        pytest.param(
            'Bearer realm="r",error="insufficient_scope", Basic realm="b"',
            [
                Challenge("bearer", {"realm": "r", "error": "insufficient_scope"}),
                Challenge("basic", {"realm": "b"}),
            ],
            id="two-challenges-one-header",
        ),
        pytest.param(
            'Basic realm="say \\"hi\\""',
            [Challenge("basic", {"realm": 'say "hi"'})],
            id="escaped-quote",
        ),
        pytest.param(
            'Bearer REALM = "r" , Service="s"',
            [Challenge("bearer", {"realm": "r", "service": "s"})],
            id="case-and-whitespace",
        ),
        pytest.param("Bearer", [Challenge("bearer", {})], id="scheme-only"),
        pytest.param("", [], id="empty"),
        pytest.param(
            '"garbage", Basic realm=x', [Challenge("basic", {"realm": "x"})], id="garbage-skipped"
        ),
    ],
)
def test_parse_challenges(header: str, expected: list[Challenge]) -> None:
    assert parse_challenges(header) == expected


def test_parse_challenges_across_several_headers() -> None:
    found = parse_challenges(['Bearer realm="r"', 'Basic realm="b"'])
    assert [c.scheme for c in found] == ["bearer", "basic"]
    assert found[0].realm == "r" and found[0].service is None


@pytest.mark.parametrize(
    ("body", "value", "expires_at"),
    [
        pytest.param(b'{"token": "t1", "expires_in": 300}', "t1", 1000 + 300 - 10, id="token"),
        pytest.param(
            b'{"access_token": "t2", "expires_in": 300}', "t2", 1000 + 290, id="access_token"
        ),
        pytest.param(b'{"token": "t3"}', "t3", 1000 + 60 - 10, id="default-60s"),
        pytest.param(
            b'{"token": "t4", "expires_in": 8, "issued_at": "2020-01-01T00:00:00Z"}',
            "t4",
            1000 + 4,
            id="short-lifetime-half-margin",
        ),
    ],
)
def test_parse_token_response(body: bytes, value: str, expires_at: float) -> None:
    token = parse_token_response(body, received_at=1000.0, margin=10.0)
    assert (token.value, token.expires_at) == (value, expires_at)


def test_parse_token_response_without_token_is_unavailable() -> None:
    with pytest.raises(UpstreamUnavailable):
        parse_token_response(b'{"expires_in": 60}', received_at=0, margin=10)


@dataclass
class TokenUpstream:
    """A registry protected by bearer tokens, with its own token endpoint."""

    accept_post: bool = True
    credentials: tuple[str, str] | None = None
    expires_in: int = 300
    token_requests: list[dict[str, Any]] = field(default_factory=list)
    registry_auth: list[str | None] = field(default_factory=list)
    issued: int = 0
    revoked: set[str] = field(default_factory=set)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v2/{repo:.+}/tags/list", self.tags)
        app.router.add_route("*", "/token", self.token)
        return app

    async def tags(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization")
        self.registry_auth.append(auth)
        repo = request.match_info["repo"]
        valid = auth is not None and auth.startswith("Bearer ") and auth[7:] not in self.revoked
        if not valid or f":{repo}:" not in (auth or ""):
            realm = f"{request.url.origin()}/token"
            challenge = f'Bearer realm="{realm}",service="fake",scope="repository:{repo}:pull"'
            return web.json_response(
                {"errors": [{"code": "UNAUTHORIZED"}]},
                status=401,
                headers={"WWW-Authenticate": challenge},
            )
        return web.json_response({"name": repo, "tags": ["v1"]})

    async def token(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.token_requests.append(
            {
                "method": request.method,
                "query": dict(request.query),
                "form": form,
                "auth": request.headers.get("Authorization"),
            }
        )
        if request.method == "POST" and not self.accept_post:
            return web.Response(status=405)
        if self.credentials is not None and not self._authorised(
            request.method, form, request.headers
        ):
            return web.json_response({"details": "bad credentials"}, status=401)
        scope = form.get("scope") if request.method == "POST" else request.query.get("scope")
        self.issued += 1
        key = "access_token" if request.method == "POST" else "token"
        return web.json_response(
            {
                key: f"{self.issued}:{scope}:",
                "expires_in": self.expires_in,
                "issued_at": "2024-01-01T00:00:00Z",
            }
        )

    def _authorised(self, method: str, form: dict[str, Any], headers: Any) -> bool:
        user, password = self.credentials or ("", "")
        if method == "POST":
            return bool(form.get("username") == user and form.get("password") == password)
        expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        return bool(headers.get("Authorization") == expected)


def endpoint_for(server: TestServer, **kwargs: Any) -> UpstreamEndpoint:
    return UpstreamEndpoint(host=f"127.0.0.1:{server.port}", url=str(server.make_url("")), **kwargs)


async def test_anonymous_token_flow(aiohttp_server: ServerFactory) -> None:
    upstream = TokenUpstream()
    server = await aiohttp_server(upstream.app())
    async with UpstreamClient(endpoint_for(server)) as client:
        tags, _ = await client.get_tags("library/alpine")
    assert tags["tags"] == ["v1"]
    [request] = upstream.token_requests
    assert request["method"] == "GET" and request["auth"] is None
    assert request["query"] == {"service": "fake", "scope": "repository:library/alpine:pull"}
    assert upstream.registry_auth == [None, "Bearer 1:repository:library/alpine:pull:"]


async def test_credentials_use_the_oauth2_post_form(aiohttp_server: ServerFactory) -> None:
    upstream = TokenUpstream(credentials=("alice", "s3cret"))
    server = await aiohttp_server(upstream.app())
    endpoint = endpoint_for(server, username="alice", password="s3cret")
    async with UpstreamClient(endpoint) as client:
        tags, _ = await client.get_tags("team/app")
    assert tags["name"] == "team/app"
    [request] = upstream.token_requests
    assert request["method"] == "POST"
    assert request["form"] == {
        "grant_type": "password",
        "username": "alice",
        "password": "s3cret",
        "client_id": "mirror",
        "service": "fake",
        "scope": "repository:team/app:pull",
    }


async def test_credentials_fall_back_to_get_with_basic(aiohttp_server: ServerFactory) -> None:
    upstream = TokenUpstream(accept_post=False, credentials=("alice", "s3cret"))
    server = await aiohttp_server(upstream.app())
    endpoint = endpoint_for(server, username="alice", password="s3cret")
    async with UpstreamClient(endpoint) as client:
        await client.get_tags("team/app")
    assert [r["method"] for r in upstream.token_requests] == ["POST", "GET"]
    fallback = upstream.token_requests[1]
    assert fallback["auth"] == "Basic " + base64.b64encode(b"alice:s3cret").decode()
    assert fallback["query"]["scope"] == "repository:team/app:pull"


async def test_bad_credentials_at_token_endpoint_are_unauthorized(
    aiohttp_server: ServerFactory,
) -> None:
    upstream = TokenUpstream(credentials=("alice", "s3cret"))
    server = await aiohttp_server(upstream.app())
    async with UpstreamClient(endpoint_for(server, username="alice", password="wrong")) as client:
        with pytest.raises(RegistryError) as caught:
            await client.get_tags("team/app")
    assert caught.value.code is ErrorCode.UNAUTHORIZED
    assert [r["method"] for r in upstream.token_requests] == ["POST", "GET"]


async def test_token_cached_per_scope_until_expiry(aiohttp_server: ServerFactory) -> None:
    upstream = TokenUpstream(expires_in=300)
    server = await aiohttp_server(upstream.app())
    clock = ManualClock()
    async with UpstreamClient(endpoint_for(server), clock=clock) as client:
        await client.get_tags("a/one")
        await client.get_tags("a/one")
        assert len(upstream.token_requests) == 1
        # The cached token goes out up front: no second 401 round trip.
        assert upstream.registry_auth[2] == "Bearer 1:repository:a/one:pull:"
        await client.get_tags("a/two")
        assert len(upstream.token_requests) == 2
        clock.advance(289)  # 300 s lifetime minus the 10 s margin: still fresh
        await client.get_tags("a/one")
        assert len(upstream.token_requests) == 2
        clock.advance(2)
        await client.get_tags("a/one")
    assert len(upstream.token_requests) == 3
    assert upstream.registry_auth[-1] == "Bearer 3:repository:a/one:pull:"


async def test_rejected_cached_token_is_refetched_once(aiohttp_server: ServerFactory) -> None:
    upstream = TokenUpstream()
    server = await aiohttp_server(upstream.app())
    async with UpstreamClient(endpoint_for(server)) as client:
        await client.get_tags("a/one")
        upstream.revoked.add("1:repository:a/one:pull:")  # e.g. the upstream rotated its keys
        tags, _ = await client.get_tags("a/one")
    assert tags["tags"] == ["v1"]
    assert len(upstream.token_requests) == 2
    assert upstream.registry_auth[2:] == [
        "Bearer 1:repository:a/one:pull:",
        "Bearer 2:repository:a/one:pull:",
    ]


@dataclass
class BasicUpstream:
    """A registry behind htpasswd-style Basic auth."""

    user: str = "bob"
    password: str = "hunter2"
    seen: list[str | None] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v2/{repo:.+}/tags/list", self.tags)
        return app

    async def tags(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization")
        self.seen.append(auth)
        expected = "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        if auth != expected:
            body = {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}
            return web.json_response(
                body, status=401, headers={"WWW-Authenticate": 'Basic realm="fake"'}
            )
        return web.json_response({"name": request.match_info["repo"], "tags": []})


async def test_basic_upstream_gets_credentials_once_challenged(
    aiohttp_server: ServerFactory,
) -> None:
    upstream = BasicUpstream()
    server = await aiohttp_server(upstream.app())
    endpoint = endpoint_for(server, username="bob", password="hunter2")
    async with UpstreamClient(endpoint) as client:
        first, _ = await client.get_tags("x/y")
        await client.get_tags("x/z")
    basic = "Basic " + base64.b64encode(b"bob:hunter2").decode()
    assert first["name"] == "x/y"
    # Nothing is sent before the challenge; afterwards Basic goes out up front, for any repo.
    assert upstream.seen == [None, basic, basic]


@pytest.mark.parametrize(
    "credentials",
    [
        pytest.param({}, id="anonymous"),
        pytest.param({"username": "bob", "password": "wrong"}, id="bad-password"),
    ],
)
async def test_basic_upstream_refusal_is_unauthorized(
    aiohttp_server: ServerFactory, credentials: dict[str, str]
) -> None:
    upstream = BasicUpstream()
    server = await aiohttp_server(upstream.app())
    async with UpstreamClient(endpoint_for(server, **credentials)) as client:
        with pytest.raises(RegistryError) as caught:
            await client.get_tags("x/y")
    assert caught.value.code is ErrorCode.UNAUTHORIZED
    assert caught.value.status == 401
    assert len(upstream.seen) == (2 if credentials else 1)


async def test_concurrent_requests_fetch_one_token(aiohttp_server: ServerFactory) -> None:
    upstream = TokenUpstream()
    server = await aiohttp_server(upstream.app())
    async with UpstreamClient(endpoint_for(server)) as client:
        pages = await asyncio.gather(*(client.get_tags("a/one") for _ in range(5)))
    assert all(tags["tags"] == ["v1"] for tags, _ in pages)
    assert len(upstream.token_requests) == 1


async def test_tokens_kept_are_bounded_by_scope_count(aiohttp_server: ServerFactory) -> None:
    """Scopes name repositories clients choose: past ``MAX_TOKENS`` the least recently used
    token is dropped (fetched again when needed), and no per-scope lock outlives its fetch."""
    import aiohttp
    from yarl import URL

    from mirror.upstream.authenticator import MAX_TOKENS, Authenticator

    upstream = TokenUpstream(expires_in=3600)
    server = await aiohttp_server(upstream.app())
    base = URL(str(server.make_url("")))
    challenge = Challenge("bearer", {"realm": str(base / "token"), "service": "fake"})
    authenticator = Authenticator(clock=ManualClock(), upstream=base)
    async with aiohttp.ClientSession() as session:
        first = await authenticator.token(session, challenge, "repository:a/0:pull")
        for i in range(1, MAX_TOKENS + 1):
            await authenticator.token(session, challenge, f"repository:a/{i}:pull")
        assert authenticator.authorization("repository:a/0:pull") is None
        again = await authenticator.token(session, challenge, "repository:a/0:pull")
    assert again.header != first.header
    assert len(upstream.token_requests) == MAX_TOKENS + 2
    assert not authenticator._locks


async def test_a_new_repository_gets_its_token_before_its_first_request(
    aiohttp_server: ServerFactory,
) -> None:
    """Once the upstream challenged with Bearer, a new scope's token is fetched up front: no
    unauthenticated attempt and no 401 round trip per new repository."""
    upstream = TokenUpstream()
    server = await aiohttp_server(upstream.app())
    async with UpstreamClient(endpoint_for(server)) as client:
        await client.get_tags("a/one")
        assert upstream.registry_auth == [None, "Bearer 1:repository:a/one:pull:"]
        await client.get_tags("a/two")
        await client.get_tags("a/two")
    assert upstream.registry_auth[2:] == ["Bearer 2:repository:a/two:pull:"] * 2
    # The token request names the new scope, not the one of the first challenge.
    assert upstream.token_requests[1]["query"]["scope"] == "repository:a/two:pull"
    assert len(upstream.token_requests) == 2
