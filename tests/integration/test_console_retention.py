"""The console's retention page over HTTP: the same service calls as the admin API, refusals
shown with their reason, system administrators only."""

from __future__ import annotations

from typing import Any

from .conftest import AuthMirror
from .console_client import ConsoleUser
from .test_console import mirror, signed_in, users

__all__ = ["mirror", "users"]  # the fixtures this module shares with test_console


async def admin_of(mirror: AuthMirror) -> ConsoleUser:
    admin = ConsoleUser(mirror.node_url)
    assert await admin.sign_in("admin/admin", mirror.admin_token) == 200
    return admin


async def test_edit_the_global_policy_then_attach_and_remove_a_repository(
    mirror: AuthMirror,
) -> None:
    admin = await admin_of(mirror)
    try:
        form = {"not_pulled_days": "90", "not_tagged_days": "", "exempt_tags": "latest, v*"}
        status, _ = await admin.post("/console/retention/policies/global", form)
        assert status == 303
        edited = mirror.mirror.retention.policy("global").policy
        assert (edited.not_pulled_days, edited.not_tagged_days) == (90, None)
        assert edited.exempt_tags == ("latest", "v*")
        status, _ = await admin.post(
            "/console/retention/policies", {"name": "short", "not_tagged_days": "7"}
        )
        assert status == 303
        status, _ = await admin.post(
            "/console/retention/policies/short/repositories", {"repository": "library/alpine"}
        )
        assert status == 303
        attached = mirror.mirror.retention.policy("short").repositories
        assert attached == ("127.0.0.1:9/library/alpine",)  # resolved as a pull would be
        status, html = await admin.get("/console/retention")
        assert "127.0.0.1:9/library/alpine" in html and "Cooling until" in html
        status, _ = await admin.post(
            "/console/retention/policies/short/repositories/remove",
            {"repository": "127.0.0.1:9/library/alpine"},
        )
        assert status == 303 and mirror.mirror.retention.policy("short").repositories == ()
        status, _ = await admin.post("/console/retention/policies/short/delete", {})
        assert status == 303
        assert [p.policy.name for p in mirror.mirror.retention.policies()] == ["global"]
    finally:
        await admin.close()


async def test_a_refused_change_is_shown_with_its_reason(mirror: AuthMirror) -> None:
    admin = await admin_of(mirror)
    try:
        status, html = await admin.post("/console/retention/policies", {"name": "Bad Name"})
        assert status == 400 and "policy name must be lowercase" in html
        status, html = await admin.post(
            "/console/retention/policies/global", {"not_pulled_days": "soon"}
        )
        assert status == 400 and "not_pulled_days: expected a number of days" in html
        status, html = await admin.post(
            "/console/retention/policies/nope/repositories", {"repository": "acme/app"}
        )
        assert status == 404 and "nope" in html
    finally:
        await admin.close()


async def test_the_dry_run_needs_the_csrf_token_and_a_system_administrator(
    mirror: AuthMirror, users: dict[str, Any]
) -> None:
    admin = await admin_of(mirror)
    try:
        status, _ = await admin.post("/console/retention/dry-run", {}, csrf="")
        assert status == 403
        status, html = await admin.post("/console/retention/dry-run", {})
        assert status == 200 and "nothing was deleted" in html
    finally:
        await admin.close()
    boss = await signed_in(users, "boss")  # a tenancy's administrator, not the mirror's
    status, _ = await boss.post("/console/retention/dry-run", {})
    assert status == 403
    status, _ = await boss.post("/console/retention/policies", {"name": "mine"})
    assert status == 403 and len(mirror.mirror.retention.policies()) == 1
