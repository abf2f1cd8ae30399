"""``mirror serve`` with ``server.workers = 2``: two processes share the port (``SO_REUSEPORT``)
and the data directory, in front of a real ``docker-registry``.

16 concurrent cold pulls of one blob on 16 connections (spread over both workers) cause
exactly one upstream GET and every body is right; a worker killed by its PID is restarted and
the port keeps serving; a second ``mirror serve`` on the same data directory is refused; SIGTERM
to the supervisor stops every worker.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from mirror.testing.images import BuiltImage, build_image, random_layer
from tests.peers.mirror_serve import MirrorServe
from tests.peers.ports import free_port
from tests.peers.registry import Registry

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CONFIG = """\
default_upstream = "{host}"
[server]
listen = "127.0.0.1:{{port}}"
workers = 2
[storage]
data_dir = "{base}/data"
chunk_size = 65536
[encryption]
kek_file = "{base}/kek"
[console]
enabled = false
[[upstreams]]
host = "{host}"
url = "{url}"
"""
_CHECKOUT = Path(__file__).resolve().parents[2]
_SERVING = re.compile(r"worker (\d+) \(PID (\d+)\) serving")


def worker_pids(server: MirrorServe) -> dict[int, int]:
    """Each worker's latest PID, as its start-up line named it."""
    return {int(i): int(pid) for i, pid in _SERVING.findall(server.log())}


def holds_sockets(pid: int) -> bool:
    """Whether process ``pid`` still has open files (an exited process, zombie or reaped,
    has none)."""
    try:
        return any(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists (reaped children do not)."""
    return Path(f"/proc/{pid}").exists()


@pytest.fixture
async def image(tmp_path: Path, upstream_registry: Registry) -> BuiltImage:
    rng = random.Random(18)
    built = build_image(tmp_path / "layout", "v1", [random_layer(rng, 3_000_000)])
    await upstream_registry.push_async(built.layout_dir, "v1", "workers/app")
    return built


@pytest.fixture
async def server(tmp_path: Path, upstream_registry: Registry) -> AsyncIterator[MirrorServe]:
    config = CONFIG.format(
        host=upstream_registry.host, url=upstream_registry.url, base=tmp_path / "mirror"
    )
    serve = MirrorServe(tmp_path / "mirror", config)
    await serve.start()
    try:
        yield serve
    finally:
        await serve.stop()


async def get_blob_retrying(url: str, digest: str) -> str:
    """``get_blob``, once more after a connection reset at connect."""
    try:
        return await get_blob(url, digest)
    except aiohttp.ClientConnectorError:
        await asyncio.sleep(0.1)
        return await get_blob(url, digest)


async def get_blob(url: str, digest: str) -> str:
    """GET the blob on a connection of its own; the sha256 digest of the body."""
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session,
        session.get(f"{url}/v2/workers/app/blobs/{digest}") as resp,
    ):
        assert resp.status == 200, await resp.text()
        return "sha256:" + hashlib.sha256(await resp.read()).hexdigest()


async def test_16_concurrent_cold_pulls_through_two_workers_make_one_upstream_get(
    server: MirrorServe, image: BuiltImage, upstream_registry: Registry
) -> None:
    digest = str(image.layers[0].digest)
    bodies = await asyncio.gather(*(get_blob(server.url, digest) for _ in range(16)))
    assert bodies == [digest] * 16
    assert upstream_registry.count_requests("GET", f"/blobs/{digest}") == 1
    # Some of the 16 connections reached the worker that does not own the digest, which
    # streamed it from the owner over the internal route instead of going upstream.
    assert f"/_tier/blobs/{digest}" in server.log()
    # Warm now: every worker serves it from the shared data directory.
    assert await asyncio.gather(*(get_blob(server.url, digest) for _ in range(8))) == [digest] * 8
    assert upstream_registry.count_requests("GET", f"/blobs/{digest}") == 1


async def test_a_killed_worker_is_restarted_and_the_port_keeps_serving(
    server: MirrorServe, image: BuiltImage
) -> None:
    digest = str(image.layers[0].digest)
    before = worker_pids(server)
    assert sorted(before) == [0, 1]
    os.kill(before[1], signal.SIGKILL)
    # SIGKILL is delivered asynchronously: until the process has exited (its sockets closed;
    # a zombie holds none), the kernel may still queue a new connection on its listening
    # socket, and such a connection is reset. Wait for the exit, not for the restart.
    deadline = time.monotonic() + 10
    while holds_sockets(before[1]):
        assert time.monotonic() < deadline, server.log()
        await asyncio.sleep(0.02)
    # Meanwhile the other worker answers every new connection on the shared port. (A
    # connection the kernel had already put in the dead worker's queue is reset:
    # net.ipv4.tcp_migrate_req is 0 by default. Such a pull is retried once, as clients do.)
    pulls = (get_blob_retrying(server.url, digest) for _ in range(8))
    assert await asyncio.gather(*pulls) == [digest] * 8
    deadline = time.monotonic() + 30
    while worker_pids(server)[1] == before[1]:
        assert time.monotonic() < deadline, server.log()
        await asyncio.sleep(0.1)
    assert worker_pids(server)[0] == before[0]
    assert "worker 1" in server.log() and "restarting" in server.log()
    assert await asyncio.gather(*(get_blob(server.url, digest) for _ in range(8))) == [digest] * 8


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_a_second_server_on_the_same_data_dir_is_refused(
    server: MirrorServe, tmp_path: Path, workers: str
) -> None:
    env = {**os.environ, "PYTHONPATH": str(_CHECKOUT), "MIRROR_CONSOLE_ENABLED": "false"}
    command = [
        *(sys.executable, "-m", "mirror", "serve"),
        *("--config", str(server.base_dir / "mirror.toml")),
        *("--listen", f"127.0.0.1:{free_port()}", "--workers", workers),
    ]  # fmt: skip
    second = await asyncio.to_thread(
        subprocess.run, command, env=env, capture_output=True, text=True, timeout=60
    )
    assert second.returncode == 1, second.stderr
    supervisor = server.pid
    assert f"in use by a running mirror server (2 workers) (PID {supervisor})" in second.stderr


async def test_sigterm_stops_every_worker(server: MirrorServe, image: BuiltImage) -> None:
    pids = worker_pids(server).values()
    assert server.pid is not None
    os.kill(server.pid, signal.SIGTERM)
    process = server._process
    assert process is not None
    assert await asyncio.to_thread(process.wait, 60) == 0
    assert not any(alive(pid) for pid in pids)
    # The data directory is free again: the next server starts on it.
    await server.start()
    digest = str(image.layers[0].digest)
    assert await get_blob(server.url, digest) == digest
