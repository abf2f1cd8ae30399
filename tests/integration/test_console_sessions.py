"""Console sessions are kept in the data directory: a restart keeps everyone signed in, and
every process on one data directory shares them (a sign-out anywhere is a sign-out
everywhere)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestServer

from mirror.app.build import build_app
from mirror.clock import ManualClock
from mirror.config import load_config
from mirror.console.session import session_key

from .conftest import AUTH_TEST_HASH_COST
from .console_client import ConsoleUser


def _config(data_dir: Path) -> Any:
    return load_config(
        overrides={
            "storage": {"data_dir": str(data_dir)},
            "encryption": {"kek_file": str(data_dir.with_name("mirror.kek"))},
            "upstreams": [{"host": "127.0.0.1:9", "url": "http://127.0.0.1:9"}],
            "default_upstream": "127.0.0.1:9",
            "auth": {"enabled": True, "hash_cost": AUTH_TEST_HASH_COST},
        },
        environ={},
    )


async def _start(aiohttp_server: Any, data_dir: Path, said: list[str]) -> TestServer:
    app = build_app(_config(data_dir), clock=ManualClock(), announce=said.append)
    server: TestServer = await aiohttp_server(app, host="127.0.0.1")
    return server


async def test_a_session_survives_a_restart_and_a_sign_out_is_seen_by_the_next_process(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    data_dir, said = tmp_path / "data", list[str]()
    first = await _start(aiohttp_server, data_dir, said)
    browser = ConsoleUser(f"http://127.0.0.1:{first.port}")
    try:
        assert await browser.sign_in("admin/admin", said[0].rsplit(" ", 1)[1]) == 200
        cookies = {c.key: c.value for c in browser.http.cookie_jar}
        await first.close()
        # Another process on the same data directory (a restart, or a sibling worker).
        second = await _start(aiohttp_server, data_dir, said)
        browser.base = f"http://127.0.0.1:{second.port}"
        status, html = await browser.get("/console/tenancies")
        assert status == 200 and "admin" in html
        status, _ = await browser.post("/console/logout", {})  # the same CSRF token works
        assert status == 303
        await second.close()
        third = await _start(aiohttp_server, data_dir, said)
        replay = ConsoleUser(f"http://127.0.0.1:{third.port}")
        try:
            replay.http.cookie_jar.update_cookies(cookies)
            status, _ = await replay.get("/console/tenancies")
            assert status == 303  # signed out in the process before: worthless here too
        finally:
            await replay.close()
    finally:
        await browser.close()


async def test_the_data_directory_holds_hashed_session_ids_only(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    data_dir, said = tmp_path / "data", list[str]()
    server = await _start(aiohttp_server, data_dir, said)
    browser = ConsoleUser(f"http://127.0.0.1:{server.port}")
    try:
        assert await browser.sign_in("admin/admin", said[0].rsplit(" ", 1)[1]) == 200
        session_id = next(c.value for c in browser.http.cookie_jar if c.key == "mirror_console")
    finally:
        await browser.close()
    await server.close()
    stored = data_dir / "console" / "sessions"
    on_disk = b"".join(p.read_bytes() for p in stored.rglob("*") if p.is_file())
    assert session_id.encode() not in on_disk and browser.csrf.encode() not in on_disk
    assert session_key(session_id).encode() in on_disk
