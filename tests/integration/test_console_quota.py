"""The console's quota page and tenancy create/delete: a tenancy's administrators see what it
stores against its limits, system administrators set the limits (and the registry API then
refuses a push over them) and create and delete tenancies, the latter once its name was typed
again; each with the admin API's authorisation, and every form's CSRF token checked."""

from __future__ import annotations

import hashlib
import html as markup
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from mirror.db.identity.records import ADMINISTRATORS
from mirror.web.keys import QUOTAS

from .conftest import AuthMirror, AuthMirrorFactory
from .console_client import ConsoleUser
from .test_auth_tokens import basic

pytestmark = pytest.mark.integration

UPSTREAMS = {"127.0.0.1:9": "http://127.0.0.1:9"}
LIMITS_FORM = 'action="/console/t/acme/quota"'


@pytest.fixture
async def mirror(auth_mirror_factory: AuthMirrorFactory) -> AuthMirror:
    return await auth_mirror_factory(UPSTREAMS)


@pytest.fixture
async def people(mirror: AuthMirror) -> AsyncIterator[dict[str, tuple[ConsoleUser, Any]]]:
    logins = {
        "root": ("admin/admin", mirror.admin_token),
        "boss": mirror.user("acme", "boss", ADMINISTRATORS),
        "member": mirror.user("acme", "member"),
        "eve": mirror.user("beta", "eve", ADMINISTRATORS),
    }
    made = {}
    for key, (login, token) in logins.items():
        user = ConsoleUser(mirror.node_url)
        assert await user.sign_in(login, token) == 200, key
        made[key] = (user, basic(login, token))
    yield made
    for user, _ in made.values():
        await user.close()


def console(people: dict[str, tuple[ConsoleUser, Any]], key: str) -> ConsoleUser:
    return people[key][0]


