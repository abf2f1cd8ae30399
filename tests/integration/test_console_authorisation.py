"""The console offers a form only when the viewer's policies allow what its POST does (the
same check), and the POST still refuses a forged one with 403."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from .conftest import AuthMirror, AuthMirrorFactory
from .console_client import ConsoleUser

UPSTREAMS = {"127.0.0.1:9": "http://127.0.0.1:9"}
CREATE_FORM = 'action="/console/t/acme/repositories" class="card inline"'


@pytest.fixture
async def mirror(auth_mirror_factory: AuthMirrorFactory) -> AuthMirror:
    return await auth_mirror_factory(UPSTREAMS)


@pytest.fixture
async def people(mirror: AuthMirror) -> AsyncIterator[dict[str, ConsoleUser]]:
    devs = "allow group devs to manage repos in tenancy where target.repo.name =~ 'team/*'"
    readers = "allow group readers to inspect repos in tenancy"
    logins = {
        "dev": mirror.user("acme", "dev", "devs", policy=[devs]),
        "reader": mirror.user("acme", "reader", "readers", policy=[readers]),
    }
    made = {}
    for key, (login, token) in logins.items():
        made[key] = ConsoleUser(mirror.node_url)
        assert await made[key].sign_in(login, token) == 200
    yield made
    for user in made.values():
        await user.close()


async def test_the_create_form_is_shown_to_whom_a_policy_grants_manage_on_some_name(
    mirror: AuthMirror, people: dict[str, ConsoleUser]
) -> None:
    dev, reader = people["dev"], people["reader"]
    status, html = await dev.get("/console/t/acme/repositories")
    assert status == 200 and CREATE_FORM in html
    assert "Names you may create: <code>=~ &#39;team/*&#39;</code>" in html
    assert (await dev.post("/console/t/acme/repositories", {"name": "team/app"}))[0] == 303
    # The form is offered, but the POST checks the name it is given.
    assert (await dev.post("/console/t/acme/repositories", {"name": "other"}))[0] == 403
    assert mirror.identity.repository("acme", "other") is None
    status, html = await reader.get("/console/t/acme/repositories")
    assert status == 200 and "team/app" in html and CREATE_FORM not in html
    status, _ = await reader.post("/console/t/acme/repositories", {"name": "team/forged"})
    assert status == 403 and mirror.identity.repository("acme", "team/forged") is None


async def test_make_public_and_delete_are_offered_to_managers_only_and_refused_if_forged(
    mirror: AuthMirror, people: dict[str, ConsoleUser]
) -> None:
    dev, reader = people["dev"], people["reader"]
    assert (await dev.post("/console/t/acme/repositories", {"name": "team/app"}))[0] == 303
    status, html = await dev.get("/console/t/acme/repositories/team/app")
    assert status == 200 and "Make public" in html and "/team/app/delete" in html
    status, html = await reader.get("/console/t/acme/repositories/team/app")
    assert status == 200 and "Make public" not in html and "/delete" not in html
    status, _ = await reader.get("/console/t/acme/repositories/team/app/delete")
    assert status == 403
    for path, form in (
        ("/console/t/acme/repositories/team/app/visibility", {"public": "true"}),
        ("/console/t/acme/repositories/team/app/delete", {"confirm": "team/app"}),
    ):
        status, _ = await reader.post(path, form)  # with her own valid CSRF token
        assert status == 403, path
    record = mirror.identity.repository("acme", "team/app")
    assert record is not None and not record.public


async def test_tenancy_administration_pages_and_their_forms_are_refused_to_members(
    people: dict[str, ConsoleUser],
) -> None:
    dev = people["dev"]
    for page in ("users", "groups", "policies", "rules"):
        status, html = await dev.get(f"/console/t/acme/{page}")
        assert status == 403 and 'name="csrf"' not in html.split("<main", 1)[-1], page
    status, _ = await dev.post("/console/t/acme/policies", {"name": "mine", "statements": "x"})
    assert status == 403
    status, _ = await dev.post("/console/t/acme/users", {"name": "planted"})
    assert status == 403
