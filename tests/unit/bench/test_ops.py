"""The measured operations against a real in-process registry: a pull resolves the tag as
containerd does, and a body with wrong bytes is an error whatever the status said."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from mirror.bench import ops
from mirror.bench.image import Blob, ImageRef
from mirror.bench.target import Target
from mirror.testing.images import build_image, random_layer
from mirror.testing.loopback import serve_on_loopback
from mirror.testing.registry import InProcessRegistry

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def _serve(
    tmp_path: Path, middleware: Any
) -> AsyncIterator[tuple[str, list[str], InProcessRegistry]]:
    registry = InProcessRegistry()
    built = build_image(tmp_path, "v1", [random_layer(random.Random(6), 5000)])
    registry.content.add_image("team/app", built)
    seen: list[str] = []

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        seen.append(f"{request.method} {request.path}")
        return await handler(request)

    app = registry.app()
    app.middlewares.extend([record, middleware])
    async with serve_on_loopback(app) as url:
        yield url, seen, registry


@web.middleware
async def no_digest_on_head(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    if request.method == "HEAD":
        response.headers.popall("Docker-Content-Digest", None)
    return response


@web.middleware
async def flipped_blobs(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    if "/blobs/" in request.path and isinstance(response, web.Response) and response.body:
        body = bytearray(bytes(response.body))  # type: ignore[arg-type]
        body[-1] ^= 0xFF
        response.body = bytes(body)
    return response


@pytest.fixture
async def plain(tmp_path: Path) -> AsyncIterator[tuple[str, list[str], InProcessRegistry]]:
    @web.middleware
    async def nothing(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await handler(request)

    async with _serve(tmp_path, nothing) as served:
        yield served


async def test_a_pull_heads_the_tag_then_gets_by_digest(
    plain: tuple[str, list[str], InProcessRegistry],
) -> None:
    url, seen, _ = plain
    target = Target("t", url)
    async with target.session(3) as http:
        outcome = await ops.pull(http, target, ImageRef("team/app", "v1"), 3)
    assert outcome.error == "" and outcome.size > 5000
    assert seen[0] == "HEAD /v2/team/app/manifests/v1"
    assert seen[1].startswith("GET /v2/team/app/manifests/sha256:")
    assert sum(1 for line in seen if "/blobs/" in line) == 2  # config and layer


async def test_without_a_digest_on_head_the_tag_is_fetched(tmp_path: Path) -> None:
    async with _serve(tmp_path, no_digest_on_head) as (url, seen, _):
        target = Target("t", url)
        async with target.session(3) as http:
            outcome = await ops.pull(http, target, ImageRef("team/app", "v1"), 3)
        assert outcome.error == ""
        assert seen[:2] == ["HEAD /v2/team/app/manifests/v1", "GET /v2/team/app/manifests/v1"]


async def test_wrong_bytes_with_a_200_are_a_digest_mismatch(tmp_path: Path) -> None:
    async with _serve(tmp_path, flipped_blobs) as (url, _, registry):
        target = Target("t", url)
        layer = max(registry.content.blobs.items(), key=lambda item: len(item[1]))
        async with target.session(3) as http:
            pulled = await ops.pull(http, target, ImageRef("team/app", "v1"), 3)
            blob = await ops.blob(http, target, "team/app", Blob(layer[0], len(layer[1])))
        assert pulled.error == "digest mismatch" and blob.error == "digest mismatch"
