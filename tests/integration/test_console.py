"""The web console over HTTP: sign-in, sessions, CSRF, and that every page applies the admin
API's authorisation (a user sees and changes only what the policies allow)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mirror.app.build import build_app
from mirror.config import load_config
from mirror.console.render import when
from mirror.db.identity.records import ADMINISTRATORS
from mirror.db.metadata import ManifestRecord, TagRecord
from mirror.hosted.names import hosted_key
from mirror.oci.digest import Digest
from mirror.web.keys import CACHE
from tests.peers.tls import make_test_ca

from .conftest import AuthMirror, AuthMirrorFactory, MirrorFactory
from .console_client import ConsoleUser, csrf_of
from .test_auth_tokens import basic

# Nothing here is pulled: the upstream is never reached.
UPSTREAMS = {"127.0.0.1:9": "http://127.0.0.1:9"}


@pytest.fixture
async def mirror(auth_mirror_factory: AuthMirrorFactory) -> AuthMirror:
    return await auth_mirror_factory(UPSTREAMS, max_failed_logins=3)


@pytest.fixture
async def users(mirror: AuthMirror) -> AsyncIterator[dict[str, Any]]:
    made: dict[str, Any] = {}
    for key, tenancy, name, groups in (
        ("boss", "acme", "boss", (ADMINISTRATORS,)),
        ("nobody", "acme", "nobody", ()),
        ("eve", "beta", "eve", (ADMINISTRATORS,)),
    ):
        login = mirror.user(tenancy, name, *groups)
        user = ConsoleUser(mirror.node_url)
        made[key] = (user, login)
    yield made
    for user, _ in made.values():
        await user.close()


async def signed_in(users: dict[str, Any], key: str) -> ConsoleUser:
    user: ConsoleUser = users[key][0]
    login, token = users[key][1]
    assert await user.sign_in(login, token) == 200
    return user


async def test_pages_need_a_session(mirror: AuthMirror) -> None:
    user = ConsoleUser(mirror.node_url)
    try:
        status, _ = await user.get("/console/t/acme/repositories")
        assert status == 303
        status, html = await user.get("/console/login")
        assert status == 200 and 'name="token"' in html
    finally:
        await user.close()


async def test_sign_in_sets_a_strict_httponly_cookie(
    mirror: AuthMirror, users: dict[str, Any]
) -> None:
    user, (login, token) = users["boss"]
    async with user.http.get(f"{mirror.node_url}/console/login") as resp:
        csrf = (await resp.text()).split('name="csrf" value="')[1].split('"')[0]
    form = {"csrf": csrf, "username": login, "token": token}
    async with user.http.post(
        f"{mirror.node_url}/console/login", data=form, allow_redirects=False
    ) as resp:
        assert resp.status == 303
        cookie = [v for v in resp.headers.getall("Set-Cookie") if v.startswith("mirror_console=")]
        assert cookie and "HttpOnly" in cookie[0] and "SameSite=Strict" in cookie[0]
        assert "Max-Age=" in cookie[0]
        # Plain HTTP (loopback): a Secure cookie would not come back; HTTPS sets it (below).
        assert "Secure" not in cookie[0]


async def test_a_wrong_token_is_refused_and_throttled_like_docker_login(
    mirror: AuthMirror, users: dict[str, Any]
) -> None:
    user, (login, _) = users["boss"]
    assert await user.sign_in(login, "mirror_wrong_token") == 401
    assert await user.sign_in(login, "mirror_wrong_token") == 401
    assert await user.sign_in(login, "mirror_wrong_token") == 401
    # The address is now locked out, whatever it sends.
    _, (_, good) = users["boss"]
    assert await user.sign_in(login, good) == 429


async def test_sign_in_without_the_login_csrf_token_is_refused(
    mirror: AuthMirror, users: dict[str, Any]
) -> None:
    user, (login, token) = users["boss"]
    form = {"username": login, "token": token}
    async with user.http.post(f"{mirror.node_url}/console/login", data=form) as resp:
        assert resp.status == 403


async def test_a_post_without_the_csrf_token_is_refused(users: dict[str, Any]) -> None:
    boss = await signed_in(users, "boss")
    status, _ = await boss.post("/console/t/acme/repositories", {"name": "app"}, csrf="")
    assert status == 403
    status, _ = await boss.post("/console/t/acme/repositories", {"name": "app"}, csrf="forged")
    assert status == 403
    status, html = await boss.get("/console/t/acme/repositories")
    assert "No repositories yet" in html


async def test_create_make_public_and_delete_with_confirmation(
    mirror: AuthMirror, users: dict[str, Any]
) -> None:
    boss = await signed_in(users, "boss")
    status, _ = await boss.post("/console/t/acme/repositories", {"name": "app"})
    assert status == 303
    assert mirror.identity.repository("acme", "app") is not None
    status, _ = await boss.post("/console/t/acme/repositories/app/visibility", {"public": "true"})
    assert status == 303 and mirror.identity.repository("acme", "app").public  # type: ignore[union-attr]
    status, html = await boss.get("/console/t/acme/repositories/app/delete")
    assert status == 200 and "Type <strong>app</strong>" in html
    status, _ = await boss.post("/console/t/acme/repositories/app/delete", {"confirm": "ap"})
    assert status == 400 and mirror.identity.repository("acme", "app") is not None
    status, _ = await boss.post("/console/t/acme/repositories/app/delete", {"confirm": "app"})
    assert status == 303 and mirror.identity.repository("acme", "app") is None


async def test_another_tenancy_sees_nothing_and_its_forged_posts_get_403(
    mirror: AuthMirror, users: dict[str, Any]
) -> None:
    boss = await signed_in(users, "boss")
    await boss.post("/console/t/acme/repositories", {"name": "secret"})
    eve = await signed_in(users, "eve")
    # As in the admin API: the list answers, filtered to what she may inspect (nothing).
    status, html = await eve.get("/console/t/acme/repositories")
    assert status == 200 and "secret" not in html and "Create repository" not in html
    status, html = await eve.get("/console/t/acme/repositories/secret")
    assert status == 403 and "DENIED" in html
    for path, form in (
        ("/console/t/acme/repositories", {"name": "planted"}),
        ("/console/t/acme/repositories/secret/visibility", {"public": "true"}),
        ("/console/t/acme/repositories/secret/delete", {"confirm": "secret"}),
    ):
        status, _ = await eve.post(path, form)  # her own valid CSRF token
        assert status == 403, path
    assert mirror.identity.repository("acme", "secret") is not None
    assert mirror.identity.repository("acme", "planted") is None
    status, _ = await eve.get("/console/retention")
    assert status == 403


async def test_a_user_without_manage_sees_no_forms_and_cannot_create(
    mirror: AuthMirror, users: dict[str, Any]
) -> None:
    nobody = await signed_in(users, "nobody")
    status, _ = await nobody.post("/console/t/acme/repositories", {"name": "app"})
    assert status == 403 and mirror.identity.repository("acme", "app") is None


async def test_sign_out_invalidates_the_session(users: dict[str, Any]) -> None:
    boss = await signed_in(users, "boss")
    cookies = {c.key: c.value for c in boss.http.cookie_jar}
    status, _ = await boss.post("/console/logout", {})
    assert status == 303
    # The old cookie, replayed, is worthless.
    replay = ConsoleUser(boss.base)
    try:
        replay.http.cookie_jar.update_cookies(cookies)
        status, _ = await replay.get("/console/t/acme/repositories")
        assert status == 303
    finally:
        await replay.close()


async def test_revoking_the_token_ends_the_session(
    mirror: AuthMirror, users: dict[str, Any]
) -> None:
    boss = await signed_in(users, "boss")
    for token in mirror.identity.tokens("acme", "boss"):
        mirror.identity.revoke_token("acme", "boss", token.id, mirror.mirror.clock.now())
    status, _ = await boss.get("/console/t/acme/repositories")
    assert status == 303


async def test_the_session_expires_after_its_lifetime(
    mirror: AuthMirror, users: dict[str, Any]
) -> None:
    boss = await signed_in(users, "boss")
    mirror.mirror.clock.advance(8 * 3600)
    status, _ = await boss.get("/console/t/acme/repositories")
    assert status == 303


async def test_the_repository_page_shows_images_and_layers(
    mirror: AuthMirror, users: dict[str, Any]
) -> None:
    boss = await signed_in(users, "boss")
    await boss.post("/console/t/acme/repositories", {"name": "app"})
    layer, config = b"layer bytes" * 10, b'{"created":"2026-01-02T03:04:05Z"}'
    store = mirror.mirror.app[CACHE]
    await store.put(Digest.of(layer), layer)
    await store.put(Digest.of(config), config)
    manifest = (
        '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
        f'"config":{{"mediaType":"application/vnd.oci.image.config.v1+json",'
        f'"digest":"{Digest.of(config)}","size":{len(config)}}},'
        f'"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip",'
        f'"digest":"{Digest.of(layer)}","size":{len(layer)}}}]}}'
    ).encode()
    mirror.mirror.services.metadata.link(
        hosted_key("acme"), "app", [Digest.of(layer), Digest.of(config)]
    )
    async with aiohttp.ClientSession() as http:
        headers = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
        headers |= basic(*users["boss"][1])
        async with http.put(
            f"{mirror.url}/v2/acme/app/manifests/v1", data=manifest, headers=headers
        ) as resp:
            assert resp.status == 201, await resp.text()
    status, html = await boss.get("/console/t/acme/repositories/app")
    assert status == 200
    assert str(Digest.of(manifest)) in html and str(Digest.of(layer)) in html
    assert "2026-01-02T03:04:05Z" in html and "docker pull" in html and ">v1<" in html


async def test_with_auth_off_the_cached_repositories_are_listed(
    mirror_factory: MirrorFactory,
) -> None:
    plain = await mirror_factory(UPSTREAMS)
    plain.clock.advance(86400)
    body = b'{"schemaVersion":2}'
    digest, kind = Digest.of(body), "application/vnd.oci.image.manifest.v1+json"
    metadata = plain.services.metadata
    metadata.set_manifest(digest, ManifestRecord(kind, len(body), (), plain.clock.now()))
    metadata.set_tag(
        "127.0.0.1:9", "library/alpine", "3.20", TagRecord(str(digest), kind, len(body), 0.0)
    )
    user = ConsoleUser(plain.url)
    try:
        status, html = await user.get("/console/")
    finally:
        await user.close()
    assert status == 200
    row = html.split("<td>127.0.0.1:9/library/alpine</td>")[1].split("</tr>")[0]
    cells = [c.split("</td>")[0] for c in row.split("<td>")[1:]]
    assert cells[:3] == ["pull-through", "public", "1"]
    assert cells[4] == when(plain.clock.now())  # cached by the mirror's clock, not the host's


async def test_with_auth_off_the_console_is_read_only_on_loopback(
    mirror_factory: MirrorFactory,
) -> None:
    plain = await mirror_factory(UPSTREAMS)
    user = ConsoleUser(plain.url)
    try:
        status, html = await user.get("/console/")
        assert status == 200 and "Read-only" in html and 'name="csrf"' not in html
        status, _ = await user.post("/console/retention/dry-run", {}, csrf="x")
        assert status == 403
        status, _ = await user.get("/console/retention")
        assert status == 200
    finally:
        await user.close()


async def test_the_cache_dashboard_is_for_system_administrators(
    mirror: AuthMirror, users: dict[str, Any]
) -> None:
    mirror.mirror.metrics.cache_hits.labels("blob").inc(3)
    mirror.mirror.metrics.cache_misses.labels("blob").inc(1)
    admin = ConsoleUser(mirror.node_url)
    try:
        assert await admin.sign_in("admin/admin", mirror.admin_token) == 200
        status, html = await admin.get("/console/cache")
        assert status == 200 and "75.0 %" in html and "no capacity limit" in html
    finally:
        await admin.close()
    boss = await signed_in(users, "boss")  # a tenancy's administrator: not the whole mirror's
    status, html = await boss.get("/console/cache")
    assert status == 403 and "75.0" not in html


def test_console_enabled_false_serves_no_console(tmp_path: Path) -> None:
    def console_routes(enabled: bool) -> list[str]:
        config = load_config(
            overrides={
                "storage": {"data_dir": str(tmp_path / "data")},
                "encryption": {"kek_file": str(tmp_path / "mirror.kek")},
                "console": {"enabled": enabled},
            },
            environ={},
        )
        resources = build_app(config).router.resources()
        return [r.canonical for r in resources if r.canonical.startswith("/console")]

    assert console_routes(True) == ["/console"]
    assert console_routes(False) == []


async def test_over_https_the_session_cookie_is_secure(aiohttp_server: Any, tmp_path: Path) -> None:
    ca = make_test_ca(tmp_path / "ca")
    said: list[str] = []
    config = load_config(
        overrides={
            "storage": {"data_dir": str(tmp_path / "data")},
            "encryption": {"kek_file": str(tmp_path / "mirror.kek")},
            "upstreams": [{"host": h, "url": u} for h, u in UPSTREAMS.items()],
            "default_upstream": next(iter(UPSTREAMS)),
            "auth": {"enabled": True, "hash_cost": 256},
        },
        environ={},
    )
    app = build_app(config, announce=said.append)
    server = await aiohttp_server(app, host="127.0.0.1", ssl=ca.server_context())
    base = f"https://127.0.0.1:{server.port}"
    token = said[0].rsplit(" ", 1)[1]
    connector = aiohttp.TCPConnector(ssl=ca.client_context())
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(connector=connector, cookie_jar=jar) as http:
        async with http.get(f"{base}/console/login") as resp:
            csrf = csrf_of(await resp.text())
            assert "Secure" in resp.headers["Set-Cookie"]
        form = {"csrf": csrf, "username": "admin/admin", "token": token}
        async with http.post(f"{base}/console/login", data=form, allow_redirects=False) as resp:
            assert resp.status == 303
            cookie = [v for v in resp.headers.getall("Set-Cookie") if "mirror_console=" in v]
            assert "Secure" in cookie[0] and "HttpOnly" in cookie[0]


async def test_system_administrators_list_every_tenancy_and_no_one_else(
    mirror: AuthMirror, users: dict[str, Any]
) -> None:
    admin = ConsoleUser(mirror.node_url)
    try:
        assert await admin.sign_in("admin/admin", mirror.admin_token) == 200
        status, html = await admin.get("/console/tenancies")
        assert status == 200
        for name in ("admin", "acme", "beta"):
            assert f'href="/console/t/{name}/repositories"' in html
    finally:
        await admin.close()
    boss = await signed_in(users, "boss")
    status, html = await boss.get("/console/tenancies")
    assert status == 403 and "beta" not in html
