"""What a scraper and a log shipper see: ``/metrics`` in the formats Prometheus speaks, access
lines with body bytes, JSON logs, and requests that are not HTTP counted and named."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from mirror.app.build import build_app
from mirror.config import load_config
from mirror.metrics import Metrics
from mirror.web.accesslog import access_logger_class
from tests.peers.ports import free_port

pytestmark = pytest.mark.integration

# The first bytes of a TLS ClientHello, as a client configured for https:// sends them.
CLIENT_HELLO = bytes.fromhex("16030100a5010000a10303") + os.urandom(32) + b"\x00" * 40


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def config_of(tmp_path: Path, **server: Any) -> Any:
    return load_config(
        overrides={
            "server": server,
            "storage": {"data_dir": str(tmp_path / "data")},
            "encryption": {"kek_file": str(tmp_path / "kek")},
            "upstreams": [{"host": "up.test", "url": "http://127.0.0.1:9"}],
            "default_upstream": "up.test",
        },
        environ={},
    )


async def start(aiohttp_server: Any, tmp_path: Path, *, lines: bool = True) -> Any:
    metrics = Metrics()
    app = build_app(config_of(tmp_path), metrics=metrics)
    logger = logging.getLogger(f"test.access.{tmp_path.name}")
    logger.setLevel(logging.INFO)
    records = Records()
    logger.addHandler(records)
    server = await aiohttp_server(
        app,
        host="127.0.0.1",
        access_log=logger,
        access_log_class=access_logger_class(metrics, lines=lines),
    )
    return server, metrics, records


async def raw(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    return answer


def requests_counted(metrics: Metrics, route: str, status: str) -> float:
    value = metrics.registry.get_sample_value(
        "mirror_http_requests_total", {"route": route, "method": "-", "status": status}
    )
    return value or 0.0


# /metrics ------------------------------------------------------------------------------------


async def test_metrics_have_the_standard_collectors_build_info_and_a_charset(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    server, _, _ = await start(aiohttp_server, tmp_path)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{server.port}/metrics") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
            text = await resp.text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert "process_resident_memory_bytes" in families
    assert "process_start_time_seconds" in families
    assert "python_info" in families and "python_gc_objects_collected" in families
    [build] = families["mirror_build_info"].samples
    assert build.value == 1.0 and build.labels["version"] and build.labels["python"]


async def test_metrics_answer_openmetrics_when_asked(aiohttp_server: Any, tmp_path: Path) -> None:
    server, _, _ = await start(aiohttp_server, tmp_path)
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"http://127.0.0.1:{server.port}/metrics", headers={"Accept": accept}
        ) as resp:
            content_type = resp.headers["Content-Type"]
            text = await resp.text()
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    assert "charset=utf-8" in content_type
    assert text.endswith("# EOF\n")
    # The strict parser accepts it.
    names = {f.name for f in openmetrics_families(text)}  # type: ignore[no-untyped-call]
    assert {"mirror_build_info", "process_cpu_seconds", "mirror_http_requests"} <= names


# Requests that are not HTTP ------------------------------------------------------------------


async def test_tls_on_the_plain_port_is_counted_and_logged_as_what_it_was(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    server, metrics, records = await start(aiohttp_server, tmp_path)

    answer = await raw(server.port, CLIENT_HELLO)
    garbage = await raw(server.port, b"\x01\x02 not http at all\r\n\r\n")

    assert answer.startswith(b"HTTP/1.0 400") and garbage.startswith(b"HTTP/1.0 400")
    assert requests_counted(metrics, "unparsable", "400") == 2
    messages = [r.getMessage() for r in records.records]
    assert len(messages) == 2, messages
    assert "UNKNOWN" not in " ".join(messages)
    assert messages[0] == (
        "127.0.0.1 unparsable request, answered 400: a TLS handshake on a plain-HTTP port "
        "(use http://, or configure server.tls_cert)"
    )
    assert messages[1].startswith("127.0.0.1 unparsable request, answered 400: ")
    assert records.records[0].levelno == logging.WARNING


async def test_unparsable_requests_are_counted_without_access_lines(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    server, metrics, records = await start(aiohttp_server, tmp_path, lines=False)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{server.port}/v2/") as resp:
            assert resp.status == 200
    await raw(server.port, CLIENT_HELLO)

    assert requests_counted(metrics, "unparsable", "400") == 1
    assert [r.getMessage().split(" ")[1] for r in records.records] == ["unparsable"]


# Access lines --------------------------------------------------------------------------------


async def test_the_access_log_byte_column_is_body_bytes(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    server, _, records = await start(aiohttp_server, tmp_path)
    base = f"http://127.0.0.1:{server.port}"
    async with aiohttp.ClientSession(headers={"User-Agent": "probe/2"}) as http:
        async with http.get(f"{base}/v2/") as resp:
            body = await resp.read()
        async with http.get(f"{base}/v2/x/manifests/Bad!") as resp:
            error = await resp.read()
        async with http.head(f"{base}/v2/") as resp:
            await resp.read()
        async with http.get(f"{base}/metrics") as resp:
            scraped = await resp.read()

    sent = [r.__dict__["access"]["bytes"] for r in records.records]
    assert sent == [len(body), len(error), 0, len(scraped)]
    assert body == b"{}" and records.records[0].getMessage().split(" ")[4] == "2"
    access = records.records[0].__dict__["access"]
    assert access["method"] == "GET" and access["path"] == "/v2/" and access["status"] == 200
    assert access["user_agent"] == "probe/2" and access["remote"] == "127.0.0.1"
    assert access["user"] == "" and access["duration_ms"] >= 0


# --log-format json, end to end ---------------------------------------------------------------


def test_serve_with_json_logs_writes_one_object_a_line(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIRROR_")}
    env["MIRROR_ENCRYPTION_KEK_FILE"] = str(tmp_path / "kek")
    serve = ["serve", "--listen", f"127.0.0.1:{port}", "--data-dir", str(tmp_path / "data")]
    proc = subprocess.Popen(
        [sys.executable, "-m", "mirror", *serve, "--log-format", "json", "--log-level", "info"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stderr is not None
        started = [json.loads(proc.stderr.readline()) for _ in range(2)]
        assert "listening on" in started[1]["message"]
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v2/", headers={"User-Agent": "probe/3"}
        )
        with urllib.request.urlopen(request) as resp:
            assert resp.read() == b"{}"
        access = json.loads(proc.stderr.readline())
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    for line in started:
        assert set(line) >= {"time", "level", "logger", "message"}
    assert started[0]["level"] == "WARNING" and "created key file" in started[0]["message"]
    assert started[1]["time"].endswith("+00:00") and started[1]["logger"] == "mirror"
    assert {k: access[k] for k in ("method", "path", "status", "bytes", "user_agent")} == {
        "method": "GET",
        "path": "/v2/",
        "status": 200,
        "bytes": 2,
        "user_agent": "probe/3",
    }
    assert access["remote"] == "127.0.0.1" and access["user"] == ""
    assert access["level"] == "INFO" and isinstance(access["duration_ms"], float)
