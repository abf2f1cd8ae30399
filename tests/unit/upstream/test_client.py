"""The upstream client against small in-process fake upstreams: manifests, blobs, ranges,
redirects, retries and the mapping of upstream failures onto the one error model."""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from mirror import __version__
from mirror.errors import ErrorCode, RegistryError, UpstreamThrottled, UpstreamUnavailable
from mirror.oci.digest import Digest
from mirror.upstream import MANIFEST_LIMIT, RetryPolicy, UpstreamClient, UpstreamEndpoint
from mirror.upstream.status import error_for, parse_retry_after

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MANIFEST = b'{"schemaVersion":2,"mediaType":"' + OCI_MANIFEST.encode() + b'"}'
MANIFEST_DIGEST = Digest.of(MANIFEST)
BLOB = bytes(range(256)) * 40  # 10 KiB
BLOB_DIGEST = Digest.of(BLOB)


class Sleeps:
    """An injectable ``sleep`` that records the delays instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


class Recorder:
    """Routes that count hits and keep each request's headers."""

    def __init__(self) -> None:
        self.hits: list[tuple[str, str]] = []
        self.headers: list[dict[str, str]] = []

    def wrap(self, handler: Handler) -> Handler:
        async def recorded(request: web.Request) -> web.StreamResponse:
            self.hits.append((request.method, request.raw_path))
            self.headers.append(dict(request.headers))
            return await handler(request)

        return recorded


async def start(
    aiohttp_server: ServerFactory, routes: dict[str, Handler], recorder: Recorder | None = None
) -> TestServer:
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_route("*", path, recorder.wrap(handler) if recorder else handler)
    return await aiohttp_server(app)


def client_for(server: TestServer, sleeps: Sleeps | None = None, **kwargs: Any) -> UpstreamClient:
    on_response = kwargs.pop("on_response", None)
    endpoint = UpstreamEndpoint(
        host=f"127.0.0.1:{server.port}", url=str(server.make_url("")), **kwargs
    )
    return UpstreamClient(endpoint, sleep=sleeps or Sleeps(), on_response=on_response)


