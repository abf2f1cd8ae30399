"""A Download against a small in-process upstream: the whole blob, verified, resumed with
``Range`` when the transfer breaks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from mirror.errors import DigestMismatch, UpstreamUnavailable
from mirror.oci.digest import Digest
from mirror.pullthrough.download import Download
from mirror.upstream import UpstreamClient, UpstreamEndpoint
from mirror.upstream.body import regrouped

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]

BLOB = bytes(range(256)) * 64  # 16 KiB
DIGEST = Digest.of(BLOB)


class Upstream:
    """Serves ``BLOB`` honouring ``Range``; the first ``breaks`` answers stop halfway.

    ``body`` is what it sends instead of ``BLOB`` (for wrong content), ``resized`` the size a
    resumed answer announces, ``chunked`` leaves out ``Content-Length``.
    """

    def __init__(self, *, breaks: int = 0, body: bytes = BLOB, resized: int | None = None) -> None:
        self.breaks = breaks
        self.body = body
        self.resized = resized
        self.chunked = False
        self.ranges: list[str | None] = []

    async def blob(self, request: web.Request) -> web.StreamResponse:
        if request.method == "HEAD":
            return web.Response(headers={"Content-Length": str(len(BLOB))})
        self.ranges.append(request.headers.get("Range"))
        offset = int(request.headers.get("Range", "bytes=0-")[6:].rstrip("-") or 0)
        response = web.StreamResponse()
        data = self.body[offset:]
        if offset:
            size = self.resized or len(self.body)
            response.set_status(206)
            response.headers["Content-Range"] = f"bytes {offset}-{size - 1}/{size}"
        if not self.chunked:
            response.content_length = len(data)
        await response.prepare(request)
        if self.breaks:
            self.breaks -= 1
            await response.write(data[: len(data) // 2])
            await asyncio.sleep(0.05)
            assert request.transport is not None
            request.transport.close()
            return response
        await response.write(data)
        await response.write_eof()
        return response


async def download(
    aiohttp_server: ServerFactory, upstream: Upstream, *, resume_attempts: int = 3
) -> tuple[bytes, list[int], int]:
    """Run a Download of ``DIGEST``: (bytes, sizes announced, resumes)."""
    app = web.Application()
    app.router.add_route("*", f"/v2/library/app/blobs/{DIGEST}", upstream.blob)
    server = await aiohttp_server(app)
    endpoint = UpstreamEndpoint(
        host=f"127.0.0.1:{server.port}", url=str(server.make_url("")), retries=0
    )
    announced: list[int] = []
    resumes: list[None] = []

    async def started(size: int) -> None:
        announced.append(size)

    async with UpstreamClient(endpoint) as client:
        fetch = Download(
            client,
            "library/app",
            DIGEST,
            chunk_size=1024,
            resume_attempts=resume_attempts,
            on_resume=lambda: resumes.append(None),
        )
        received = bytearray()
        async for chunk in fetch.chunks(started):
            received += chunk
    return bytes(received), announced, len(resumes)


async def test_the_whole_blob_arrives_verified_after_its_size_was_announced(
    aiohttp_server: ServerFactory,
) -> None:
    upstream = Upstream()

    assert await download(aiohttp_server, upstream) == (BLOB, [len(BLOB)], 0)
    assert upstream.ranges == [None]


async def test_a_broken_transfer_resumes_with_range_from_the_last_byte_received(
    aiohttp_server: ServerFactory,
) -> None:
    upstream = Upstream(breaks=2)

    assert await download(aiohttp_server, upstream) == (BLOB, [len(BLOB)], 2)
    # Each resume starts where the bytes received so far end: at most where the broken answer
    # stopped (exactly there unless the client's last unread bytes went with the connection:
    # aiohttp raises a broken payload before handing over what it still buffered).
    first, *resumes = upstream.ranges
    assert first is None and len(resumes) == 2
    starts = [int(r.removeprefix("bytes=").removesuffix("-")) for r in resumes if r]
    assert 0 < starts[0] <= len(BLOB) // 2
    assert starts[0] < starts[1] <= starts[0] + (len(BLOB) - starts[0]) // 2


async def test_a_transfer_that_keeps_breaking_fails_once_the_resumes_are_used_up(
    aiohttp_server: ServerFactory,
) -> None:
    upstream = Upstream(breaks=3)

    with pytest.raises(UpstreamUnavailable):
        await download(aiohttp_server, upstream, resume_attempts=2)
    assert len(upstream.ranges) == 3


async def test_wrong_content_fails_at_the_end_of_the_stream(aiohttp_server: ServerFactory) -> None:
    upstream = Upstream(body=bytes([BLOB[0] ^ 0xFF]) + BLOB[1:])

    with pytest.raises(DigestMismatch) as caught:
        await download(aiohttp_server, upstream)
    assert caught.value.expected == str(DIGEST)


async def test_a_size_that_changed_on_resume_fails(aiohttp_server: ServerFactory) -> None:
    upstream = Upstream(breaks=1, resized=len(BLOB) + 1)

    with pytest.raises(DigestMismatch) as caught:
        await download(aiohttp_server, upstream)
    assert (caught.value.expected_size, caught.value.actual_size) == (len(BLOB), len(BLOB) + 1)


async def test_a_chunked_answer_is_sized_by_the_registry_head(
    aiohttp_server: ServerFactory,
) -> None:
    upstream = Upstream()
    upstream.chunked = True

    assert await download(aiohttp_server, upstream) == (BLOB, [len(BLOB)], 0)


async def test_a_download_arrives_in_whole_pieces_of_the_chunk_size(
    aiohttp_server: ServerFactory,
) -> None:
    # The socket hands over whatever arrived; the fill gets pieces of exactly the chunk size
    # (one hash job, one sealed chunk, one reader wake-up each), the last one shorter.

    async def dribble(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = len(BLOB)
        await response.prepare(request)
        for offset in range(0, len(BLOB), 700):  # small, uneven writes, each flushed
            await response.write(BLOB[offset : offset + 700])
            await asyncio.sleep(0.001)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_route("GET", f"/v2/library/app/blobs/{DIGEST}", dribble)
    server = await aiohttp_server(app)
    endpoint = UpstreamEndpoint(host=f"127.0.0.1:{server.port}", url=str(server.make_url("")))

    async def started(size: int) -> None:
        pass

    async with UpstreamClient(endpoint) as client:
        fetch = Download(client, "library/app", DIGEST, chunk_size=5000, resume_attempts=0)
        pieces = [chunk async for chunk in fetch.chunks(started)]

    assert [len(p) for p in pieces] == [5000, 5000, 5000, len(BLOB) - 15000]
    assert b"".join(pieces) == BLOB


async def _pieces_of(chunks: list[bytes], size: int) -> list[bytes]:
    async def source() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    return [bytes(piece) async for piece in regrouped(source(), size)]


@pytest.mark.parametrize(
    "sizes",
    [
        pytest.param([1000] * 16, id="whole-pieces"),
        pytest.param([300] * 60, id="small-chunks-straddling-pieces"),
        pytest.param([2500, 7, 4993, 1, 1999], id="chunks-larger-than-a-piece"),
        pytest.param([16000], id="one-chunk-of-many-pieces"),
        pytest.param([999, 1, 1000, 1001], id="around-the-boundary"),
    ],
)
async def test_regrouped_cuts_any_chunks_into_whole_pieces_and_a_short_last_one(
    sizes: list[int],
) -> None:
    chunks, offset = [], 0
    for size in sizes:
        chunks.append(BLOB[offset : offset + size])
        offset += size
    data = b"".join(chunks)

    pieces = await _pieces_of(chunks, 1000)

    assert b"".join(pieces) == data
    assert all(len(piece) == 1000 for piece in pieces[:-1])
    assert 0 < len(pieces[-1]) <= 1000


@pytest.mark.parametrize(
    "sizes",
    [
        pytest.param([16384], id="one-chunk"),
        pytest.param([300] * 54 + [184], id="small-chunks"),
        pytest.param([1000, 2000, 4000, 4000, 4000, 1384], id="exactly-the-pieces"),
    ],
)
async def test_regrouped_pieces_grow_from_the_first_size_to_the_largest(
    sizes: list[int],
) -> None:
    # The first byte goes out after one small piece; the bulk moves in large ones.
    chunks, offset = [], 0
    for size in sizes:
        chunks.append(BLOB[offset : offset + size])
        offset += size
    assert b"".join(chunks) == BLOB

    async def source() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    pieces = [bytes(piece) async for piece in regrouped(source(), 1000, 4000)]

    assert b"".join(pieces) == BLOB
    assert [len(piece) for piece in pieces] == [1000, 2000, 4000, 4000, 4000, 1384]
