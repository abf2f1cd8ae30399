"""Managing retention through the admin HTTP API and the ``mirror retention`` command."""

from __future__ import annotations

import asyncio
import json
import random
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.peers.registry import Registry

from .conftest import Mirror, MirrorFactory
from .retention_helpers import DAY, on_disk, push_image, skopeo_pull

pytestmark = pytest.mark.integration

API = "/admin/v1/retention"


async def call(mirror: Mirror, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.request(method, f"{mirror.url}{API}{path}", json=body) as resp:
            text = await resp.text()
            return resp.status, json.loads(text) if text else None


@pytest.fixture
async def mirror(mirror_factory: MirrorFactory, upstream_registry: Registry) -> Mirror:
    return await mirror_factory({upstream_registry.host: upstream_registry.url})


async def test_policy_lifecycle_over_the_api(mirror: Mirror, upstream_registry: Registry) -> None:
    host = upstream_registry.host
    status, created = await call(
        mirror, "POST", "/policies", {"name": "stale", "not_pulled_days": 30, "exempt_tags": ["v*"]}
    )
    assert status == 201
    assert created["cooling_until"] is not None
    await call(mirror, "POST", "/policies", {"name": "other", "not_tagged_days": 1})

    status, attached = await call(mirror, "PUT", "/policies/stale/repositories/team/app")
    assert (status, attached["repositories"]) == (200, [f"{host}/team/app"])
    status, refused = await call(mirror, "PUT", "/policies/other/repositories/team/app")
    assert (status, refused["errors"][0]["code"]) == (409, "POLICY_CONFLICT")
    status, moved = await call(
        mirror, "PUT", "/policies/other/repositories/team/app", {"move": True}
    )
    assert (status, moved["repositories"]) == (200, [f"{host}/team/app"])
    status, edited = await call(mirror, "PATCH", "/policies/stale", {"not_pulled_days": 60})
    assert (status, edited["not_pulled_days"]) == (200, 60)
    status, _ = await call(mirror, "DELETE", "/policies/other/repositories/team/app")
    assert status == 200
    assert (await call(mirror, "DELETE", "/policies/other"))[0] == 204
    status, listed = await call(mirror, "GET", "/policies")
    assert [p["name"] for p in listed["policies"]] == ["global", "stale"]
    assert listed["policies"][0]["repositories"] == []


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        pytest.param("GET", "/policies/nope", None, 404, "POLICY_UNKNOWN", id="unknown"),
        pytest.param(
            "POST", "/policies", {"name": "x", "days": 1}, 400, "POLICY_INVALID", id="unknown-field"
        ),
        pytest.param("POST", "/policies", [1], 400, "REQUEST_INVALID", id="not-an-object"),
        pytest.param(
            "POST", "/policies", {"name": "global"}, 409, "POLICY_CONFLICT", id="duplicate"
        ),
        pytest.param(
            "PATCH",
            "/policies/global",
            {"not_pulled_days": "soon"},
            400,
            "POLICY_INVALID",
            id="bad-days",
        ),
        pytest.param(
            "DELETE", "/policies/global", None, 409, "POLICY_CONFLICT", id="delete-global"
        ),
        pytest.param(
            "PUT",
            "/policies/global/repositories/a/b",
            None,
            409,
            "POLICY_CONFLICT",
            id="attach-to-global",
        ),
        pytest.param(
            "PUT", "/policies/nope/repositories/BAD", None, 400, "NAME_INVALID", id="bad-repository"
        ),
        pytest.param("POST", "/runs", {"dry_run": "yes"}, 400, "POLICY_INVALID", id="bad-dry-run"),
    ],
)
async def test_api_refusals_are_spec_error_bodies(
    mirror: Mirror, method: str, path: str, body: Any, status: int, code: str
) -> None:
    got_status, got = await call(mirror, method, path, body)

    assert (got_status, got["errors"][0]["code"]) == (status, code)


async def test_cooling_period_shows_in_a_dry_run_and_then_deletes(
    mirror: Mirror, upstream_registry: Registry, rng: random.Random, tmp_path: Path
) -> None:
    image = push_image(upstream_registry, tmp_path, "test/cool", "v1", [rng.randbytes(5000)])
    await skopeo_pull(mirror, "test/cool:v1", tmp_path / "out")
    mirror.clock.advance(40 * DAY)
    await call(mirror, "POST", "/policies", {"name": "stale", "not_pulled_days": 30})
    await call(mirror, "PUT", "/policies/stale/repositories/test/cool")

    _, cooling = await call(mirror, "POST", "/runs", {"dry_run": False})
    assert [(i["action"], i["rule"]) for i in cooling["images"]] == [("keep", "cooling-period")]
    assert image.manifest_digest in on_disk(mirror)

    mirror.clock.advance(6 * 3600)
    _, dry = await call(mirror, "POST", "/runs", {"dry_run": True})
    assert [(i["action"], i["rule"]) for i in dry["images"]] == [("delete", "not-pulled")]
    _, real = await call(mirror, "POST", "/runs", {})
    assert real["evicted"] == 1 and real["bytes_freed"] > 5000
    assert image.manifest_digest not in on_disk(mirror)


async def run_cli(*args: str, cwd: Path | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mirror",
        "retention",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
    )
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_cli_manages_policies_and_runs_through_a_running_server(
    mirror: Mirror, upstream_registry: Registry, rng: random.Random, tmp_path: Path
) -> None:
    push_image(upstream_registry, tmp_path, "test/cli", "v1", [rng.randbytes(3000)])
    await skopeo_pull(mirror, "test/cli:v1", tmp_path / "out")
    url = ("--url", mirror.url)

    assert (
        await run_cli(
            *url,
            "policy",
            "create",
            "stale",
            "--not-pulled-days",
            "30",
            "--exempt-tag",
            "release-*",
        )
    )[0] == 0
    code, out, _ = await run_cli(*url, "policy", "attach", "stale", "test/cli")
    assert code == 0 and f"repositories: {upstream_registry.host}/test/cli" in out
    code, _, err = await run_cli(*url, "policy", "attach", "global", "test/cli")
    assert code == 1 and "POLICY_CONFLICT" in err
    code, out, _ = await run_cli(*url, "run", "--dry-run")
    assert code == 0
    assert "keep" in out and "policy=stale rule=pulled-recently" in out
    assert "dry run: 1 images, 0 would be deleted" in out
    code, out, _ = await run_cli(*url, "policy", "list", "--json")
    assert [p["name"] for p in json.loads(out)] == ["global", "stale"]


async def test_cli_on_the_data_directory_refuses_to_run_under_a_live_server(
    mirror: Mirror, tmp_path: Path
) -> None:
    data = ("--data-dir", str(mirror.data_dir))

    code, _, err = await run_cli(*data, "run", "--dry-run")
    assert code == 1 and "in use by a running mirror server" in err and "--url" in err
    # Policies are safe to edit next to the server: it reads them at every run.
    code, out, _ = await run_cli(*data, "policy", "create", "offline", "--not-tagged-days", "3")
    assert code == 0 and "not tagged for 3 days" in out
    assert [p.policy.name for p in mirror.retention.policies()] == ["global", "offline"]

    empty = ("--data-dir", str(tmp_path / "stopped"))
    # The default key file of a new cache lands beside its data directory.
    code, out, _ = await run_cli(*empty, "run", cwd=tmp_path)
    assert code == 0 and "0 images, 0 evicted" in out
    assert (tmp_path / "stopped.kek").exists()
