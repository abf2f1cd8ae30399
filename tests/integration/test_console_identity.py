"""The console's tenancy pages over HTTP: users, groups, access policies (a grammar error
shown at its column), pull-through rules and auth tokens (shown once); each with the admin
API's authorisation."""

from __future__ import annotations

import html as markup
from typing import Any

from .conftest import AuthMirror
from .console_client import ConsoleUser
from .test_console import mirror, signed_in, users

__all__ = ["mirror", "users"]  # the fixtures this module shares with test_console


async def test_a_tenancy_administrator_creates_a_user_in_a_group(
    mirror: AuthMirror, users: dict[str, Any]
) -> None:
    boss = await signed_in(users, "boss")
    status, _ = await boss.post("/console/t/acme/groups", {"name": "devs"})
    assert status == 303
    status, _ = await boss.post("/console/t/acme/users", {"name": "dev", "groups": "devs"})
    assert status == 303
    assert set(mirror.identity.groups_of("acme", "dev")) == {"devs"}
    status, page = await boss.get("/console/t/acme/users")
    assert status == 200 and ">dev<" in page
    status, _ = await boss.post("/console/t/acme/groups/devs/members/remove", {"user": "dev"})
    assert status == 303 and "devs" not in set(mirror.identity.groups_of("acme", "dev"))


async def test_users_groups_policies_and_rules_are_for_tenancy_administrators(
    mirror: AuthMirror, users: dict[str, Any]
) -> None:
    nobody = await signed_in(users, "nobody")
    eve = await signed_in(users, "eve")
    for who in (nobody, eve):
        for path in ("users", "groups", "policies", "rules"):
            status, _ = await who.get(f"/console/t/acme/{path}")
            assert status == 403, path
        status, _ = await who.post("/console/t/acme/users", {"name": "planted"})
        assert status == 403
        status, _ = await who.post(
            "/console/t/acme/policies", {"name": "p", "statements": "allow group x to use repos"}
        )
        assert status == 403
    assert mirror.identity.user("acme", "planted") is None
    assert mirror.identity.policies("acme") == []


async def test_a_policy_that_does_not_parse_is_shown_at_its_column_and_not_saved(
    mirror: AuthMirror, users: dict[str, Any]
) -> None:
    boss = await signed_in(users, "boss")
    statements = "allow group devs to read repos in tenancy\nallow group devs to frob repos"
    status, page = await boss.post(
        "/console/t/acme/policies", {"name": "devs", "statements": statements}
    )
    assert status == 400
    assert mirror.identity.policies("acme") == []
    # The second statement, a caret under "frob" (column 21).
    shown = markup.unescape(page.split('<pre class="grammar"')[1].split("</pre>")[0])
    line, caret = shown.split("<code>")[1].split("\n")[:2]
    assert line == "allow group devs to frob repos"
    assert caret.index("^") == line.index("frob") and "column 21" in caret
    assert "frob repos" in page  # the draft is kept for fixing
    status, _ = await boss.post(
        "/console/t/acme/policies",
        {"name": "devs", "statements": "allow group devs to read repos in tenancy"},
    )
    assert status == 303
    assert [p.name for p in mirror.identity.policies("acme")] == ["devs"]


async def test_a_new_auth_token_is_shown_once_and_signs_in(
    mirror: AuthMirror, users: dict[str, Any]
) -> None:
    nobody = await signed_in(users, "nobody")  # a user manages its own tokens
    status, page = await nobody.post("/console/t/acme/users/nobody/tokens", {"description": "ci"})
    assert status == 201
    secret = page.split('id="new-token" readonly value="')[1].split('"')[0]
    assert secret.startswith("mrt_")
    status, page = await nobody.get("/console/t/acme/users/nobody/tokens")
    assert status == 200 and secret not in page and ">ci<" in page
    fresh = ConsoleUser(mirror.node_url)
    try:
        assert await fresh.sign_in("acme/nobody", secret) == 200
    finally:
        await fresh.close()
    status, _ = await nobody.get("/console/t/acme/users/boss/tokens")
    assert status == 403


async def test_revoking_a_token_in_the_console_revokes_it(
    mirror: AuthMirror, users: dict[str, Any]
) -> None:
    boss = await signed_in(users, "boss")
    status, _ = await boss.post("/console/t/acme/users/nobody/tokens", {"description": "old"})
    assert status == 201
    token = next(t for t in mirror.identity.tokens("acme", "nobody") if t.description == "old")
    status, _ = await boss.post(f"/console/t/acme/users/nobody/tokens/{token.id}/revoke", {})
    assert status == 303
    revoked = next(t for t in mirror.identity.tokens("acme", "nobody") if t.id == token.id)
    assert not revoked.active


async def test_rules_are_created_on_the_allow_list_only_and_deleted(
    mirror: AuthMirror, users: dict[str, Any]
) -> None:
    boss = await signed_in(users, "boss")
    status, page = await boss.post(
        "/console/t/acme/rules", {"prefix": "hub", "url": "https://not-allowed.example"}
    )
    assert status == 403 and mirror.identity.rules("acme") == []
    status, _ = await boss.post(
        "/console/t/acme/rules",
        {"prefix": "hub", "url": "http://127.0.0.1:9", "username": "u", "password": "hunter2"},
    )
    assert status == 303
    status, page = await boss.get("/console/t/acme/rules")
    assert "http://127.0.0.1:9" in page and "password set" in page and "hunter2" not in page
    status, _ = await boss.post("/console/t/acme/rules/hub/delete", {})
    assert status == 303 and mirror.identity.rules("acme") == []
