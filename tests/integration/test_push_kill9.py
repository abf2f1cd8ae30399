"""``kill -9`` of a real ``mirror serve`` in the middle of a chunked upload: after a restart on
the same data directory the client asks the session's status and resumes from the ``Range``
it is given (or, answered ``BLOB_UPLOAD_UNKNOWN``, starts over), finishes, and pulls the blob
with the right bytes; until the final ``PUT`` nothing of the blob is visible.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.peers.mirror_serve import MirrorServe

from .test_auth_tokens import basic

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CONFIG = """\
default_upstream = ""
[server]
listen = "127.0.0.1:{port}"
[auth]
enabled = true
hash_cost = 256
[storage]
data_dir = "DATA"
[encryption]
kek_file = "KEK"
[[upstreams]]
host = "upstream.test"
url = "http://127.0.0.1:9"
"""
CHUNK = 1 << 20
REPO = "admin/seed/app"  # the initial administrator's own tenancy: it may create repos there


def chunk_headers(start: int, data: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/octet-stream",
        "Content-Range": f"{start}-{start + len(data) - 1}",
        "Content-Length": str(len(data)),
    }


async def visible(http: aiohttp.ClientSession, url: str, digest: str) -> tuple[int, int]:
    """The status of ``HEAD`` and ``GET`` of the blob (the body is read and dropped)."""
    blob = f"{url}/v2/{REPO}/blobs/{digest}"
    async with http.head(blob) as head:
        pass
    async with http.get(blob) as get:
        await get.read()
    return head.status, get.status


async def test_kill_9_during_a_chunked_upload_then_resume_and_pull(tmp_path: Path) -> None:
    blob = random.Random(11).randbytes(3 * CHUNK + 12345)
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    config = CONFIG.replace("DATA", str(tmp_path / "data")).replace("KEK", str(tmp_path / "kek"))
    server = MirrorServe(tmp_path / "serve", config)
    await server.start()
    token = server.log().split("auth token (shown only now) is: ", 1)[1].split()[0]
    login = basic("admin/admin", token)
    try:
        async with aiohttp.ClientSession(headers=login) as http:
            async with http.post(f"{server.url}/v2/{REPO}/blobs/uploads/") as resp:
                assert resp.status == 202
                location = resp.headers["Location"]
            first = blob[:CHUNK]
            async with http.patch(
                f"{server.url}{location}", data=first, headers=chunk_headers(0, first)
            ) as resp:
                assert resp.status == 202 and resp.headers["Range"] == f"0-{CHUNK - 1}"

            # The second chunk stops half-way; the server is killed while it waits for the rest.
            second = blob[CHUNK : 3 * CHUNK]
            sent = asyncio.Event()

            async def half_then_stall() -> AsyncIterator[bytes]:
                yield second[: CHUNK // 2]
                sent.set()
                await asyncio.Event().wait()

            patch = asyncio.ensure_future(
                http.patch(
                    f"{server.url}{location}",
                    data=half_then_stall(),
                    headers=chunk_headers(CHUNK, second),
                )
            )
            await sent.wait()
            await asyncio.sleep(0.5)
            await server.kill()
            with pytest.raises(aiohttp.ClientError):
                await patch
        await server.start()  # same data directory, a new port
        async with aiohttp.ClientSession(headers=login) as http:
            assert await visible(http, server.url, digest) == (404, 404)
            async with http.get(f"{server.url}{location}") as resp:
                status = resp.status
                received = resp.headers.get("Range", "")
                body = await resp.read()
            if status == 404:  # the session is gone: BLOB_UPLOAD_UNKNOWN, start over
                assert b"BLOB_UPLOAD_UNKNOWN" in body
                async with http.post(f"{server.url}/v2/{REPO}/blobs/uploads/") as resp:
                    location, offset = resp.headers["Location"], 0
            else:
                assert status == 204, body
                offset = int(received.split("-")[1]) + 1
                assert CHUNK <= offset <= CHUNK + CHUNK // 2  # what reached the disk
            rest = blob[offset:]
            async with http.patch(
                f"{server.url}{location}", data=rest, headers=chunk_headers(offset, rest)
            ) as resp:
                assert resp.status == 202, await resp.text()
                assert resp.headers["Range"] == f"0-{len(blob) - 1}"
            assert await visible(http, server.url, digest) == (404, 404)
            async with http.put(f"{server.url}{location}", params={"digest": digest}) as resp:
                assert resp.status == 201, await resp.text()
            async with http.get(f"{server.url}/v2/{REPO}/blobs/{digest}") as resp:
                assert resp.status == 200, await resp.text()
                assert hashlib.sha256(await resp.read()).hexdigest() == digest.split(":")[1]
        assert "Traceback" not in server.log()
    finally:
        await server.stop()
