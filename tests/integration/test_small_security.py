"""Smaller hardening items of issue 10: the challenge's realm, /metrics access, slow clients,
unknown ``MIRROR_*`` variables, login throttling per user and sealed rule passwords."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mirror.app.build import build_app
from mirror.cli.serve import runner_of, start_site
from mirror.clock import ManualClock
from mirror.config import load_config
from mirror.crypto.keys import Kek
from mirror.crypto.sealed import SecretSealer
from mirror.db.identity.records import PullThroughRule
from mirror.db.identity.store import IdentityStore
from mirror.metrics import Metrics
from mirror.web.access import quoted
from mirror.web.keys import AUTH

from .conftest import AuthMirror, AuthMirrorFactory, MirrorFactory

NOWHERE = {"example.test": "http://127.0.0.1:9"}


def port_of(mirror: AuthMirror) -> int:
    """The port the mirror listens on."""
    port = mirror.mirror.server.port
    assert port is not None
    return port


async def raw_request(port: int, request: bytes) -> bytes:
    """Send ``request`` bytes on a fresh connection; the whole answer until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


def header(answer: bytes, name: str) -> str:
    """The value of header ``name`` in a raw HTTP answer."""
    for line in answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name.lower().encode():
            return value.strip().decode()
    raise AssertionError(f"no {name} header in {answer!r}")


@pytest.fixture
async def locked(auth_mirror_factory: AuthMirrorFactory) -> AuthMirror:
    """An auth-enabled mirror whose upstream is never asked."""
    return await auth_mirror_factory(NOWHERE)


@pytest.mark.parametrize(
    "host",
    [
        'a",error="injected',
        'a"',
        "a\\b",
        "a b",
        "a,b",
        "evil.test/path?",
    ],
)
async def test_a_host_header_cannot_inject_into_the_challenge(
    locked: AuthMirror, host: str
) -> None:
    port = port_of(locked)
    request = f"GET /v2/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()

    answer = await raw_request(port, request)

    assert answer.startswith(b"HTTP/1.1 401")
    assert header(answer, "WWW-Authenticate") == (
        f'Bearer realm="http://127.0.0.1:{port}/auth/token",service="mirror"'
    )


@pytest.mark.parametrize("host", ["mirror.example:5000", "mirror", "10.0.0.1:80", "[::1]:5016"])
async def test_a_plain_host_header_names_the_realm(locked: AuthMirror, host: str) -> None:
    request = f"GET /v2/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()

    answer = await raw_request(port_of(locked), request)

    assert header(answer, "WWW-Authenticate") == (
        f'Bearer realm="http://{host}/auth/token",service="mirror"'
    )


async def test_a_configured_realm_and_service_are_quoted(
    auth_mirror_factory: AuthMirrorFactory,
) -> None:
    mirror = await auth_mirror_factory(NOWHERE, realm='https://m.example/t?a="b"', service='s"x')
    request = b"GET /v2/ HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n"

    answer = await raw_request(port_of(mirror), request)

    assert header(answer, "WWW-Authenticate") == (
        'Bearer realm="https://m.example/t?a=\\"b\\"",service="s\\"x"'
    )


def test_quoted_string_escapes_quotes_backslashes_and_drops_controls() -> None:
    assert quoted('a"b\\c\r\nd\x00e') == '"a\\"b\\\\cde"'


def basic(login: str, token: str) -> dict[str, str]:
    """Basic credentials as a header."""
    return {"Authorization": "Basic " + base64.b64encode(f"{login}:{token}".encode()).decode()}


async def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """Status and body of ``GET url``."""
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as resp:
        return resp.status, await resp.read()


def admin_of(mirror: AuthMirror) -> dict[str, str]:
    """The first administrator's credentials."""
    return basic("admin/admin", mirror.admin_token)


async def test_metrics_need_an_administrator_by_default_with_auth(locked: AuthMirror) -> None:
    user, token = locked.user("acme", "reader")

    anonymous, body = await get(f"{locked.url}/metrics")
    tenant, _ = await get(f"{locked.url}/metrics", basic(user, token))
    admin, exposition = await get(f"{locked.url}/metrics", admin_of(locked))

    assert (anonymous, tenant, admin) == (401, 403, 200)
    assert json.loads(body)["errors"][0]["code"] == "UNAUTHORIZED"
    assert b"mirror_http_requests_total" in exposition


async def test_metrics_may_be_anonymous_by_choice(aiohttp_server: Any, tmp_path: Path) -> None:
    config = load_config(
        overrides={
            "server": {"metrics": "anonymous"},
            "storage": {"data_dir": str(tmp_path / "data")},
            "encryption": {"kek_file": str(tmp_path / "mirror.kek")},
            "auth": {"enabled": True, "hash_cost": 256},
        },
        environ={},
    )
    app = build_app(config, clock=ManualClock(), announce=lambda _text: None)
    server = await aiohttp_server(app, host="127.0.0.1")

    status, body = await get(f"http://127.0.0.1:{server.port}/metrics")

    assert status == 200
    assert b"mirror_http_requests_total" in body