async def serve_manifest(request: web.Request) -> web.Response:
    headers = {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": str(MANIFEST_DIGEST)}
    return web.Response(body=MANIFEST, headers=headers)


async def test_head_and_get_manifest(aiohttp_server: ServerFactory) -> None:
    recorder = Recorder()
    server = await start(
        aiohttp_server, {"/v2/library/alpine/manifests/3.19": serve_manifest}, recorder
    )
    async with client_for(server) as client:
        head = await client.head_manifest("library/alpine", "3.19", [OCI_MANIFEST, "*/*"])
        manifest = await client.get_manifest("library/alpine", "3.19", [OCI_MANIFEST])
    assert head.digest == MANIFEST_DIGEST
    assert (head.media_type, head.size) == (OCI_MANIFEST, len(MANIFEST))
    assert (manifest.body, manifest.media_type, manifest.digest) == (
        MANIFEST,
        OCI_MANIFEST,
        MANIFEST_DIGEST,
    )
    assert [m for m, _ in recorder.hits] == ["HEAD", "GET"]
    first = recorder.headers[0]
    assert first["Accept"] == f"{OCI_MANIFEST}, */*"
    assert first["User-Agent"] == f"oci-mirror/{__version__}"
    assert first["Accept-Encoding"] == "identity"


async def test_manifest_without_digest_header_gives_none(aiohttp_server: ServerFactory) -> None:
    async def no_digest(request: web.Request) -> web.Response:
        return web.Response(body=MANIFEST, headers={"Content-Type": OCI_MANIFEST})

    server = await start(aiohttp_server, {"/v2/a/manifests/latest": no_digest})
    async with client_for(server) as client:
        head = await client.head_manifest("a", "latest", [OCI_MANIFEST])
        manifest = await client.get_manifest("a", "latest", [OCI_MANIFEST])
    assert head.digest is None and manifest.digest is None
    assert manifest.body == MANIFEST


@pytest.mark.parametrize(
    "chunked", [pytest.param(False, id="content-length"), pytest.param(True, id="chunked")]
)
async def test_manifest_over_4_mib_is_rejected(
    aiohttp_server: ServerFactory, chunked: bool
) -> None:
    async def huge(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": OCI_MANIFEST})
        if chunked:
            resp.enable_chunked_encoding()
        else:
            resp.content_length = MANIFEST_LIMIT + 1
        await resp.prepare(request)
        for _ in range(4):
            await resp.write(b" " * (MANIFEST_LIMIT // 4))
        await resp.write(b" ")
        return resp

    server = await start(aiohttp_server, {"/v2/a/manifests/big": huge})
    async with client_for(server) as client:
        with pytest.raises(RegistryError) as caught:
            await client.get_manifest("a", "big", [OCI_MANIFEST])
    assert caught.value.code is ErrorCode.MANIFEST_INVALID


@pytest.mark.parametrize(
    ("call", "body", "code"),
    [
        pytest.param("manifest", b"", ErrorCode.MANIFEST_UNKNOWN, id="manifest-no-body"),
        pytest.param("blob", b"", ErrorCode.BLOB_UNKNOWN, id="blob-head"),
        pytest.param("tags", b"not json", ErrorCode.NAME_UNKNOWN, id="tags"),
        pytest.param(
            "manifest",
            b'{"errors":[{"code":"NAME_UNKNOWN","message":"no such repo"}]}',
            ErrorCode.NAME_UNKNOWN,
            id="upstream-code-reused",
        ),
        pytest.param(
            "manifest",
            b'{"errors":[{"code":"DENIED"}]}',
            ErrorCode.MANIFEST_UNKNOWN,
            id="upstream-code-with-other-status-ignored",
        ),
    ],
)
async def test_404_maps_to_unknown_codes_without_retry(
    aiohttp_server: ServerFactory, call: str, body: bytes, code: ErrorCode
) -> None:
    async def missing(request: web.Request) -> web.Response:
        return web.Response(status=404, body=body, content_type="application/json")

    recorder = Recorder()
    server = await start(aiohttp_server, {"/v2/{tail:.*}": missing}, recorder)
    sleeps = Sleeps()
    async with client_for(server, sleeps) as client:
        with pytest.raises(RegistryError) as caught:
            if call == "manifest":
                await client.get_manifest("a/b", "v1", [OCI_MANIFEST])
            elif call == "blob":
                await client.head_blob("a/b", BLOB_DIGEST)
            else:
                await client.get_tags("a/b")
    assert caught.value.code is code
    assert caught.value.status == 404
    assert len(recorder.hits) == 1 and sleeps.delays == []


async def test_retry_on_503_then_success(aiohttp_server: ServerFactory) -> None:
    answers = [503, 502, 200]

    async def flaky(request: web.Request) -> web.Response:
        status = answers.pop(0)
        return web.Response(status=status, body=BLOB if status == 200 else b"down")

    seen: list[tuple[str, int]] = []
    server = await start(aiohttp_server, {"/v2/a/blobs/{digest}": flaky})
    sleeps = Sleeps()
    client = client_for(server, sleeps, on_response=lambda m, s: seen.append((m, s)))
    async with client:
        size = await client.head_blob("a", BLOB_DIGEST)
    assert size == len(BLOB)
    assert sleeps.delays == [0.1, 0.2]  # exponential backoff
    assert seen == [("HEAD", 503), ("HEAD", 502), ("HEAD", 200)]


async def test_5xx_after_all_retries_is_unavailable(aiohttp_server: ServerFactory) -> None:
    async def down(request: web.Request) -> web.Response:
        return web.Response(status=500)

    recorder = Recorder()
    server = await start(aiohttp_server, {"/v2/a/tags/list": down}, recorder)
    sleeps = Sleeps()
    async with client_for(server, sleeps, retries=2) as client:
        with pytest.raises(UpstreamUnavailable) as caught:
            await client.get_tags("a")
    assert len(recorder.hits) == 3
    assert sleeps.delays == [0.1, 0.2]
    assert caught.value.code is ErrorCode.UNAVAILABLE and caught.value.status == 503


@pytest.mark.parametrize(
    ("retry_after", "then", "outcome"),
    [
        pytest.param("1", 200, 1.0, id="short-wait-then-retry"),
        pytest.param("120", 200, 120.0, id="long-wait-raises"),
        pytest.param("1", 429, 1.0, id="second-429-raises"),
        pytest.param(None, 200, None, id="no-retry-after-raises"),
    ],
)
async def test_429_and_retry_after(
    aiohttp_server: ServerFactory, retry_after: str | None, then: int, outcome: float | None
) -> None:
    answers = [429, then]

    async def limited(request: web.Request) -> web.Response:
        status = answers.pop(0)
        headers = {"Retry-After": retry_after} if status == 429 and retry_after else {}
        body = b'{"name":"a","tags":["v1"]}' if status == 200 else b""
        return web.Response(status=status, body=body, headers=headers)

    server = await start(aiohttp_server, {"/v2/a/tags/list": limited})
    sleeps = Sleeps()
    async with client_for(server, sleeps) as client:
        if then == 200 and retry_after == "1":
            tags, _ = await client.get_tags("a")
            assert tags["tags"] == ["v1"]
            assert sleeps.delays == [1.0]
            return
        with pytest.raises(UpstreamThrottled) as caught:
            await client.get_tags("a")
    assert caught.value.retry_after == outcome
    assert caught.value.status == 429 and caught.value.code is ErrorCode.TOOMANYREQUESTS
    if outcome is not None:
        assert caught.value.headers["Retry-After"] == str(int(outcome))
    assert sleeps.delays == ([1.0] if then == 429 else [])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_connect_refused_is_unavailable_after_retries() -> None:
    port = free_port()
    endpoint = UpstreamEndpoint(host=f"127.0.0.1:{port}", url=f"http://127.0.0.1:{port}", retries=2)
    sleeps = Sleeps()
    statuses: list[int] = []
    client = UpstreamClient(endpoint, sleep=sleeps, on_response=lambda m, s: statuses.append(s))
    async with client:
        with pytest.raises(UpstreamUnavailable) as caught:
            await client.head_manifest("a", "latest", [OCI_MANIFEST])
    assert caught.value.status == 503
    assert sleeps.delays == [0.1, 0.2]
    assert statuses == [0, 0, 0]


async def test_read_timeout_is_unavailable(aiohttp_server: ServerFactory) -> None:
    async def stall(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.Response()

    server = await start(aiohttp_server, {"/v2/a/tags/list": stall})
    async with client_for(server, read_timeout=0.1, retries=0) as client:
        with pytest.raises(UpstreamUnavailable):
            await client.get_tags("a")


def blob_handler(honour_range: bool) -> Handler:
    async def blob(request: web.Request) -> web.Response:
        if request.method == "HEAD":
            return web.Response(headers={"Content-Length": str(len(BLOB))})
        start_at = 0
        if honour_range and request.http_range.start is not None:
            start_at = request.http_range.start
            return web.Response(
                status=206,
                body=BLOB[start_at:],
                headers={"Content-Range": f"bytes {start_at}-{len(BLOB) - 1}/{len(BLOB)}"},
            )
        return web.Response(body=BLOB)

    return blob


async def read_all(client: UpstreamClient, offset: int) -> tuple[int | None, bytes]:
    async with client.open_blob("a", BLOB_DIGEST, offset) as blob:
        assert blob.offset == offset
        return blob.size, b"".join([c async for c in blob.iter_chunks(1000)])


@pytest.mark.parametrize(
    "honour_range", [pytest.param(True, id="206"), pytest.param(False, id="ignores-range-200")]
)
@pytest.mark.parametrize("offset", [0, 1, 4096, 10239])
async def test_open_blob_from_offset(
    aiohttp_server: ServerFactory, honour_range: bool, offset: int
) -> None:
    recorder = Recorder()
    server = await start(aiohttp_server, {"/v2/a/blobs/{d}": blob_handler(honour_range)}, recorder)
    async with client_for(server) as client:
        size, data = await read_all(client, offset)
    assert size == len(BLOB)
    assert data == BLOB[offset:]
    assert recorder.headers[0].get("Range") == (f"bytes={offset}-" if offset else None)


def redirect_pair_routes(storage: TestServer, status: int = 307) -> dict[str, Handler]:
    """A Basic-auth registry whose blobs redirect to ``storage``; manifests stay on-origin."""
    basic = "Basic " + base64.b64encode(b"u:p").decode()

    async def registry(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != basic:
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="r"'})
        if "/blobs/" in request.path:
            # Written by hand: yarl would normalise %2F in the query to "/".
            target = f"http://127.0.0.1:{storage.port}/storage/blob?sig=a%2Fb%3D"
        else:
            target = "/v2/a/manifests/by-digest"
        return web.Response(status=status, headers={"Location": target})

    async def by_digest(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != basic:
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="r"'})
        return await serve_manifest(request)

    return {"/v2/a/manifests/by-digest": by_digest, "/v2/a/{tail:.*}": registry}


@pytest.mark.parametrize("status", [302, 307])
async def test_redirect_to_other_host_drops_authorization(
    aiohttp_server: ServerFactory, status: int
) -> None:
    storage_log = Recorder()
    storage = await start(aiohttp_server, {"/storage/blob": blob_handler(True)}, storage_log)
    registry_log = Recorder()
    registry = await start(aiohttp_server, redirect_pair_routes(storage, status), registry_log)
    async with client_for(registry, username="u", password="p") as client:
        size, data = await read_all(client, 100)
        manifest = await client.get_manifest("a", "latest", [OCI_MANIFEST])
    assert (size, data) == (len(BLOB), BLOB[100:])
    assert manifest.digest == MANIFEST_DIGEST
    # The blob storage got the Range and the exact signed query, but never the credentials.
    assert storage_log.hits == [("GET", "/storage/blob?sig=a%2Fb%3D")]
    assert "Authorization" not in storage_log.headers[0]
    assert storage_log.headers[0]["Range"] == "bytes=100-"
    # The same-origin redirect of the manifest kept them.
    assert registry_log.headers[-1]["Authorization"].startswith("Basic ")
    assert registry_log.hits[-1] == ("GET", "/v2/a/manifests/by-digest")


async def test_refusal_by_redirect_target_is_unavailable(aiohttp_server: ServerFactory) -> None:
    async def expired(request: web.Request) -> web.Response:
        return web.Response(status=403, body=b"<Error>Request has expired</Error>")

    storage = await start(aiohttp_server, {"/storage/blob": expired})
    registry = await start(aiohttp_server, redirect_pair_routes(storage))
    async with client_for(registry, username="u", password="p") as client:
        with pytest.raises(UpstreamUnavailable) as caught:
            async with client.open_blob("a", BLOB_DIGEST):
                pass
    assert caught.value.detail == {"upstream_status": 403}


async def test_get_tags_passes_pagination_and_link(aiohttp_server: ServerFactory) -> None:
    async def tags(request: web.Request) -> web.Response:
        link = '</v2/a/tags/list?n=2&last=b>; rel="next"'
        return web.json_response(
            {"name": "a", "tags": ["a", "b"], "query": dict(request.query)}, headers={"Link": link}
        )

    server = await start(aiohttp_server, {"/v2/a/tags/list": tags})
    async with client_for(server) as client:
        page, link = await client.get_tags("a", n=2, last="0")
        _, no_params_link = await client.get_tags("a")
    assert page["tags"] == ["a", "b"] and page["query"] == {"n": "2", "last": "0"}
    assert link == '</v2/a/tags/list?n=2&last=b>; rel="next"'
    assert no_params_link == link


async def test_get_referrers(aiohttp_server: ServerFactory) -> None:
    index = b'{"schemaVersion":2,"manifests":[]}'

    async def referrers(request: web.Request) -> web.Response:
        assert request.query.get("artifactType") == "application/vnd.example.sbom"
        return web.Response(
            body=index,
            headers={
                "Content-Type": "application/vnd.oci.image.index.v1+json",
                "OCI-Filters-Applied": "artifactType",
                "X-Other": "dropped",
            },
        )

    server = await start(aiohttp_server, {f"/v2/a/referrers/{MANIFEST_DIGEST}": referrers})
    async with client_for(server) as client:
        body, media_type, headers = await client.get_referrers(
            "a", MANIFEST_DIGEST, "application/vnd.example.sbom"
        )
    assert body == index
    assert media_type == "application/vnd.oci.image.index.v1+json"
    assert headers == {"OCI-Filters-Applied": "artifactType"}


async def test_client_must_be_started() -> None:
    client = UpstreamClient(UpstreamEndpoint(host="example.com", url="https://example.com"))
    with pytest.raises(RuntimeError, match="not started"):
        await client.get_tags("a")


def test_retry_policy_backoff_is_capped() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=3.0)
    assert [policy.delay(n) for n in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"url": "ftp://x"}, id="scheme"),
        pytest.param({"url": "https://x", "retries": -1}, id="retries"),
        pytest.param({"url": "https://x", "username": "u"}, id="half-credentials"),
    ],
)
def test_endpoint_rejects_bad_config(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="upstream 'x'"):
        UpstreamEndpoint(host="x", **kwargs)


def test_endpoint_repr_hides_password() -> None:
    endpoint = UpstreamEndpoint(host="x", url="https://x", username="u", password="hunter2")
    assert "hunter2" not in repr(endpoint)


@pytest.mark.parametrize(
    ("value", "date", "seconds"),
    [
        pytest.param("3", None, 3.0, id="delta-seconds"),
        pytest.param(" 0 ", None, 0.0, id="zero"),
        pytest.param("-1", None, None, id="negative"),
        pytest.param(
            "Wed, 21 Oct 2015 07:28:30 GMT", "Wed, 21 Oct 2015 07:28:00 GMT", 30.0, id="http-date"
        ),
        pytest.param("Wed, 21 Oct 2015 07:28:30 GMT", None, None, id="http-date-without-date"),
        pytest.param("soon", None, None, id="garbage"),
        pytest.param(None, None, None, id="absent"),
    ],
)
def test_parse_retry_after(value: str | None, date: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, date) == seconds


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        pytest.param(401, b"", ErrorCode.UNAUTHORIZED, id="401"),
        pytest.param(
            403, b'{"errors":[{"code":"DENIED","message":"no"}]}', ErrorCode.DENIED, id="403"
        ),
        pytest.param(
            404,
            b'{"errors":[{"code":"BLOB_UNKNOWN"}]}',
            ErrorCode.BLOB_UNKNOWN,
            id="404-upstream-code",
        ),
        pytest.param(
            404,
            b'{"errors":[{"code":"NOT_A_CODE"}]}',
            ErrorCode.MANIFEST_UNKNOWN,
            id="404-unknown-code",
        ),
        pytest.param(400, b"", ErrorCode.UNAVAILABLE, id="unexpected-4xx"),
        pytest.param(502, b"", ErrorCode.UNAVAILABLE, id="5xx"),
    ],
)
def test_error_for_status(status: int, body: bytes, code: ErrorCode) -> None:
    error = error_for(status, body, unknown=ErrorCode.MANIFEST_UNKNOWN)
    assert error.code is code
    assert error.detail == {"upstream_status": status}
