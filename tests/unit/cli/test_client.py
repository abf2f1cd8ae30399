"""One admin client and one credential convention for ``mirror admin`` and ``mirror retention
--url``: ``--user`` or ``$MIRROR_USER`` (default ``admin/admin``), and the token from
``--token-file`` or ``$MIRROR_TOKEN``."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from mirror.cli.client import AdminClient, Credentials, Unreachable, credentials_of
from mirror.cli.main import main


def basic(login: str, token: str) -> str:
    return "Basic " + base64.b64encode(f"{login}:{token}".encode()).decode()


@pytest.mark.parametrize(
    ("login", "token_file", "environ", "expected"),
    [
        (None, None, {}, None),
        (None, None, {"MIRROR_USER": "acme/alice"}, None),
        (None, None, {"MIRROR_TOKEN": "t"}, Credentials("admin/admin", "t")),
        (
            None,
            None,
            {"MIRROR_TOKEN": "t", "MIRROR_USER": "acme/bob"},
            Credentials("acme/bob", "t"),
        ),
        (
            "acme/eve",
            None,
            {"MIRROR_TOKEN": "t", "MIRROR_USER": "acme/bob"},
            Credentials("acme/eve", "t"),
        ),
        ("acme/eve", "file", {"MIRROR_TOKEN": "t"}, Credentials("acme/eve", "from-file")),
    ],
    ids=["nothing", "user-only", "token-env", "user-env", "user-flag-wins", "token-file-wins"],
)
def test_credentials_come_from_flags_then_environment(
    tmp_path: Path,
    login: str | None,
    token_file: str | None,
    environ: dict[str, str],
    expected: Credentials | None,
) -> None:
    path = None
    if token_file:
        path = tmp_path / token_file
        path.write_text("from-file\n")
    assert credentials_of(login, path, environ) == expected


class Recorder:
    """An admin API that answers every request with one JSON body and remembers the requests."""

    def __init__(self, status: int, body: object) -> None:
        self.status, self.body = status, body
        self.seen: list[tuple[str, str, str | None, bytes]] = []

    async def handle(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization")
        self.seen.append((request.method, request.path, auth, await request.read()))
        return web.json_response(self.body, status=self.status)


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[Recorder, str]]:
    rec = Recorder(200, {"policies": []})
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", rec.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield rec, str(server.make_url("")).rstrip("/")
    await server.close()


async def test_the_client_sends_json_with_basic_auth_and_returns_error_answers(
    recorder: tuple[Recorder, str],
) -> None:
    rec, url = recorder
    client = AdminClient(url + "/", Credentials("acme/alice", "tok"), timeout=5)
    answer = await asyncio.to_thread(client.call, "POST", "/tenancies", {"name": "acme"})
    assert answer.ok and answer.json() == {"policies": []}
    assert rec.seen == [
        ("POST", "/admin/v1/tenancies", basic("acme/alice", "tok"), b'{"name": "acme"}')
    ]

    rec.status, rec.body = 409, {"errors": [{"code": "CONFLICT"}]}
    answer = await asyncio.to_thread(client.call, "GET", "/tenancies")
    assert (answer.ok, answer.status, answer.json()) == (False, 409, rec.body)


def test_an_unreachable_server_raises_naming_the_url() -> None:
    client = AdminClient("http://127.0.0.1:9", None, timeout=5)
    with pytest.raises(Unreachable) as err:
        client.call("GET", "/tenancies")
    assert err.value.url == "http://127.0.0.1:9/admin/v1/tenancies"


@pytest.mark.parametrize(
    "command",
    [["admin", "tenancy", "list"], ["retention", "policy", "list"]],
    ids=["admin", "retention"],
)
@pytest.mark.parametrize(
    ("flags", "environ"),
    [
        (["--user", "acme/alice"], {"MIRROR_TOKEN": "tok"}),
        ([], {"MIRROR_USER": "acme/alice", "MIRROR_TOKEN": "tok"}),
        (["--user", "acme/alice", "--token-file", "{token_file}"], {}),
    ],
    ids=["user-flag", "environment", "token-file"],
)
async def test_admin_and_retention_log_in_the_same_way(
    recorder: tuple[Recorder, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    command: list[str],
    flags: list[str],
    environ: dict[str, str],
) -> None:
    rec, url = recorder
    (tmp_path / "token").write_text("tok\n")
    for name in ("MIRROR_USER", "MIRROR_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    flags = [f.format(token_file=tmp_path / "token") for f in flags]
    argv = [command[0], "--url", url, *flags, *command[1:]]
    assert await asyncio.to_thread(main, argv) == 0
    assert [auth for _, _, auth, _ in rec.seen] == [basic("acme/alice", "tok")]


async def test_admin_without_a_token_exits_2_and_sends_nothing(
    recorder: tuple[Recorder, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rec, url = recorder
    monkeypatch.delenv("MIRROR_TOKEN", raising=False)
    assert await asyncio.to_thread(main, ["admin", "--url", url, "tenancy", "list"]) == 2
    assert "set MIRROR_TOKEN or --token-file" in capsys.readouterr().err
    assert rec.seen == []


async def test_retention_without_a_token_sends_no_credentials(
    recorder: tuple[Recorder, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rec, url = recorder
    monkeypatch.delenv("MIRROR_TOKEN", raising=False)
    monkeypatch.setenv("MIRROR_USER", "acme/alice")
    assert await asyncio.to_thread(main, ["retention", "--url", url, "policy", "list"]) == 0
    assert [auth for _, _, auth, _ in rec.seen] == [None]


def test_admin_reports_an_unreachable_server_and_exits_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIRROR_TOKEN", "tok")
    assert main(["admin", "--url", "http://127.0.0.1:9", "tenancy", "list"]) == 1
    assert "mirror admin: cannot reach http://127.0.0.1:9:" in capsys.readouterr().err
