"""Issue 14, upload sessions across the tier (OCI distribution spec, "Pushing blobs in
chunks"). nginx routes a repository's uploads to one replica, which stages the bytes on its
disk; when a later request of the session reaches another replica (the ring changed, or nginx
passed over the holder for a while), that replica forwards it to the holder, so the upload
goes on; when the holder is gone the session is lost and the answer is 404
``BLOB_UPLOAD_UNKNOWN`` (the client starts again). Two real ``mirror serve`` replicas on one
PostgreSQL, addressed directly (as nginx would after a move)."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.integration.tier.test_tier_hosted import replica_config
from tests.peers.mirror_serve import MirrorServe
from tests.peers.ports import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

NAME = "team/chunked"


@pytest.fixture
async def replicas(tmp_path: Path, postgres_dsn: str) -> AsyncIterator[list[MirrorServe]]:
    ports = [free_port() for _ in range(2)]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    secret = tmp_path / "tier.secret"
    secret.write_text(random.Random(19).randbytes(32).hex())
    started = [
        MirrorServe(
            tmp_path / f"replica-{i}",
            replica_config(tmp_path / f"replica-{i}", port, urls, secret, postgres_dsn),
            port=port,
        )
        for i, port in enumerate(ports)
    ]
    try:
        await asyncio.gather(*(replica.start() for replica in started))
        yield started
    finally:
        await asyncio.gather(*(replica.stop() for replica in started))


async def begin(http: aiohttp.ClientSession, replica: MirrorServe) -> str:
    """``POST /v2/<name>/blobs/uploads/`` at ``replica``: the session's Location."""
    async with http.post(f"{replica.url}/v2/{NAME}/blobs/uploads/") as resp:
        assert resp.status == 202, await resp.text()
        return resp.headers["Location"]


async def chunk(
    http: aiohttp.ClientSession, replica: MirrorServe, location: str, data: bytes, first: int
) -> aiohttp.ClientResponse:
    headers = {
        "Content-Type": "application/octet-stream",
        "Content-Range": f"{first}-{first + len(data) - 1}",
    }
    async with http.patch(f"{replica.url}{location}", data=data, headers=headers) as resp:
        await resp.read()
        return resp


async def test_a_session_started_at_one_replica_continues_and_commits_at_another(
    replicas: list[MirrorServe],
) -> None:
    a, b = replicas
    rng = random.Random(5)
    first, second, last = rng.randbytes(70_000), rng.randbytes(50_000), rng.randbytes(9_000)
    blob = first + second + last
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    async with aiohttp.ClientSession() as http:
        location = await begin(http, a)
        resp = await chunk(http, a, location, first, 0)
        assert resp.status == 202 and resp.headers["Range"] == f"0-{len(first) - 1}"

        # The repository's uploads now reach B: the chunk goes on at A, answered through B.
        resp = await chunk(http, b, location, second, len(first))
        assert resp.status == 202, resp.status
        assert resp.headers["Range"] == f"0-{len(first) + len(second) - 1}"
        assert resp.headers["Location"] == location
        async with http.get(f"{b.url}{location}") as status:
            assert status.status == 204
            assert status.headers["Range"] == f"0-{len(first) + len(second) - 1}"

        async with http.put(f"{b.url}{location}", params={"digest": digest}, data=last) as done:
            assert done.status == 201, await done.text()
            assert done.headers["Docker-Content-Digest"] == digest
        for replica in (a, b):
            async with http.get(f"{replica.url}/v2/{NAME}/blobs/{digest}") as got:
                assert got.status == 200
                assert hashlib.sha256(await got.read()).hexdigest() == digest.partition(":")[2]
        # Committed, the session is over everywhere.
        async with http.get(f"{b.url}{location}") as gone:
            assert gone.status == 404
            assert (await gone.json())["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"


async def test_a_session_cancelled_through_another_replica_is_gone_at_its_holder(
    replicas: list[MirrorServe],
) -> None:
    a, b = replicas
    async with aiohttp.ClientSession() as http:
        location = await begin(http, a)
        # The holder's forwarding route takes only the tier's signed requests.
        uuid = location.rsplit("/", 1)[1]
        url = f"{a.url}/_tier/uploads/{NAME}/{uuid}?tenancy=team&repo=chunked"
        async with http.delete(url) as resp:
            assert resp.status == 401
            assert (await resp.json())["errors"][0]["code"] == "UNAUTHORIZED"
        assert (await chunk(http, a, location, b"x" * 1_000, 0)).status == 202
        async with http.delete(f"{b.url}{location}") as resp:
            assert resp.status == 204
        async with http.get(f"{a.url}{location}") as resp:
            assert resp.status == 404
            assert (await resp.json())["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"


async def test_the_session_of_a_replica_that_died_is_unknown_at_the_others(
    replicas: list[MirrorServe],
) -> None:
    a, b = replicas
    async with aiohttp.ClientSession() as http:
        location = await begin(http, a)
        assert (await chunk(http, a, location, b"y" * 4_096, 0)).status == 202
        await a.kill()

        resp = await chunk(http, b, location, b"z" * 4_096, 4_096)
        assert resp.status == 404
        async with http.get(f"{b.url}{location}") as status:
            assert status.status == 404
            body = await status.json()
        assert body["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"
        # The client starts again, at the replica it now reaches.
        again = await begin(http, b)
        assert (await chunk(http, b, again, b"w" * 4_096, 0)).status == 202
