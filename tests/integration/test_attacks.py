"""Held-out attacks on issue 10's hardening: bad input from anonymous clients and hostile
upstream answers must get spec error bodies (never a 500 or a dropped connection), and what
a hostile upstream says must not reach clients' headers unchecked."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from .conftest import MirrorFactory
from .fake_upstream import FakeUpstream

FAKE_HOST = "fake.test"

# Tags a hostile upstream lists: one would end the header line, one ends the Link's URL.
HOSTILE_TAGS = ["good", "zz\r\nX-Injected: 1", "zz>; rel=evil"]


@pytest.fixture
async def fake_server(aiohttp_server: Any) -> Any:
    """An upstream holding ``team/app:latest``, whose tags list is hostile: tags that are not
    tags, and a ``Link`` to another host."""
    fake = FakeUpstream()
    fake.add_image("team/app", "latest", [b"layer" * 100])
    app = fake.app()

    async def tags(request: web.Request) -> web.Response:
        return web.json_response(
            {"name": "team/app", "tags": HOSTILE_TAGS},
            headers={
                "Link": '<http://169.254.169.254/v2/team/app/tags/list?n=1&last=good>; rel="next"'
            },
        )

    app.router.add_get(r"/v2/{name:.+}/tags/list", tags)
    return await aiohttp_server(app, host="127.0.0.1")


async def fetch(url: str) -> tuple[int, bytes, dict[str, str]]:
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as resp:
            return resp.status, await resp.read(), dict(resp.headers)


def error_code(body: bytes) -> str:
    code: str = json.loads(body)["errors"][0]["code"]
    return code


@pytest.fixture
async def url(mirror_factory: MirrorFactory, fake_server: Any) -> str:
    """The mirror's URL, with ``team/app:latest`` pulled (so the catalog is not empty)."""
    mirror = await mirror_factory({FAKE_HOST: f"http://127.0.0.1:{fake_server.port}"})
    status, _, _ = await fetch(f"{mirror.url}/v2/team/app/manifests/latest")
    assert status == 200
    return mirror.url


async def test_an_empty_catalog_page_is_an_empty_list(url: str) -> None:
    status, body, headers = await fetch(f"{url}/v2/_catalog?n=0")
    assert status == 200
    assert json.loads(body) == {"repositories": []}
    assert "Link" not in headers


@pytest.mark.parametrize("path", ["/v2/_catalog", "/v2/team/app/tags/list"])
@pytest.mark.parametrize(
    "n", ["%C2%B2", "%D9%A3", "9" * 5000], ids=["superscript", "arabic", "huge"]
)
async def test_a_page_size_that_is_not_a_plain_number_is_pagination_number_invalid(
    url: str, path: str, n: str
) -> None:
    status, body, _ = await fetch(f"{url}{path}?n={n}")
    assert status == 400
    assert error_code(body) == "PAGINATION_NUMBER_INVALID"


@pytest.mark.parametrize("ns", ["%00", "a%0d%0aX-Injected:%201", "a%01b"])
async def test_an_ns_that_cannot_be_a_host_is_answered_not_dropped(url: str, ns: str) -> None:
    status, body, headers = await fetch(f"{url}/v2/team/app/manifests/latest?ns={ns}")
    assert status == 404
    assert error_code(body) == "NAME_UNKNOWN"
    assert "OCI-Namespace" not in headers and "X-Injected" not in headers


async def test_an_ns_that_is_a_host_is_still_echoed(url: str) -> None:
    _, _, headers = await fetch(f"{url}/v2/team/app/manifests/latest?ns={FAKE_HOST}")
    assert headers["OCI-Namespace"] == FAKE_HOST


async def test_a_hostile_tags_list_keeps_to_tags_and_to_the_mirror(url: str) -> None:
    status, body, headers = await fetch(f"{url}/v2/team/app/tags/list?n=2")
    assert status == 200
    assert json.loads(body)["tags"] == ["good"]
    assert "X-Injected" not in headers


async def test_a_hostile_upstream_link_is_rebuilt_on_the_mirrors_path(url: str) -> None:
    status, body, headers = await fetch(f"{url}/v2/team/app/tags/list")
    assert status == 200
    assert json.loads(body)["tags"] == ["good"]
    assert headers["Link"] == '</v2/team/app/tags/list?last=good&n=1>; rel="next"'
