"""Chunked parallel ``Range`` pulls of a cold blob (containerd 2.1, SOCI): one upstream GET,
every piece exact, and a hostile upstream never completes a ``206`` of wrong bytes."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import aiohttp
import pytest

from mirror.blobstore.encrypted import EncryptedBlobStore
from mirror.web.keys import CACHE

from .conftest import Mirror, MirrorFactory
from .fake_upstream import FakeUpstream

pytestmark = pytest.mark.integration

FAKE_HOST = "fake.test"
PIECE = 256 * 1024
SIZE = 16 * PIECE + 1000  # a short last piece


@pytest.fixture
async def fake() -> FakeUpstream:
    return FakeUpstream()


@pytest.fixture
async def mirror(mirror_factory: MirrorFactory, aiohttp_server: Any, fake: FakeUpstream) -> Mirror:
    server = await aiohttp_server(fake.app(), host="127.0.0.1")
    return await mirror_factory({FAKE_HOST: f"http://127.0.0.1:{server.port}"})


async def ranged_pull(url: str, size: int, workers: int) -> dict[int, tuple[int, bytes]]:
    """``workers`` clients taking the next ``PIECE`` range until the blob is covered."""
    todo = list(range(0, size, PIECE))
    got: dict[int, tuple[int, bytes]] = {}

    async def worker(http: aiohttp.ClientSession) -> None:
        while todo:
            start = todo.pop(0)
            end = min(start + PIECE, size) - 1
            async with http.get(url, headers={"Range": f"bytes={start}-{end}"}) as resp:
                got[start] = (resp.status, await resp.read())

    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(worker(http) for _ in range(workers)))
    return got


async def test_parallel_ranges_of_a_cold_blob_share_one_upstream_get_and_are_exact(
    mirror: Mirror, fake: FakeUpstream
) -> None:
    data = os.urandom(SIZE)
    digest = fake.add_blob(data)
    fake.blob_mode[digest] = "slow"  # the ranges arrive while the blob is still filling
    url = f"{mirror.url}/v2/team/app/blobs/{digest}"

    got = await ranged_pull(url, SIZE, workers=8)

    assert sorted(got) == list(range(0, SIZE, PIECE))
    for start, (status, body) in got.items():
        assert (status, body) == (206, data[start : start + PIECE])
    blob_gets = [r for r in fake.requests if r[0] == "GET" and digest in r[1]]
    assert sum(fake.requests[r] for r in blob_gets) == 1


async def test_a_hostile_upstream_never_completes_a_range_of_wrong_bytes(
    mirror: Mirror, fake: FakeUpstream
) -> None:
    data = os.urandom(SIZE)
    digest = fake.add_blob(data)
    fake.blob_mode[digest] = "corrupt"  # its first byte is wrong; the digest tells
    url = f"{mirror.url}/v2/team/app/blobs/{digest}"

    async def one(start: int) -> None:
        async with aiohttp.ClientSession() as http:
            headers = {"Range": f"bytes={start}-{start + PIECE - 1}"}
            async with http.get(url, headers=headers) as resp:
                await resp.read()

    results = await asyncio.gather(*(one(s) for s in (0, PIECE, 8 * PIECE)), return_exceptions=True)

    # Every range, the one holding the wrong byte and those of right bytes alike, is cut.
    assert all(isinstance(r, aiohttp.ClientPayloadError) for r in results), results
    assert mirror.cached_blob_files() == []


async def test_the_warm_ranges_of_a_chunked_pull_reuse_the_same_decryption_buffers(
    mirror_factory: MirrorFactory, aiohttp_server: Any, fake: FakeUpstream
) -> None:
    # Once the blob is cached, every range is a request of its own: each decrypts into buffers
    # its store lends and takes back, so a run of them allocates no new ones.
    server = await aiohttp_server(fake.app(), host="127.0.0.1")
    mirror = await mirror_factory(
        {FAKE_HOST: f"http://127.0.0.1:{server.port}"}, encryption={"chunk_size": 64 * 1024}
    )
    data = os.urandom(SIZE)
    digest = fake.add_blob(data)
    url = f"{mirror.url}/v2/team/app/blobs/{digest}"
    assert (await ranged_pull(url, SIZE, workers=1))[0][0] == 206  # the cold pull fills it
    store = mirror.app[CACHE].inner
    assert isinstance(store, EncryptedBlobStore)
    pool = store.buffers
    after_one = pool.idle
    assert after_one > 0

    got = await ranged_pull(url, SIZE, workers=1)

    assert {start: body for start, (_, body) in got.items()} == {
        start: data[start : start + PIECE] for start in range(0, SIZE, PIECE)
    }
    assert pool.idle == after_one  # lent again, not joined by new ones
