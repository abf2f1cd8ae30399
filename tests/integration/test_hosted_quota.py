"""Per-tenancy quotas of hosted repositories (issue 11): stored bytes and repository count,
enforced at upload completion, mount, manifest PUT and repository creation, answered 403
DENIED naming the quota; usage exact across restarts and deletes, in /metrics and the admin
API. Also: anonymous pushes on a loopback seeding station, and retention policies that name
hosted repositories as their users do."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from mirror.app.build import build_app
from mirror.cli.main import main as mirror_main
from mirror.clock import ManualClock
from mirror.config import load_config
from mirror.db.identity.records import ADMINISTRATORS
from mirror.hosted.names import hosted_key
from mirror.metrics import Metrics
from mirror.oci.digest import Digest
from mirror.oci.media import OCI_MANIFEST
from mirror.testing.images import build_image, random_layer
from mirror.web.keys import AUTH, CACHE, QUOTAS, SERVICES
from tests.integration.conftest import AUTH_REGISTRY_HOST, AUTH_TEST_HASH_COST
from tests.integration.fake_upstream import FakeUpstream
from tests.peers.skopeo import skopeo_copy_async

DAY = 86400.0


@dataclass
class Hosted:
    """A running auth-enabled mirror and its users' Basic credentials."""

    server: TestServer
    app: web.Application
    clock: ManualClock
    metrics: Metrics
    logins: dict[str, str]

    @property
    def url(self) -> str:
        return f"http://{AUTH_REGISTRY_HOST}:{self.server.port}"

    def headers(self, who: str) -> dict[str, str]:
        if who == "anonymous":
            return {}
        return {"Authorization": "Basic " + base64.b64encode(self.logins[who].encode()).decode()}

    def linked(self, name: str, digest: Digest) -> bool:
        tenancy, _, repo = name.partition("/")
        return self.app[SERVICES].metadata.linked(hosted_key(tenancy), repo, digest)

    def sample(self, metric: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(metric, labels)


Start = Callable[..., Awaitable[Hosted]]


def _config(data_dir: Path, hosted: dict[str, Any], retention: dict[str, Any]) -> Any:
    return load_config(
        overrides={
            "storage": {"data_dir": str(data_dir), "chunk_size": 4096},
            "upstreams": [{"host": "upstream.test", "url": "http://127.0.0.1:9"}],
            "default_upstream": "upstream.test",
            "encryption": {"kek_file": str(data_dir.with_name("data.kek"))},
            "hosted": hosted,
            "retention": {"interval": 0, **retention},
            "auth": {
                "enabled": True,
                "hash_cost": AUTH_TEST_HASH_COST,
                "default_tenancy": "nodes",
                "registry_hosts": [AUTH_REGISTRY_HOST],
            },
        },
        environ={},
    )


@pytest.fixture
async def start(aiohttp_server: Any, tmp_path: Path) -> Start:
    """Start (or restart on the same data directory) a mirror with tenancies acme and other,
    each with an administrator and a pusher, and an operator in the admin tenancy."""
    logins: dict[str, str] = {}

    async def run(
        *,
        fresh: bool = True,
        clock: ManualClock | None = None,
        retention: dict[str, Any] | None = None,
        **hosted: Any,
    ) -> Hosted:
        clock = clock or ManualClock()
        metrics = Metrics()
        config = _config(tmp_path / "data", hosted, retention or {})
        app = build_app(config, clock=clock, metrics=metrics, announce=lambda _: None)
        server = await aiohttp_server(app, host="127.0.0.1")
        if fresh:
            store, now = app[AUTH].identity, clock.now()
            users = [("admin", "operator", ADMINISTRATORS)]
            for tenancy in ("acme", "other"):
                store.create_tenancy(tenancy, now)
                store.create_group(tenancy, "pushers")
                store.set_policy(tenancy, "p", ("allow group pushers to use repos in tenancy",))
                users += [(tenancy, "boss", ADMINISTRATORS), (tenancy, "pusher", "pushers")]
            for tenancy, user, group in users:
                store.create_user(tenancy, user, now)
                store.set_member(tenancy, group, user, True)
                _, token = store.create_token(tenancy, user, "t", now, cost=AUTH_TEST_HASH_COST)
                logins[f"{tenancy}-{user}"] = f"{tenancy}/{user}:{token}"
        return Hosted(server, app, clock, metrics, logins)

    return run


async def call(
    mirror: Hosted,
    method: str,
    path: str,
    who: str = "acme-boss",
    *,
    data: bytes | None = None,
    json_body: Any = None,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """One request: its status and JSON body (``None`` when it has none)."""
    async with aiohttp.ClientSession() as http:
        async with http.request(
            method,
            mirror.url + path,
            data=data,
            json=json_body,
            params=params,
            headers={**mirror.headers(who), **(headers or {})},
        ) as resp:
            raw = await resp.read()
            return resp.status, json.loads(raw) if raw and resp.content_type.endswith(
                "json"
            ) else None


def digest_of(data: bytes) -> Digest:
    return Digest("sha256", hashlib.sha256(data).hexdigest())


async def push_blob(mirror: Hosted, name: str, data: bytes, who: str = "acme-boss") -> Any:
    """A monolithic upload; (status, body)."""
    return await call(
        mirror,
        "POST",
        f"/v2/{name}/blobs/uploads/",
        who,
        data=data,
        params={"digest": str(digest_of(data))},
    )


def manifest_of(config: bytes, *layers: bytes) -> bytes:
    def descriptor(blob: bytes, media_type: str) -> dict[str, Any]:
        return {"mediaType": media_type, "digest": str(digest_of(blob)), "size": len(blob)}

    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(config, "application/vnd.oci.image.config.v1+json"),
        "layers": [descriptor(b, "application/vnd.oci.image.layer.v1.tar") for b in layers],
    }
    return json.dumps(doc).encode()


async def push_image(
    mirror: Hosted, name: str, tag: str, seed: int, size: int = 300
) -> tuple[bytes, list[bytes]]:
    """Push a config, one layer and a manifest tagged ``tag``; the manifest and blobs."""
    rng = random.Random(seed)
    blobs = [rng.randbytes(64), rng.randbytes(size)]
    for blob in blobs:
        status, _ = await push_blob(mirror, name, blob)
        assert status == 201, status
    manifest = manifest_of(*blobs)
    status, _ = await call(
        mirror,
        "PUT",
        f"/v2/{name}/manifests/{tag}",
        data=manifest,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert status == 201, status
    return manifest, blobs


def error(body: Any) -> dict[str, Any]:
    entry: dict[str, Any] = body["errors"][0]
    return entry


async def usage(mirror: Hosted, tenancy: str = "acme", who: str = "acme-boss") -> Any:
    status, body = await call(mirror, "GET", f"/admin/v1/tenancies/{tenancy}/usage", who)
    assert status == 200, body
    return body["used"]


# Stored bytes ---------------------------------------------------------------------------


async def test_an_upload_over_the_bytes_quota_is_denied_and_not_kept(start: Start) -> None:
    mirror = await start(tenancy_max_bytes=1000)
    first = b"a" * 600
    assert (await push_blob(mirror, "acme/app", first))[0] == 201
    second = b"b" * 500
    status, body = await push_blob(mirror, "acme/app", second)
    assert status == 403
    assert error(body)["code"] == "DENIED"
    message = error(body)["message"]
    assert "stored bytes quota" in message and "600 used" in message and "1000" in message
    assert error(body)["detail"] == {
        "tenancy": "acme",
        "quota": "bytes",
        "used": 600,
        "adding": 500,
        "limit": 1000,
    }
    assert not mirror.linked("acme/app", digest_of(second))
    assert await mirror.app[CACHE].stat(digest_of(second)) is None
    assert await usage(mirror) == {"bytes": 600, "repositories": 1}
    assert mirror.sample("mirror_hosted_quota_refusals_total", tenancy="acme", quota="bytes") == 1
    # Another tenancy has its own allowance.
    status, _ = await push_blob(mirror, "other/app", second, "other-boss")
    assert status == 201


async def test_a_blob_in_two_repositories_of_a_tenancy_counts_once(start: Start) -> None:
    mirror = await start(tenancy_max_bytes=1000)
    blob = b"s" * 700
    digest = digest_of(blob)
    assert (await push_blob(mirror, "acme/one", blob))[0] == 201
    # Mounted, and uploaded again into a third repository: the tenancy stores it once, so
    # neither passes the 1000-byte quota that two copies would.
    status, _ = await call(
        mirror,
        "POST",
        "/v2/acme/two/blobs/uploads/",
        params={"mount": str(digest), "from": "acme/one"},
    )
    assert status == 201
    assert (await push_blob(mirror, "acme/three", blob))[0] == 201
    assert await usage(mirror) == {"bytes": 700, "repositories": 3}
    # The same bytes in another tenancy are that tenancy's too.
    assert (await push_blob(mirror, "other/app", blob, "other-boss"))[0] == 201
    assert (await usage(mirror, "other", "other-boss"))["bytes"] == 700
    # Deleting it from two repositories leaves it counted for the third; from all, it goes.
    for repo in ("one", "two"):
        status, _ = await call(mirror, "DELETE", f"/v2/acme/{repo}/blobs/{digest}")
        assert status == 202
    assert (await usage(mirror))["bytes"] == 700
    assert (await call(mirror, "DELETE", f"/v2/acme/three/blobs/{digest}"))[0] == 202
    assert (await usage(mirror))["bytes"] == 0
    assert mirror.sample("mirror_hosted_stored_bytes", tenancy="acme") == 0
    assert mirror.sample("mirror_hosted_stored_bytes", tenancy="other") == 700


async def test_a_manifest_counts_and_a_manifest_over_the_quota_is_denied(start: Start) -> None:
    config, layer = b"{}" * 10, b"L" * 400
    manifest = manifest_of(config, layer)
    limit = len(config) + len(layer) + len(manifest) - 1
    mirror = await start(tenancy_max_bytes=limit)
    for blob in (config, layer):
        assert (await push_blob(mirror, "acme/app", blob))[0] == 201
    status, body = await call(
        mirror,
        "PUT",
        "/v2/acme/app/manifests/v1",
        data=manifest,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert (status, error(body)["code"]) == (403, "DENIED")
    assert error(body)["detail"]["adding"] == len(manifest)
    status, _ = await call(mirror, "GET", "/v2/acme/app/manifests/v1")
    assert status == 404
    # Room made by deleting nothing but raising the limit (an operator's override).
    status, body = await call(
        mirror,
        "PUT",
        "/admin/v1/tenancies/acme/quota",
        "admin-operator",
        json_body={"bytes": limit + 1, "repositories": None},
    )
    assert status == 200 and body["limits"] == {"bytes": limit + 1, "repositories": None}
    status, _ = await call(
        mirror,
        "PUT",
        "/v2/acme/app/manifests/v1",
        data=manifest,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert status == 201
    assert (await usage(mirror))["bytes"] == limit + 1
    status, _ = await call(mirror, "DELETE", f"/v2/acme/app/manifests/{digest_of(manifest)}")
    assert status == 202
    assert (await usage(mirror))["bytes"] == len(config) + len(layer)


async def test_concurrent_uploads_do_not_overshoot_the_quota(start: Start) -> None:
    mirror = await start(tenancy_max_bytes=1000)
    blobs = [bytes([i]) * 300 for i in range(6)]
    locations = []
    for _ in blobs:
        status, _ = await call(mirror, "POST", "/v2/acme/app/blobs/uploads/")
        assert status == 202
    async with aiohttp.ClientSession() as http:
        for _ in blobs:
            async with http.post(
                mirror.url + "/v2/acme/app/blobs/uploads/", headers=mirror.headers("acme-boss")
            ) as resp:
                locations.append(resp.headers["Location"])
        for location, blob in zip(locations, blobs, strict=True):
            async with http.patch(
                mirror.url + location, data=blob, headers=mirror.headers("acme-boss")
            ) as resp:
                assert resp.status == 202
    # Every session finishes at once; only three fit in 1000 bytes.
    answers = await asyncio.gather(
        *(
            call(mirror, "PUT", location, params={"digest": str(digest_of(blob))})
            for location, blob in zip(locations, blobs, strict=True)
        )
    )
    statuses = sorted(status for status, _ in answers)
    assert statuses == [201, 201, 201, 403, 403, 403]
    assert (await usage(mirror))["bytes"] == 900
    stored = [await mirror.app[CACHE].stat(digest_of(b)) for b in blobs]
    assert sorted(s for s in stored if s is not None) == [300, 300, 300]


# Repositories ---------------------------------------------------------------------------


async def test_the_repository_quota_refuses_a_new_repository(start: Start) -> None:
    mirror = await start(tenancy_max_repositories=2)
    assert (await push_blob(mirror, "acme/one", b"1"))[0] == 201
    status, _ = await call(
        mirror, "POST", "/admin/v1/tenancies/acme/repositories", json_body={"name": "two"}
    )
    assert status == 201
    # A first push and an admin create of a third are both refused, with the numbers.
    status, body = await push_blob(mirror, "acme/three", b"3")
    assert (status, error(body)["code"]) == (403, "DENIED")
    assert "repository count quota" in error(body)["message"]
    assert error(body)["detail"]["used"] == 2 and error(body)["detail"]["limit"] == 2
    assert mirror.app[AUTH].identity.repository("acme", "three") is None
    status, body = await call(
        mirror, "POST", "/admin/v1/tenancies/acme/repositories", json_body={"name": "four"}
    )
    assert (status, error(body)["code"]) == (403, "DENIED")
    assert (
        mirror.sample("mirror_hosted_quota_refusals_total", tenancy="acme", quota="repositories")
        == 2
    )
    # Pushing into an existing repository is fine; deleting one makes room.
    assert (await push_blob(mirror, "acme/one", b"more"))[0] == 201
    status, _ = await call(mirror, "DELETE", "/admin/v1/tenancies/acme/repositories/one")
    assert status == 200
    assert await usage(mirror) == {"bytes": 0, "repositories": 1}
    assert not mirror.linked("acme/one", digest_of(b"1"))
    assert (await push_blob(mirror, "acme/three", b"3"))[0] == 201


# Persistence, admin API, metrics --------------------------------------------------------


async def test_usage_and_overrides_survive_a_restart(start: Start) -> None:
    mirror = await start(tenancy_max_bytes=10_000)
    manifest, blobs = await push_image(mirror, "acme/app", "v1", seed=1)
    assert (await push_blob(mirror, "acme/copy", blobs[1]))[0] == 201
    status, _ = await call(
        mirror,
        "PUT",
        "/admin/v1/tenancies/acme/quota",
        "admin-operator",
        json_body={"bytes": 5000, "repositories": 4},
    )
    assert status == 200
    before = await usage(mirror)
    assert before == {"bytes": len(manifest) + sum(map(len, blobs)), "repositories": 2}
    await mirror.server.close()
    again = await start(fresh=False, tenancy_max_bytes=10_000)
    assert await usage(again) == before
    status, body = await call(again, "GET", "/admin/v1/tenancies/acme/usage")
    assert body["limits"] == {"bytes": 5000, "repositories": 4}
    assert again.sample("mirror_hosted_quota_limit", tenancy="acme", quota="bytes") == 5000
    assert again.sample("mirror_hosted_repositories", tenancy="acme") == 2
    # Back to the configured default.
    status, body = await call(again, "DELETE", "/admin/v1/tenancies/acme/quota", "admin-operator")
    assert status == 200 and body["limits"] == {"bytes": 10_000, "repositories": None}
    assert again.sample("mirror_hosted_quota_limit", tenancy="acme", quota="repositories") is None


async def test_usage_is_shown_to_operators_and_the_tenancys_administrators(start: Start) -> None:
    mirror = await start()
    assert (await push_blob(mirror, "acme/app", b"x" * 10))[0] == 201
    assert (await usage(mirror, "acme", "acme-boss"))["bytes"] == 10
    assert (await usage(mirror, "acme", "admin-operator"))["bytes"] == 10
    for who in ("other-boss", "acme-pusher"):
        status, body = await call(mirror, "GET", "/admin/v1/tenancies/acme/usage", who)
        assert (status, error(body)["code"]) == (403, "DENIED"), who
    status, _ = await call(mirror, "GET", "/admin/v1/tenancies/acme/usage", "anonymous")
    assert status == 401
    # Limits are the operator's: a tenancy administrator cannot raise its own.
    status, body = await call(
        mirror, "PUT", "/admin/v1/tenancies/acme/quota", json_body={"bytes": None}
    )
    assert (status, error(body)["code"]) == (403, "DENIED")
    status, body = await call(mirror, "GET", "/admin/v1/usage", "acme-boss")
    assert status == 403
    status, body = await call(mirror, "GET", "/admin/v1/usage", "admin-operator")
    assert status == 200
    by_name = {t["tenancy"]: t["used"] for t in body["tenancies"]}
    assert by_name["acme"]["bytes"] == 10 and by_name["other"]["bytes"] == 0
    status, body = await call(
        mirror,
        "PUT",
        "/admin/v1/tenancies/acme/quota",
        "admin-operator",
        json_body={"bytes": -1},
    )
    assert (status, error(body)["code"]) == (400, "REQUEST_INVALID")


async def test_mirror_admin_usage_and_quota_commands(start: Start, capsys: Any) -> None:
    mirror = await start()
    assert (await push_blob(mirror, "acme/app", b"y" * 42))[0] == 201
    operator = mirror.logins["admin-operator"]
    user, _, token = operator.partition(":")
    base = ["admin", "--url", mirror.url, "--user", user]

    def admin(*args: str) -> tuple[int, Any]:
        import os

        os.environ["MIRROR_TOKEN"] = token
        try:
            code = mirror_main([*base, *args])
        finally:
            del os.environ["MIRROR_TOKEN"]
        out = capsys.readouterr()
        return code, json.loads(out.out or out.err)

    code, body = await asyncio.to_thread(admin, "quota", "set", "acme", "--bytes", "1KiB")
    assert code == 0 and body["limits"] == {"bytes": 1024, "repositories": None}
    code, body = await asyncio.to_thread(admin, "usage", "show", "acme")
    assert code == 0 and body["used"] == {"bytes": 42, "repositories": 1}
    code, body = await asyncio.to_thread(admin, "usage", "list")
    assert code == 0 and {t["tenancy"] for t in body["tenancies"]} >= {"acme", "other"}
    code, body = await asyncio.to_thread(admin, "repo", "create", "acme", "team/new")
    assert code == 0
    code, body = await asyncio.to_thread(admin, "repo", "public", "acme", "team/new")
    assert code == 0 and body["public"] is True
    code, body = await asyncio.to_thread(admin, "repo", "list", "acme")
    assert code == 0 and {r["name"] for r in body["repositories"]} == {"app", "team/new"}
    code, body = await asyncio.to_thread(admin, "repo", "delete", "acme", "app")
    assert code == 0
    code, body = await asyncio.to_thread(admin, "usage", "show", "acme")
    assert body["used"] == {"bytes": 0, "repositories": 1}
    code, body = await asyncio.to_thread(admin, "quota", "reset", "acme")
    assert code == 0 and body["limits"] == {"bytes": None, "repositories": None}


async def test_deleting_a_tenancy_forgets_its_hosted_content(start: Start) -> None:
    mirror = await start()
    assert (await push_blob(mirror, "other/app", b"z" * 5, "other-boss"))[0] == 201
    status, _ = await call(mirror, "DELETE", "/admin/v1/tenancies/other", "admin-operator")
    assert status == 200
    assert not mirror.linked("other/app", digest_of(b"z" * 5))
    assert mirror.sample("mirror_hosted_stored_bytes", tenancy="other") is None
    assert mirror.app[QUOTAS].usage("other").bytes == 0


# Retention of hosted repositories ---------------------------------------------------------


async def test_a_policy_on_a_hosted_repository_deletes_its_unpulled_image(start: Start) -> None:
    clock = ManualClock()
    mirror = await start(clock=clock, retention={"cooling_period": DAY})
    kept, kept_blobs = await push_image(mirror, "acme/team/app", "kept", seed=2)
    gone, gone_blobs = await push_image(mirror, "acme/team/app", "gone", seed=3)
    status, _ = await call(
        mirror,
        "POST",
        "/admin/v1/retention/policies",
        "admin-operator",
        json_body={"name": "short", "not_pulled_days": 2},
    )
    assert status == 201
    # Attached by the name its users push and pull it by.
    status, body = await call(
        mirror,
        "PUT",
        "/admin/v1/retention/policies/short/repositories/acme/team/app",
        "admin-operator",
        json_body={},
    )
    assert status == 200 and body["repositories"] == ["acme/team/app"]
    before = (await usage(mirror))["bytes"]
    clock.advance(3 * DAY)
    status, _ = await call(mirror, "GET", "/v2/acme/team/app/manifests/kept")
    assert status == 200
    mirror.app[SERVICES].metadata.flush()
    # Dry run first: it says what it would delete, and deletes nothing.
    status, report = await call(
        mirror, "POST", "/admin/v1/retention/runs", "admin-operator", json_body={"dry_run": True}
    )
    assert status == 200
    actions = {
        (i["repository"], i["tags"][0]): (i["action"], i["policy"]) for i in report["images"]
    }
    assert actions[("acme/team/app", "gone")] == ("delete", "short")
    assert actions[("acme/team/app", "kept")] == ("keep", "short")
    # (HEAD: it is no pull, so the image stays not pulled.)
    assert (await call(mirror, "HEAD", "/v2/acme/team/app/manifests/gone"))[0] == 200
    status, report = await call(
        mirror, "POST", "/admin/v1/retention/runs", "admin-operator", json_body={}
    )
    assert status == 200 and report["evicted"] == 1
    assert (await call(mirror, "GET", "/v2/acme/team/app/manifests/gone"))[0] == 404
    assert (await call(mirror, "GET", "/v2/acme/team/app/manifests/kept"))[0] == 200
    # What the collector reclaimed leaves the tenancy's usage; what is left is counted.
    after = (await usage(mirror))["bytes"]
    assert await mirror.app[CACHE].stat(digest_of(gone)) is None
    assert after <= before - len(gone)
    held = 0
    for blob in (kept, *kept_blobs, gone, *gone_blobs):
        size = await mirror.app[CACHE].stat(digest_of(blob))
        if size is not None and mirror.linked("acme/team/app", digest_of(blob)):
            held += size
    assert after == held >= len(kept) + sum(map(len, kept_blobs))
    # The audit log names what was deleted, for the operator alone: another tenancy's
    # administrator, this tenancy's own and an anonymous caller learn nothing from it.
    status, body = await call(mirror, "GET", "/admin/v1/retention/audit", "admin-operator")
    assert status == 200
    evicted = [e for e in body["events"] if e["event"] == "evict-image"]
    assert [e["repository"] for e in evicted] == ["acme/team/app"]
    for who, refused in (("acme-boss", 403), ("other-boss", 403), ("anonymous", 401)):
        status, body = await call(mirror, "GET", "/admin/v1/retention/audit", who)
        assert status == refused and body["errors"][0]["code"] in {"DENIED", "UNAUTHORIZED"}


# Seeding station ------------------------------------------------------------------------


async def test_skopeo_copy_into_a_loopback_seeding_station(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    upstream = FakeUpstream()
    cached_manifest, _ = upstream.add_image("library/base", "v1", [b"base layer"])
    origin = await aiohttp_server(upstream.app(), host="127.0.0.1")
    config = load_config(
        overrides={
            "server": {"allow_anonymous_push": True},
            "storage": {"data_dir": str(tmp_path / "data")},
            "upstreams": [
                {"host": "upstream.test", "url": f"http://127.0.0.1:{origin.port}", "retries": 0}
            ],
            "default_upstream": "",
            "encryption": {"enabled": False},
            "hosted": {"tenancy_max_repositories": 1},
        },
        environ={},
    )
    app = build_app(config, metrics=Metrics())
    server = await aiohttp_server(app, host="127.0.0.1")
    rng = random.Random(5)
    image = build_image(tmp_path / "layout", "v1", [random_layer(rng, 50_000) for _ in range(2)])
    dest = f"docker://127.0.0.1:{server.port}/seed/app:v1"
    await skopeo_copy_async(f"oci:{image.layout_dir}:v1", dest, "--dest-tls-verify=false")
    async with aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{server.port}/v2/seed/app"
        async with http.get(
            f"{base}/manifests/v1", headers={"Accept": image.manifest.media_type}
        ) as resp:
            assert resp.status == 200
            assert resp.headers["Docker-Content-Digest"] == image.manifest_digest
        for blob in image.blobs():
            async with http.get(f"{base}/blobs/{blob.digest}") as resp:
                assert resp.status == 200
                assert await resp.read() == blob.read_bytes()
        async with http.get(f"{base}/tags/list") as resp:
            assert (await resp.json())["tags"] == ["v1"]
        # Quotas hold with auth off too: one repository only.
        async with http.post(
            f"http://127.0.0.1:{server.port}/v2/seed/second/blobs/uploads/",
            data=b"x",
            params={"digest": str(digest_of(b"x"))},
        ) as resp:
            assert resp.status == 403
            assert error(await resp.json())["detail"]["quota"] == "repositories"
        # Names an upstream serves are still pulled through (and cached), never hosted.
        async with http.get(
            f"http://127.0.0.1:{server.port}/v2/upstream.test/library/base/manifests/v1",
            headers={"Accept": OCI_MANIFEST},
        ) as resp:
            assert resp.status == 200
            assert resp.headers["Docker-Content-Digest"] == cached_manifest
        # A cache name is still never written.
        async with http.put(
            f"http://127.0.0.1:{server.port}/v2/upstream.test/app/manifests/v1",
            data=image.manifest_bytes,
            headers={"Content-Type": image.manifest.media_type},
        ) as resp:
            assert resp.status == 403
            assert "cache" in error(await resp.json())["message"]


async def test_prewarm_is_for_operators_only_and_refuses_bad_bodies(start: Start) -> None:
    # The pre-warm endpoint sits on the admin API: it fetches into the shared cache, so only a
    # system administrator may ask; a tenancy administrator (of any tenancy) or a member may not.
    mirror = await start()
    body = {"images": ["docker.io/library/alpine:3.20"], "concurrency": 1}
    status, _ = await call(mirror, "POST", "/admin/v1/prewarm", "anonymous", json_body=body)
    assert status == 401
    for who in ("acme-boss", "other-boss", "acme-pusher"):
        status, answer = await call(mirror, "POST", "/admin/v1/prewarm", who, json_body=body)
        assert (status, error(answer)["code"]) == (403, "DENIED"), who
    bad_bodies: list[dict[str, Any]] = [
        {"images": "alpine"},
        {"images": ["alpine"], "concurrency": 0},
        {"images": []},
    ]
    for bad in bad_bodies:
        status, answer = await call(
            mirror, "POST", "/admin/v1/prewarm", "admin-operator", json_body=bad
        )
        assert (status, error(answer)["code"]) == (400, "REQUEST_INVALID"), bad
    status, answer = await call(
        mirror, "POST", "/admin/v1/prewarm", "admin-operator", data=b"{not json"
    )
    assert (status, error(answer)["code"]) == (400, "REQUEST_INVALID")
