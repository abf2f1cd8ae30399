"""Reliability under a full disk, hostile input and impatient clients, and one server per
data directory (issue 10, "Reliability")."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import struct
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from mirror.app.build import build_app
from mirror.clock import ManualClock
from mirror.config import Config, load_config
from mirror.db.metadata import Metadata
from mirror.metrics import Metrics
from mirror.oci.media import OCI_INDEX, OCI_MANIFEST
from mirror.web.accesslog import AccessLogger
from mirror.web.keys import METADATA
from tests.contract.smalldisk import fill, free, small_disk

from .conftest import MirrorFactory
from .fake_upstream import FakeUpstream

pytestmark = pytest.mark.integration

FAKE_HOST = "fake.test"
# Far deeper than json's recursion limit (1000), far smaller than any body limit.
DEEP = 100_000


@pytest.fixture
async def fake() -> FakeUpstream:
    return FakeUpstream()


@pytest.fixture
async def fake_server(aiohttp_server: Any, fake: FakeUpstream) -> Any:
    """The fake upstream, plus a tags list that nests ``DEEP`` levels."""
    app = fake.app()

    async def tags(request: web.Request) -> web.Response:
        nested = b'{"name": "team/app", "tags": ' + b"[" * DEEP + b"]" * DEEP + b"}"
        return web.Response(body=nested, content_type="application/json")

    app.router.add_get(r"/v2/{name:.+}/tags/list", tags)
    return await aiohttp_server(app, host="127.0.0.1")


def upstream_of(fake_server: Any) -> dict[str, str]:
    return {FAKE_HOST: f"http://127.0.0.1:{fake_server.port}"}


async def fetch(url: str, **headers: str) -> tuple[int, bytes, dict[str, str]]:
    async with aiohttp.ClientSession() as http:
        async with http.get(url, headers=headers) as resp:
            return resp.status, await resp.read(), dict(resp.headers)


def error_code(body: bytes) -> str:
    code: str = json.loads(body)["errors"][0]["code"]
    return code


# Full disk --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "full", ["metadata", "data-dir"], ids=["metadata-full", "whole-data-dir-full"]
)
async def test_manifests_are_served_uncached_and_counted_when_the_disk_is_full(
    mirror_factory: MirrorFactory,
    fake_server: Any,
    fake: FakeUpstream,
    tmp_path: Path,
    full: str,
) -> None:
    digest, manifest = fake.add_image("team/app", "v1", [os.urandom(2000)])
    layer = json.loads(manifest)["layers"][0]["digest"]
    data_dir = tmp_path / "disk" / "data"
    mounted = data_dir / "metadata" if full == "metadata" else tmp_path / "disk"
    with small_disk(mounted):
        mirror = await mirror_factory(upstream_of(fake_server), data_dir=data_dir)
        fill(mounted)
        try:
            by_tag = await fetch(f"{mirror.url}/v2/team/app/manifests/v1", Accept=OCI_MANIFEST)
            by_digest = await fetch(f"{mirror.url}/v2/team/app/manifests/{digest}")
            blob = await fetch(f"{mirror.url}/v2/team/app/blobs/{layer}")
        finally:
            await mirror.server.close()
            free(mounted)

    for status, body, headers in (by_tag, by_digest):
        assert (status, body) == (200, manifest)
        assert headers["Docker-Content-Digest"] == digest
    assert blob[0] == 200
    assert mirror.metric("mirror_uncached_streams_total", reason="manifest") >= 1
    assert mirror.metric("mirror_metadata_write_failures_total", record="tag") >= 1
    if full == "metadata":
        # The store had room, the database none: the record-less body was given back.
        assert mirror.metric("mirror_metadata_write_failures_total", record="manifest") >= 1
        assert not [p for p in mirror.cached_blob_files() if digest.split(":")[1] in p.name]


async def test_last_pulls_a_full_disk_refused_are_kept_and_written_when_room_returns(
    mirror_factory: MirrorFactory, fake_server: Any, fake: FakeUpstream, tmp_path: Path
) -> None:
    digest, _ = fake.add_image("team/app", "v1", [os.urandom(2000)])
    data_dir = tmp_path / "data"
    with small_disk(data_dir / "metadata") as disk:
        mirror = await mirror_factory(
            upstream_of(fake_server), data_dir=data_dir, last_pull_flush_interval=0.05
        )
        try:
            fill(disk)
            status, _, _ = await fetch(f"{mirror.url}/v2/team/app/manifests/v1")
            assert status == 200
            for _ in range(100):
                await asyncio.sleep(0.05)
                if mirror.metric("mirror_metadata_write_failures_total", record="last-pull"):
                    break
            assert mirror.metric("mirror_metadata_write_failures_total", record="last-pull") >= 1
            metadata = mirror.app[METADATA]
            pulled = [key for key in metadata.pulls() if str(key[2]) == digest]
            assert pulled == [(FAKE_HOST, "team/app", pulled[0][2])]

            free(disk)
            failures = mirror.metric("mirror_metadata_write_failures_total", record="last-pull")
            await asyncio.sleep(0.5)  # several flush intervals
            assert metadata.flush() == 0  # the flusher wrote the kept batch
            assert mirror.metric("mirror_metadata_write_failures_total", record="last-pull") in (
                failures,
                failures + 1,  # one flush may have been running as room came back
            )
        finally:
            await mirror.server.close()
        # What another process reading the database sees: the pull the full disk refused.
        reader = Metadata(data_dir / "metadata")
        try:
            assert reader.last_pull(FAKE_HOST, "team/app", pulled[0][2]) is not None
        finally:
            reader.close()


# Hostile input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("range_header", "status", "body_length"),
    [
        pytest.param("bytes=" + "9" * 5000 + "-", 416, None, id="first-of-5000-digits"),
        pytest.param("bytes=0-" + "9" * 5000, 206, 3000, id="last-of-5000-digits"),
        pytest.param("bytes=-" + "9" * 5000, 206, 3000, id="suffix-of-5000-digits"),
    ],
)
async def test_ranges_of_thousands_of_digits_are_answered_by_the_spec(
    mirror_factory: MirrorFactory,
    fake_server: Any,
    fake: FakeUpstream,
    range_header: str,
    status: int,
    body_length: int | None,
) -> None:
    mirror = await mirror_factory(upstream_of(fake_server))
    layer = fake.add_blob(os.urandom(3000))
    url = f"{mirror.url}/v2/team/app/blobs/{layer}"
    assert (await fetch(url))[0] == 200  # cached

    got, body, headers = await fetch(url, Range=range_header)

    assert got == status
    if body_length is None:
        assert error_code(body) == "RANGE_INVALID"
        assert headers["Content-Range"] == "bytes */3000"
    else:
        assert len(body) == body_length and headers["Content-Range"] == "bytes 0-2999/3000"


async def test_a_deeply_nested_upstream_manifest_is_manifest_invalid(
    mirror_factory: MirrorFactory, fake_server: Any, fake: FakeUpstream
) -> None:
    mirror = await mirror_factory(upstream_of(fake_server))
    body = b'{"schemaVersion": 2, "annotations": ' + b"[" * DEEP + b"]" * DEEP + b"}"
    digest = fake.content.add_manifest("team/app", body, OCI_MANIFEST, "deep")

    for reference in ("deep", digest):
        status, answer, _ = await fetch(f"{mirror.url}/v2/team/app/manifests/{reference}")
        assert (status, error_code(answer)) == (400, "MANIFEST_INVALID")


async def test_a_deeply_nested_upstream_tags_list_is_unavailable(
    mirror_factory: MirrorFactory, fake_server: Any
) -> None:
    mirror = await mirror_factory(upstream_of(fake_server))

    status, answer, _ = await fetch(f"{mirror.url}/v2/team/app/tags/list")

    assert (status, error_code(answer)) == (503, "UNAVAILABLE")


@pytest.mark.parametrize(
    "index",
    [
        pytest.param(b'{"manifests": ' + b"[" * DEEP + b"]" * DEEP + b"}", id="deeply-nested"),
        pytest.param(b"not json", id="not-json"),
        pytest.param(b'{"manifests": 5}', id="manifests-not-a-list"),
    ],
)
async def test_a_broken_upstream_referrers_index_is_unavailable(
    mirror_factory: MirrorFactory, aiohttp_server: Any, index: bytes
) -> None:
    async def referrers(request: web.Request) -> web.Response:
        return web.Response(body=index, content_type=OCI_INDEX)

    upstream = web.Application()

    async def ping(request: web.Request) -> web.Response:
        return web.json_response({})

    upstream.router.add_get("/v2/", ping)
    upstream.router.add_get(r"/v2/{name:.+}/referrers/{digest}", referrers)
    server = await aiohttp_server(upstream, host="127.0.0.1")
    mirror = await mirror_factory({FAKE_HOST: f"http://127.0.0.1:{server.port}"})
    subject = "sha256:" + "a" * 64

    status, answer, _ = await fetch(
        f"{mirror.url}/v2/team/app/referrers/{subject}?artifactType=application/x-sig"
    )

    assert (status, error_code(answer)) == (503, "UNAVAILABLE")


# Impatient clients ------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def served_as_in_production(config: Config, metrics: Metrics) -> AsyncIterator[str]:
    """The mirror behind an ``AppRunner`` as ``mirror serve`` starts it (the test server
    cancels handlers of lost connections; production lets them see the reset); its URL."""
    runner = web.AppRunner(
        build_app(config, clock=ManualClock(), metrics=metrics),
        access_log=logging.getLogger("mirror"),
        access_log_class=AccessLogger,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def test_a_client_that_hangs_up_mid_blob_is_one_info_line_not_an_error(
    fake_server: Any, fake: FakeUpstream, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "data"
    config = load_config(
        overrides={
            "storage": {"data_dir": str(data_dir), "chunk_size": 64 * 1024},
            "encryption": {"kek_file": str(tmp_path / "data.kek")},
            "upstreams": [{"host": FAKE_HOST, "url": f"http://127.0.0.1:{fake_server.port}"}],
            "default_upstream": FAKE_HOST,
        },
        environ={},
    )
    metrics = Metrics()
    data = os.urandom(8 * 1024 * 1024)
    layer = fake.add_blob(data)
    path = f"/v2/team/app/blobs/{layer}"
    route = "/v2/{name}/blobs/{digest}"

    def disconnects() -> float:
        return (
            metrics.registry.get_sample_value("mirror_client_disconnects_total", {"route": route})
            or 0.0
        )

    async with served_as_in_production(config, metrics) as url:
        assert (await fetch(f"{url}{path}"))[0] == 200  # cached: served from disk
        caplog.set_level(logging.DEBUG)
        caplog.clear()
        # A real client that reads the head and a little of the body, then resets.
        host, port = url.removeprefix("http://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        await reader.readexactly(64 * 1024)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()
        for _ in range(200):
            await asyncio.sleep(0.05)
            if disconnects():
                break

        assert disconnects() == 1
        assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
        lines = [r for r in caplog.records if "disconnected" in r.getMessage()]
        assert len(lines) == 1 and lines[0].levelno == logging.INFO
        assert lines[0].exc_info is None and layer in lines[0].getMessage()
        # The mirror keeps serving, the blob whole.
        status, body, _ = await fetch(f"{url}{path}")
        assert status == 200 and body == data


# One server per data directory --------------------------------------------------------------


async def test_a_second_server_on_the_same_data_directory_exits_naming_the_running_one(
    mirror_factory: MirrorFactory, fake_server: Any, tmp_path: Path
) -> None:
    mirror = await mirror_factory(upstream_of(fake_server))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "second.toml"
    config.write_text(
        f'default_upstream = "{FAKE_HOST}"\n'
        "[server]\n"
        f'listen = "127.0.0.1:{port}"\n'
        "[storage]\n"
        f'data_dir = "{mirror.data_dir}"\n'
        "[encryption]\n"
        f'kek_file = "{mirror.config.encryption.kek_file}"\n'
        "[[upstreams]]\n"
        f'host = "{FAKE_HOST}"\n'
        f'url = "http://127.0.0.1:{fake_server.port}"\n'
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mirror",
        "serve",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    message = err.decode()
    assert proc.returncode == 1, message
    assert str(mirror.data_dir) in message
    assert f"a running mirror server (PID {os.getpid()})" in message
    assert "Traceback" not in message
    # The first server is unharmed.
    assert (await fetch(f"{mirror.url}/v2/"))[0] == 200