async def push_blob(mirror: AuthMirror, who: dict[str, str], name: str, data: bytes) -> Any:
    """A monolithic upload through the registry API: its status and error code."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    async with aiohttp.ClientSession() as http:
        url = f"{mirror.url}/v2/{name}/blobs/uploads/"
        async with http.post(url, data=data, params={"digest": digest}, headers=who) as resp:
            body = await resp.json() if resp.content_type.endswith("json") else None
            code = body["errors"][0]["code"] if body and "errors" in body else None
            return resp.status, code


def limits(mirror: AuthMirror, tenancy: str = "acme") -> tuple[int | None, int | None]:
    found = mirror.mirror.app[QUOTAS].limits(tenancy)
    return found.bytes, found.repositories


async def test_a_tenancy_administrator_sees_its_usage_and_limits_but_no_limits_form(
    mirror: AuthMirror, people: dict[str, tuple[ConsoleUser, Any]]
) -> None:
    status, _ = await push_blob(mirror, people["boss"][1], "acme/app", b"x" * 700)
    assert status == 201
    mirror.mirror.app[QUOTAS].set_limits("acme", None)
    status, page = await console(people, "boss").get("/console/t/acme/quota")
    assert status == 200
    assert "700 B (700 bytes)" in page and "unlimited" in page
    assert LIMITS_FORM not in page and "set by the mirror's system administrators" in page
    status, page = await console(people, "root").get("/console/t/acme/quota")
    assert status == 200 and LIMITS_FORM in page and "700 B (700 bytes)" in page


async def test_another_tenancys_administrator_sees_none_of_it_and_her_forged_posts_get_403(
    mirror: AuthMirror, people: dict[str, tuple[ConsoleUser, Any]]
) -> None:
    await push_blob(mirror, people["boss"][1], "acme/app", b"y" * 321)
    eve = console(people, "eve")
    for path in ("/console/t/acme/quota", "/console/tenancies", "/console/tenancies/acme/delete"):
        status, page = await eve.get(path)
        assert status == 403 and "321" not in page and 'name="csrf"' not in page.split("<main")[1]
    # With her own valid CSRF token: refused, nothing changed.
    for path, form in (
        ("/console/t/acme/quota", {"bytes": "1", "repositories": "1"}),
        ("/console/t/acme/quota/reset", {}),
        ("/console/tenancies", {"name": "planted"}),
        ("/console/tenancies/acme/delete", {"confirm": "acme"}),
    ):
        assert (await eve.post(path, form))[0] == 403, path
    # Acme's own administrators and members may not set its limits either.
    for key in ("boss", "member"):
        status, _ = await console(people, key).post("/console/t/acme/quota", {"bytes": "1"})
        assert status == 403, key
    assert (await console(people, "member").get("/console/t/acme/quota"))[0] == 403
    assert limits(mirror) == (None, None)
    assert mirror.identity.tenancy("acme") is not None
    assert mirror.identity.tenancy("planted") is None


async def test_a_post_without_the_csrf_token_is_refused(
    mirror: AuthMirror, people: dict[str, tuple[ConsoleUser, Any]]
) -> None:
    root = console(people, "root")
    for path, form in (
        ("/console/t/acme/quota", {"bytes": "1"}),
        ("/console/tenancies", {"name": "gamma"}),
        ("/console/tenancies/acme/delete", {"confirm": "acme"}),
    ):
        assert (await root.post(path, form, csrf=""))[0] == 403, path
    assert limits(mirror) == (None, None)
    assert mirror.identity.tenancy("gamma") is None
    assert mirror.identity.tenancy("acme") is not None


async def test_a_limit_set_in_the_console_refuses_a_push_over_it_with_403_denied(
    mirror: AuthMirror, people: dict[str, tuple[ConsoleUser, Any]]
) -> None:
    root, boss = console(people, "root"), people["boss"][1]
    status, _ = await root.post("/console/t/acme/quota", {"bytes": "1000", "repositories": ""})
    assert status == 303 and limits(mirror) == (1000, None)
    assert await push_blob(mirror, boss, "acme/app", b"a" * 600) == (201, None)
    assert await push_blob(mirror, boss, "acme/app", b"b" * 500) == (403, "DENIED")
    status, page = await console(people, "boss").get("/console/t/acme/quota")
    assert "600 B (600 bytes)" in page and "60.0 %" in page
    status, _ = await root.post("/console/t/acme/quota", {"bytes": "", "repositories": "1"})
    assert status == 303 and limits(mirror) == (None, 1)
    assert await push_blob(mirror, boss, "acme/other", b"c" * 10) == (403, "DENIED")
    assert await push_blob(mirror, boss, "acme/app", b"b" * 500) == (201, None)
    assert (await root.post("/console/t/acme/quota/reset", {}))[0] == 303
    assert await push_blob(mirror, boss, "acme/other", b"c" * 10) == (201, None)


@pytest.mark.parametrize("value", ["-1", "ten", "1.5"])
async def test_a_limit_that_is_not_a_whole_number_is_shown_and_not_saved(
    mirror: AuthMirror, people: dict[str, tuple[ConsoleUser, Any]], value: str
) -> None:
    status, page = await console(people, "root").post("/console/t/acme/quota", {"bytes": value})
    assert status == 400
    assert 'role="alert">bytes: expected a whole number &gt;= 0' in page
    assert limits(mirror) == (None, None)


async def test_a_system_administrator_creates_a_tenancy_and_deletes_it_once_its_name_is_typed(
    mirror: AuthMirror, people: dict[str, tuple[ConsoleUser, Any]]
) -> None:
    root = console(people, "root")
    status, _ = await root.post("/console/tenancies", {"name": "gamma"})
    assert status == 303 and mirror.identity.tenancy("gamma") is not None
    status, page = await root.post("/console/tenancies", {"name": "Not Valid!"})
    assert (
        status == 400 and 'role="alert"' in page and mirror.identity.tenancy("Not Valid!") is None
    )
    status, page = await root.get("/console/tenancies")
    assert status == 200 and "/console/tenancies/gamma/delete" in page
    assert "/console/tenancies/admin/delete" not in page
    # Content of the tenancy, to see it go with it.
    login, token = mirror.user("gamma", "g", ADMINISTRATORS)
    assert (await push_blob(mirror, basic(login, token), "gamma/app", b"g" * 50))[0] == 201
    status, page = await root.get("/console/tenancies/gamma/delete")
    assert status == 200 and "Type <strong>gamma</strong> to confirm" in page
    status, page = await root.post("/console/tenancies/gamma/delete", {"confirm": "gamm"})
    assert status == 400 and markup.escape("Type gamma to confirm.") in page
    assert mirror.identity.tenancy("gamma") is not None
    status, _ = await root.post("/console/tenancies/gamma/delete", {"confirm": "gamma"})
    assert status == 303 and mirror.identity.tenancy("gamma") is None
    assert mirror.mirror.app[QUOTAS].usage("gamma").bytes == 0
    status, _ = await root.post("/console/tenancies/admin/delete", {"confirm": "admin"})
    assert status == 400 and mirror.identity.tenancy("admin") is not None
    assert (await root.get("/console/tenancies/nosuch/delete"))[0] == 404