async def test_metrics_turned_off_answer_404(mirror_factory: MirrorFactory) -> None:
    mirror = await mirror_factory(NOWHERE, server={"metrics": "off"})

    status, body = await get(f"{mirror.url}/metrics")

    assert status == 404
    assert json.loads(body)["errors"][0]["code"] == "RESOURCE_UNKNOWN"


async def test_metrics_stay_anonymous_without_auth(mirror_factory: MirrorFactory) -> None:
    mirror = await mirror_factory(NOWHERE)

    status, _ = await get(f"{mirror.url}/metrics")

    assert status == 200


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_slow_clients_are_closed_after_the_keepalive_timeout(tmp_path: Path) -> None:
    port = free_port()
    config = load_config(
        overrides={
            "server": {"listen": f"127.0.0.1:{port}", "keepalive_timeout": 0.5},
            "storage": {"data_dir": str(tmp_path / "data")},
            "encryption": {"kek_file": str(tmp_path / "mirror.kek")},
            "upstreams": [{"host": "example.test", "url": "http://127.0.0.1:9"}],
            "default_upstream": "example.test",
        },
        environ={},
    )
    metrics = Metrics()
    runner = runner_of(config, build_app(config, clock=ManualClock(), metrics=metrics), metrics)
    await runner.setup()
    try:
        await start_site(config, runner)
        slow = [await asyncio.open_connection("127.0.0.1", port) for _ in range(20)]
        for i, (_, writer) in enumerate(slow):
            writer.write(b"GET /v2/ HT" if i % 2 else b"GET /v2/ HTTP/1.1\r\nHost: a\r\n")
            await writer.drain()

        closed = await asyncio.wait_for(
            asyncio.gather(*(reader.read() for reader, _ in slow)), timeout=5
        )
        answered = await raw_request(port, b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")

        assert closed == [b""] * len(slow)  # closed without an answer, none held open
        assert answered.startswith(b"HTTP/1.1 200")  # and then idle until closed as well
        for _, writer in slow:
            writer.close()
    finally:
        await runner.cleanup()


def identity_bytes(data_dir: Path) -> bytes:
    """Every byte of the identity database's files."""
    return b"".join(
        p.read_bytes() for p in sorted((data_dir / "identity").rglob("*")) if p.is_file()
    )


async def test_rule_passwords_are_sealed_in_the_identity_database(locked: AuthMirror) -> None:
    secret = "upstream-password-6f1c2b"
    locked.identity.create_tenancy("acme", 0)
    locked.identity.create_rule(
        PullThroughRule("acme", "hub", "https://registry.example", "bot", secret)
    )

    stored = locked.identity.rule("acme", "hub")
    assert stored is not None and stored.password is None and stored.has_password
    assert locked.identity.rule_password(stored) == secret
    assert secret.encode() not in identity_bytes(locked.mirror.data_dir)
    endpoint = locked.mirror.app[AUTH].endpoint_of(stored)
    assert (endpoint.username, endpoint.password) == ("bot", secret)


async def test_a_plain_text_rule_password_is_sealed_at_the_next_start(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    secret = "stored-before-sealing-93ad"
    data_dir = tmp_path / "data"
    before = IdentityStore(data_dir / "identity")  # as an older mirror stored it
    before.create_tenancy("acme", 0)
    before.create_rule(PullThroughRule("acme", "hub", "https://registry.example", "bot", secret))
    before.close()
    assert secret.encode() in identity_bytes(data_dir)
    config = load_config(
        overrides={
            "storage": {"data_dir": str(data_dir)},
            "encryption": {"kek_file": str(tmp_path / "mirror.kek")},
            "auth": {"enabled": True, "hash_cost": 256},
        },
        environ={},
    )
    app = build_app(config, clock=ManualClock(), announce=lambda _text: None)
    server = await aiohttp_server(app, host="127.0.0.1")
    identity = app[AUTH].identity

    rule = identity.rule("acme", "hub")
    assert rule is not None and rule.password is None
    assert identity.rule_password(rule) == secret
    await server.close()  # the database checkpointed and closed
    assert secret.encode() not in identity_bytes(data_dir)


def test_a_password_sealed_with_an_older_kek_is_resealed_with_the_current(
    tmp_path: Path,
) -> None:
    old, new = Kek("old", bytes(32)), Kek("new", bytes([1]) * 32)
    keks = {"old": old, "new": new}
    current = [old]
    store = IdentityStore(tmp_path / "identity")
    try:
        store.sealer = SecretSealer(lambda: current[0], keks.get, os.urandom)
        store.create_tenancy("acme", 0)
        store.create_rule(PullThroughRule("acme", "hub", "https://r.example", "bot", "pw-1"))
        current[0] = new  # rotated

        assert store.seal_rule_passwords(["acme"]) == 1
        rule = store.rule("acme", "hub")
        assert rule is not None and rule.sealed_password is not None
        assert rule.sealed_password.startswith("v1:new:")
        del keks["old"]  # retired
        assert store.rule_password(rule) == "pw-1"
    finally:
        store.close()
