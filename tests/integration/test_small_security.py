"""Smaller hardening items of issue 10: the challenge's realm, /metrics access, slow clients,
unknown ``MIRROR_*`` variables, login throttling per user and sealed rule passwords."""

from __future__ import annotations

import asyncio

import pytest

from mirror.web.access import quoted

from .conftest import AuthMirror, AuthMirrorFactory

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
